/* The FlashAttention-2 tensor-core kernels (kernels/flash_attention.cu: the fast path of
 * moe4j_cuda_attention_forward / _backward for BF16 with head_dim 32 / 64 / 128) against
 *   - the CPU twin (moe4j_cpu_attention_*, f32 math on the same bf16 inputs), and
 *   - the *_ref CUDA kernels (moe4j_cuda_use_reference_kernels(1)),
 * forward and backward, for D 32 / 64 / 128, causal and not, window 0 / 37 / 100, MHA and GQA (Hq 4,
 * Hkv 2 and 1), S = 1, 63, 64 (one exact tile), 130 and 200 (not tile multiples), and packed
 * varlen batches (an empty sequence, a 1-token one, lengths crossing tiles), and S = 1000 (16 key
 * tiles per row). The backward of all
 * three reads the same out / lse (the CPU forward's), so only the backward itself is compared.
 * Outputs are pre-filled with NaN (every element must be written); each fast call runs twice and
 * must be bitwise identical (no atomics). An invalid cu_seqlens (tokens in no sequence) must give
 * those rows out = 0, lse = -inf and zero gradients, and the fast and reference paths must agree
 * on the rest. Exit 77 (skipped) without a GPU.
 *
 * Tolerance. The fast kernels feed P (forward, dQ/dK/dV) and dS (backward) to the second GEMMs as
 * bf16, as FlashAttention-2 does, and use ex2.approx; the references stay in f32. A bf16 P has
 * relative error <= 2^-9 per element, so out moves by <= 2^-9 max|v| before its own rounding to bf16
 * (one ulp, 2^-8 |ref|): bound 2^-7 |ref| + 4e-3 max|ref|. Gradients sum dS terms whose size is up
 * to max|ref| while the sum can be much smaller (dS = P (dP - D_i) cancels), so their bound is
 * 2^-6 |ref| + 2e-2 max|ref|. lse is f32 on both sides (scores are exact products of bf16 inputs
 * summed in f32): 1e-3 (1 + |lse|). A wrong mask, head or tile moves values by a sizable fraction
 * of max|ref| (a key that should be masked carries weight ~1/len of the row).
 */
#include <math.h>
#include <string.h>

#include "gpu_test.h"
#include "numerics.h"

using namespace moe4j;

namespace {

using Bits = uint16_t; /* bf16 bits */

std::vector<Bits> encode(const std::vector<float> &v) {
  std::vector<Bits> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = f32_to_bf16_bits(v[i]);
  return out;
}

std::vector<Bits> nan_bits(size_t n) { return std::vector<Bits>(n, f32_to_bf16_bits(NAN)); }

struct Case {
  int64_t batch, seq; /* uniform: batch sequences of seq tokens; varlen: batch = cu.size() - 1, seq = T */
  std::vector<int32_t> cu;
  int64_t hq, hkv, d;
  int32_t causal;
  int64_t window;
  int64_t tokens() const { return cu.empty() ? batch * seq : seq; }
  std::string name() const {
    char buf[160];
    snprintf(buf, sizeof buf, "%s B%lld S%lld Hq%lld Hkv%lld D%lld causal %d window %lld",
             cu.empty() ? "uniform" : "varlen", (long long)batch, (long long)seq, (long long)hq,
             (long long)hkv, (long long)d, causal, (long long)window);
    return buf;
  }
};

/* |got - want| <= rel |want| + norm max|want| for every element. */
bool close(const char *what, const Case &c, const std::vector<Bits> &got,
           const std::vector<Bits> &want, double rel, double norm) {
  CHECK(got.size() == want.size());
  double mx = 0;
  for (Bits x : want) mx = fmax(mx, fabs((double)bf16_bits_to_f32(x)));
  for (size_t i = 0; i < want.size(); i++) {
    const double a = bf16_bits_to_f32(got[i]), b = bf16_bits_to_f32(want[i]);
    if (!(fabs(a - b) <= rel * fabs(b) + norm * mx)) {
      char msg[400];
      snprintf(msg, sizeof msg, "%s[%zu] = %.7g, want %.7g (max %.3g) %s", what, i, a, b, mx,
               c.name().c_str());
      check::report(__FILE__, __LINE__, msg);
      return false;
    }
  }
  return true;
}

bool close_lse(const Case &c, const std::vector<float> &got, const std::vector<float> &want) {
  CHECK(got.size() == want.size());
  for (size_t i = 0; i < want.size(); i++) {
    const bool both_inf = got[i] == -INFINITY && want[i] == -INFINITY;
    if (!both_inf && !(fabsf(got[i] - want[i]) <= 1e-3f * (1.0f + fabsf(want[i])))) {
      char msg[400];
      snprintf(msg, sizeof msg, "lse[%zu] = %.9g, want %.9g %s", i, got[i], want[i], c.name().c_str());
      check::report(__FILE__, __LINE__, msg);
      return false;
    }
  }
  return true;
}

bool same_bits(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

struct Outputs {
  std::vector<Bits> out, dq, dk, dv;
  std::vector<float> lse;
};

struct Inputs {
  std::vector<Bits> q, k, v, dout;
  std::vector<Bits> out_cpu; /* the CPU forward's out / lse: input of every backward */
  std::vector<float> lse_cpu;
};

/* One CUDA forward + backward; reference = moe4j_cuda_use_reference_kernels. */
Outputs run_cuda(const Case &c, const Inputs &in, bool reference) {
  const size_t nq = in.q.size(), nkv = in.k.size(), nl = c.tokens() * c.hq;
  const float scale = 1.0f / sqrtf((float)c.d);
  const int32_t *cu_host = c.cu.empty() ? nullptr : c.cu.data();
  gpu::DeviceBuffer<int32_t> gcu(c.cu.empty() ? std::vector<int32_t>{} : c.cu);
  const int32_t *cu = cu_host == nullptr ? nullptr : gcu.ptr;
  gpu::DeviceBuffer<Bits> gq(in.q), gk(in.k), gv(in.v), gdout(in.dout), gout_in(in.out_cpu);
  gpu::DeviceBuffer<float> glse_in(in.lse_cpu);
  gpu::DeviceBuffer<Bits> gout(nan_bits(nq)), gdq(nan_bits(nq)), gdk(nan_bits(nkv)),
      gdv(nan_bits(nkv));
  gpu::DeviceBuffer<float> glse(std::vector<float>(nl, NAN));
  int64_t ws_bytes = 0;
  /* varlen: the exact need is (1, T); (B, T) would be sufficient too */
  CHECK_STATUS(moe4j_cuda_attention_backward_workspace_bytes(cu ? 1 : c.batch, c.seq, c.hq, c.d,
                                                             &ws_bytes), MOE4J_OK);
  gpu::DeviceBuffer<float> gws(std::vector<float>(ws_bytes / 4 + 1, NAN));
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(reference ? 1 : 0), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_attention_forward(MOE4J_DTYPE_BF16, gq.ptr, gk.ptr, gv.ptr, gout.ptr,
                                            glse.ptr, cu, c.batch, c.seq, c.hq, c.hkv, c.d,
                                            c.causal, c.window, scale, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_attention_backward(MOE4J_DTYPE_BF16, gq.ptr, gk.ptr, gv.ptr, gout_in.ptr,
                                             gdout.ptr, glse_in.ptr, gdq.ptr, gdk.ptr, gdv.ptr, cu,
                                             c.batch, c.seq, c.hq, c.hkv, c.d, c.causal, c.window,
                                             scale, gws.ptr, ws_bytes, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(0), MOE4J_OK);
  return Outputs{gout.download(), gdq.download(), gdk.download(), gdv.download(), glse.download()};
}

Inputs make_inputs(const Case &c, uint64_t seed) {
  const size_t nq = c.tokens() * c.hq * c.d, nkv = c.tokens() * c.hkv * c.d;
  Inputs in;
  in.q = encode(check::randn(nq, seed));
  in.k = encode(check::randn(nkv, seed + 1));
  in.v = encode(check::randn(nkv, seed + 2));
  in.dout = encode(check::randn(nq, seed + 3));
  return in;
}

void check_case(const Case &c, uint64_t seed) {
  Inputs in = make_inputs(c, seed);
  const size_t nq = in.q.size(), nkv = in.k.size(), nl = c.tokens() * c.hq;
  const float scale = 1.0f / sqrtf((float)c.d);
  const int32_t *cu = c.cu.empty() ? nullptr : c.cu.data();

  Outputs cpu;
  cpu.out = nan_bits(nq);
  cpu.lse.assign(nl, NAN);
  CHECK_STATUS(moe4j_cpu_attention_forward(MOE4J_DTYPE_BF16, in.q.data(), in.k.data(), in.v.data(),
                                           cpu.out.data(), cpu.lse.data(), cu, c.batch, c.seq,
                                           c.hq, c.hkv, c.d, c.causal, c.window, scale), MOE4J_OK);
  in.out_cpu = cpu.out;
  in.lse_cpu = cpu.lse;
  cpu.dq = nan_bits(nq);
  cpu.dk = nan_bits(nkv);
  cpu.dv = nan_bits(nkv);
  int64_t ws_bytes = 0;
  CHECK_STATUS(moe4j_cpu_attention_backward_workspace_bytes(cu ? 1 : c.batch, c.seq, c.hq, c.d,
                                                            &ws_bytes), MOE4J_OK);
  std::vector<float> ws(ws_bytes / 4 + 1);
  CHECK_STATUS(moe4j_cpu_attention_backward(MOE4J_DTYPE_BF16, in.q.data(), in.k.data(),
                                            in.v.data(), in.out_cpu.data(), in.dout.data(),
                                            in.lse_cpu.data(), cpu.dq.data(), cpu.dk.data(),
                                            cpu.dv.data(), cu, c.batch, c.seq, c.hq, c.hkv, c.d,
                                            c.causal, c.window, scale, ws.data(), ws_bytes),
               MOE4J_OK);

  const Outputs fast = run_cuda(c, in, false), again = run_cuda(c, in, false);
  const Outputs ref = run_cuda(c, in, true);
  const double out_rel = 1.0 / 128, out_norm = 4e-3, grad_rel = 1.0 / 64, grad_norm = 2e-2;
  for (const Outputs *want : {(const Outputs *)&cpu, &ref}) {
    close("out", c, fast.out, want->out, out_rel, out_norm);
    close_lse(c, fast.lse, want->lse);
    close("dq", c, fast.dq, want->dq, grad_rel, grad_norm);
    close("dk", c, fast.dk, want->dk, grad_rel, grad_norm);
    close("dv", c, fast.dv, want->dv, grad_rel, grad_norm);
  }
  CHECK(same_bits(fast.out.data(), again.out.data(), nq * 2));
  CHECK(same_bits(fast.lse.data(), again.lse.data(), nl * 4));
  CHECK(same_bits(fast.dq.data(), again.dq.data(), nq * 2));
  CHECK(same_bits(fast.dk.data(), again.dk.data(), nkv * 2));
  CHECK(same_bits(fast.dv.data(), again.dv.data(), nkv * 2));
}

}  // namespace

TEST_CASE(uniform_batches_match_cpu_twin_and_reference) {
  const int64_t seqs[] = {1, 63, 64, 130, 200}, windows[] = {0, 37, 100};
  const int64_t heads[][2] = {{2, 2}, {4, 2}, {4, 1}};
  uint64_t seed = 7000;
  for (int64_t d : {32, 64, 128})
    for (int64_t s : seqs)
      for (int32_t causal = 0; causal < 2; causal++)
        for (int64_t w : windows) {
          if (w != 0 && s < 64) continue; /* a window >= seq is no window */
          for (auto &hh : heads) {
            check_case(Case{2, s, {}, hh[0], hh[1], d, causal, w}, seed);
            seed += 10;
          }
        }
}

TEST_CASE(long_sequences_match_cpu_twin_and_reference) {
  /* 16 key tiles per row: many trips around the cp.async double buffer (real asynchrony, which
   * the CPU emulation test cannot show), causal tile skipping at scale, a window of 300 */
  uint64_t seed = 8000;
  for (int64_t d : {32, 64, 128})
    for (int64_t w : {0, 300}) {
      check_case(Case{1, 1000, {}, 4, 2, d, 1, w}, seed);
      seed += 10;
    }
  check_case(Case{1, 1000, {}, 2, 2, 128, 0, 0}, seed);
}

TEST_CASE(varlen_batches_match_cpu_twin_and_reference) {
  /* sequences of 70, 0, 1, 129 and 64 tokens: empty, single-token, tile-crossing, exact tile */
  const std::vector<int32_t> cu = {0, 70, 70, 71, 200, 264};
  uint64_t seed = 9000;
  for (int64_t d : {32, 64, 128})
    for (int32_t causal = 0; causal < 2; causal++)
      for (int64_t w : {0, 37}) {
        check_case(Case{(int64_t)cu.size() - 1, 264, cu, 4, 2, d, causal, w}, seed);
        seed += 10;
      }
}

TEST_CASE(tokens_outside_every_sequence_are_zeroed) {
  /* c[B] = 100 < T = 150: tokens 100..149 belong to no sequence */
  const Case c{2, 150, {0, 60, 100}, 4, 2, 64, 1, 0};
  Inputs in = make_inputs(c, 4242);
  in.out_cpu = in.q; /* any finite out / lse: only the backward's handling of rows matters here */
  in.lse_cpu.assign(c.tokens() * c.hq, 1.0f);
  const Outputs fast = run_cuda(c, in, false), ref = run_cuda(c, in, true);
  for (const Outputs *o : {&fast, &ref}) {
    bool zero = true;
    for (int64_t t = 100; t < 150; t++) {
      for (int64_t e = 0; e < c.hq * c.d; e++) {
        zero = zero && bf16_bits_to_f32(o->out[t * c.hq * c.d + e]) == 0.0f &&
               bf16_bits_to_f32(o->dq[t * c.hq * c.d + e]) == 0.0f;
      }
      for (int64_t e = 0; e < c.hkv * c.d; e++)
        zero = zero && bf16_bits_to_f32(o->dk[t * c.hkv * c.d + e]) == 0.0f &&
               bf16_bits_to_f32(o->dv[t * c.hkv * c.d + e]) == 0.0f;
      for (int64_t h = 0; h < c.hq; h++) zero = zero && o->lse[h * c.seq + t] == -INFINITY;
    }
    CHECK(zero);
  }
  /* inside the sequences the two paths agree (same tolerances as against the CPU twin) */
  close("out", c, fast.out, ref.out, 1.0 / 128, 4e-3);
  close_lse(c, fast.lse, ref.lse);
  close("dq", c, fast.dq, ref.dq, 1.0 / 64, 2e-2);
  close("dk", c, fast.dk, ref.dk, 1.0 / 64, 2e-2);
  close("dv", c, fast.dv, ref.dv, 1.0 / 64, 2e-2);
}

GPU_TEST_MAIN("gpu_flash_attention")
