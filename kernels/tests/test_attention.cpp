/* The CUDA reference kernels of flash attention (kernels/attention.cu *_ref, selected with
 * moe4j_cuda_use_reference_kernels(1); the FlashAttention-2 fast path has its own test,
 * test_flash_attention.cpp) against the CPU twin moe4j_cpu_attention_forward / _backward on the
 * same inputs: batch 2, S 1/7/65 (65 crosses the twin's 64-row tile), Hq == Hkv (2/2) and GQA (6/2,
 * 4/1), causal and not, window 0 and 5, head_dim 6/64/128, F32 and BF16; packed varlen batches
 * (cu_seqlens on the device: lengths {1, 0, 17, 64, 130}, causal and not, windows 0 and 5, Hq = Hkv
 * and 4 Hkv, D 64 and 40); an invalid cu_seqlens must stay inside the buffers (guard elements
 * untouched, rows in no sequence zero). The backward of both twins reads the same out / lse (the
 * CPU forward's), so only the backward itself is compared. Outputs are pre-filled with NaN (every
 * element must be overwritten); each CUDA call is run twice and must be bitwise identical
 * (deterministic: no atomics, fixed orders).
 *
 * Tolerance. Both twins compute the same f32 formulas on the same (exactly representable) inputs;
 * only the summation order differs (the twin's online softmax rescales once per 64-key tile, the
 * kernel per key; the twin sums P V / dS K tile-wise). Each output is a short f32 sum (<= 65 keys
 * x 3 heads, D <= 128 terms per dot product) of terms of size <= max|ref|, so the difference is a
 * few f32 ulps of the largest terms: ~1e-6 relative to the tensor's largest element typically,
 * bounded here by 1e-5 * |ref| + 3e-5 * max|ref| (the max term absorbs cancellation in
 * ds = p (dp - D_i), where an element can be much smaller than the terms that formed it; a wrong
 * key, mask or head moves outputs by ~1e-1 of max|ref|). lse: 1e-5 * (1 + |ref|). BF16: inputs are
 * the same bf16 values on both sides and the outputs are rounded once, so the f32 results (within
 * the f32 bound) may round to neighbouring bf16 values: one bf16 ulp, <= 2^-7 |ref|, plus the f32
 * bound before rounding.
 */
#include <math.h>
#include <string.h>

#include "gpu_test.h"
#include "numerics.h"

using namespace moe4j;

namespace {

template <typename S> float val(S s);
template <> float val<float>(float s) { return s; }
template <> float val<uint16_t>(uint16_t s) { return bf16_bits_to_f32(s); }
template <typename S> S enc(float f);
template <> float enc<float>(float f) { return f; }
template <> uint16_t enc<uint16_t>(float f) { return f32_to_bf16_bits(f); }
template <typename S> int32_t dtype_of() { return sizeof(S) == 4 ? MOE4J_DTYPE_F32 : MOE4J_DTYPE_BF16; }

template <typename S>
std::vector<S> encode(const std::vector<float> &v) {
  std::vector<S> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = enc<S>(v[i]);
  return out;
}

template <typename S>
std::vector<S> nan_filled(size_t n) {
  return std::vector<S>(n, enc<S>(NAN));
}

struct Case {
  int64_t batch, seq, hq, hkv, d;
  int32_t causal;
  int64_t window;
};

/* |gpu - cpu| <= rel * |cpu| + norm * max|cpu| (+ one bf16 ulp, 2^-7 |cpu|, for BF16). */
template <typename S>
bool close(const char *what, const Case &c, const std::vector<S> &gpu, const std::vector<S> &cpu) {
  CHECK(gpu.size() == cpu.size());
  double mx = 0;
  for (S x : cpu) mx = fmax(mx, fabs((double)val(x)));
  const double rel = 1e-5 + (sizeof(S) == 2 ? 1.0 / 128 : 0.0), norm = 3e-5;
  for (size_t i = 0; i < cpu.size(); i++) {
    const double a = val(gpu[i]), b = val(cpu[i]);
    if (!(fabs(a - b) <= rel * fabs(b) + norm * mx)) {
      char msg[320];
      snprintf(msg, sizeof msg,
               "%s[%zu] = %.9g, cpu %.9g (max %.3g) B%lld S%lld Hq%lld Hkv%lld D%lld causal %d "
               "window %lld %s",
               what, i, a, b, mx, (long long)c.batch, (long long)c.seq, (long long)c.hq,
               (long long)c.hkv, (long long)c.d, c.causal, (long long)c.window,
               sizeof(S) == 2 ? "bf16" : "f32");
      check::report(__FILE__, __LINE__, msg);
      return false;
    }
  }
  return true;
}

template <typename S>
bool same_bits(const std::vector<S> &a, const std::vector<S> &b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * sizeof(S)) == 0);
}

/* Runs a uniform batch (cu == nullptr) or a packed varlen one (c.batch sequences, c.seq = T
 * tokens, offsets *cu) on both twins. */
template <typename S>
void run_case(const Case &c, uint64_t seed, const std::vector<int32_t> *cu = nullptr) {
  const int32_t dt = dtype_of<S>();
  const int64_t tokens = cu != nullptr ? c.seq : c.batch * c.seq;
  const size_t nq = tokens * c.hq * c.d, nkv = tokens * c.hkv * c.d, nl = tokens * c.hq;
  const int32_t *cu_host = cu != nullptr ? cu->data() : nullptr;
  const float scale = 1.0f / sqrtf((float)c.d);
  const std::vector<S> q = encode<S>(check::randn(nq, seed)), k = encode<S>(check::randn(nkv, seed + 1)),
                       v = encode<S>(check::randn(nkv, seed + 2)),
                       dout = encode<S>(check::randn(nq, seed + 3));

  /* CPU twin: forward, then backward from its own out / lse */
  std::vector<S> out_c = nan_filled<S>(nq);
  std::vector<float> lse_c(nl, NAN);
  CHECK_STATUS(moe4j_cpu_attention_forward(dt, q.data(), k.data(), v.data(), out_c.data(),
                                           lse_c.data(), cu_host, c.batch, c.seq, c.hq, c.hkv,
                                           c.d, c.causal, c.window, scale), MOE4J_OK);
  std::vector<S> dq_c = nan_filled<S>(nq), dk_c = nan_filled<S>(nkv), dv_c = nan_filled<S>(nkv);
  /* a varlen batch needs the row sums of its T tokens: ask for one sequence of T */
  const int64_t ws_batch = cu != nullptr ? 1 : c.batch;
  int64_t ws_bytes = 0;
  CHECK_STATUS(moe4j_cpu_attention_backward_workspace_bytes(ws_batch, c.seq, c.hq, c.d, &ws_bytes),
               MOE4J_OK);
  std::vector<float> ws_c(ws_bytes / 4 + 1);
  CHECK_STATUS(moe4j_cpu_attention_backward(dt, q.data(), k.data(), v.data(), out_c.data(),
                                            dout.data(), lse_c.data(), dq_c.data(), dk_c.data(),
                                            dv_c.data(), cu_host, c.batch, c.seq, c.hq, c.hkv,
                                            c.d, c.causal, c.window, scale, ws_c.data(), ws_bytes),
               MOE4J_OK);

  gpu::DeviceBuffer<S> gq(q), gk(k), gv(v), gdout(dout), gout_in(out_c);
  gpu::DeviceBuffer<float> glse_in(lse_c);
  gpu::DeviceBuffer<int32_t> gcu(cu != nullptr ? *cu : std::vector<int32_t>());
  const int32_t *cu_dev = cu != nullptr ? gcu.ptr : nullptr;
  int64_t gws_bytes = 0;
  CHECK_STATUS(moe4j_cuda_attention_backward_workspace_bytes(ws_batch, c.seq, c.hq, c.d,
                                                             &gws_bytes), MOE4J_OK);
  CHECK(gws_bytes == ws_bytes);
  gpu::DeviceBuffer<float> gws(std::vector<float>(gws_bytes / 4 + 1, NAN));
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(1), MOE4J_OK);
  std::vector<S> first_out, first_dq, first_dk, first_dv;
  std::vector<float> first_lse;
  for (int run = 0; run < 2; run++) {
    gpu::DeviceBuffer<S> gout(nan_filled<S>(nq));
    gpu::DeviceBuffer<float> glse(std::vector<float>(nl, NAN));
    CHECK_STATUS(moe4j_cuda_attention_forward(dt, gq.ptr, gk.ptr, gv.ptr, gout.ptr, glse.ptr,
                                              cu_dev, c.batch, c.seq, c.hq, c.hkv, c.d,
                                              c.causal, c.window, scale, nullptr), MOE4J_OK);
    gpu::DeviceBuffer<S> gdq(nan_filled<S>(nq)), gdk(nan_filled<S>(nkv)), gdv(nan_filled<S>(nkv));
    CHECK_STATUS(moe4j_cuda_attention_backward(dt, gq.ptr, gk.ptr, gv.ptr, gout_in.ptr, gdout.ptr,
                                               glse_in.ptr, gdq.ptr, gdk.ptr, gdv.ptr, cu_dev,
                                               c.batch, c.seq, c.hq, c.hkv, c.d, c.causal,
                                               c.window, scale, gws.ptr, gws_bytes, nullptr),
                 MOE4J_OK);
    gpu::sync();
    const std::vector<S> out = gout.download(), dq = gdq.download(), dk = gdk.download(),
                         dv = gdv.download();
    const std::vector<float> lse = glse.download();
    if (run == 0) {
      close("out", c, out, out_c);
      close("dq", c, dq, dq_c);
      close("dk", c, dk, dk_c);
      close("dv", c, dv, dv_c);
      for (size_t i = 0; i < nl; i++) {
        if (!(fabsf(lse[i] - lse_c[i]) <= 1e-5f * (1.0f + fabsf(lse_c[i])))) {
          char msg[160];
          snprintf(msg, sizeof msg, "lse[%zu] = %.9g, cpu %.9g (S%lld D%lld%s)", i, lse[i],
                   lse_c[i], (long long)c.seq, (long long)c.d, cu != nullptr ? " varlen" : "");
          check::report(__FILE__, __LINE__, msg);
          break;
        }
      }
      first_out = out, first_dq = dq, first_dk = dk, first_dv = dv, first_lse = lse;
    } else { /* determinism: bitwise identical on the second run */
      CHECK(same_bits(out, first_out));
      CHECK(same_bits(lse, first_lse));
      CHECK(same_bits(dq, first_dq));
      CHECK(same_bits(dk, first_dk));
      CHECK(same_bits(dv, first_dv));
    }
  }
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(0), MOE4J_OK);
}

std::vector<int32_t> offsets(const std::vector<int64_t> &lengths) {
  std::vector<int32_t> c(lengths.size() + 1, 0);
  for (size_t b = 0; b < lengths.size(); b++) c[b + 1] = c[b] + (int32_t)lengths[b];
  return c;
}

}  // namespace

TEST_CASE(attention_matches_cpu_twin) {
  const int64_t seqs[] = {1, 7, 65}, dims[] = {6, 64, 128}, windows[] = {0, 5};
  const int64_t heads[][2] = {{2, 2}, {6, 2}, {4, 1}};
  uint64_t seed = 1000;
  for (int64_t s : seqs)
    for (auto &hh : heads)
      for (int32_t causal = 0; causal < 2; causal++)
        for (int64_t w : windows)
          for (int64_t d : dims) {
            const Case c{2, s, hh[0], hh[1], d, causal, w};
            run_case<float>(c, seed);
            run_case<uint16_t>(c, seed);
            seed += 10;
          }
}

TEST_CASE(varlen_attention_matches_cpu_twin) {
  const std::vector<int32_t> cu = offsets({1, 0, 17, 64, 130});
  const int64_t heads[][2] = {{2, 2}, {8, 2}};
  uint64_t seed = 3000;
  for (auto &hh : heads)
    for (int32_t causal = 0; causal < 2; causal++)
      for (int64_t w : {0, 5})
        for (int64_t d : {64, 40}) {
          const Case c{5, cu[5], hh[0], hh[1], d, causal, w};
          run_case<float>(c, seed, &cu);
          run_case<uint16_t>(c, seed, &cu);
          seed += 10;
        }
}

/* Offsets the host never checks on CUDA: {0, 50, 20, 80} over T = 80 (sequence 1 reversed, so
 * empty after clamping; sequence 2 overlapping sequence 0) and {5, 3, 200} over T = 40 (tokens
 * 0..2 in no sequence, an end beyond T). The kernels must stay inside the buffers (guard elements
 * after every output keep their value) and give rows in no sequence out = 0, lse = -inf and zero
 * dq; every value must be finite or -inf (lse). */
TEST_CASE(invalid_cu_seqlens_stay_in_bounds) {
  const int64_t hq = 2, hkv = 1, d = 8;
  const float guard = 12345.0f;
  const std::vector<int32_t> cases[] = {{0, 50, 20, 80}, {5, 3, 200}};
  const int64_t totals[] = {80, 40};
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(1), MOE4J_OK);
  for (int ci = 0; ci < 2; ci++) {
    const std::vector<int32_t> &cu = cases[ci];
    const int64_t B = (int64_t)cu.size() - 1, T = totals[ci];
    const size_t nq = T * hq * d, nkv = T * hkv * d, nl = hq * T, G = 64;
    gpu::DeviceBuffer<float> gq(check::randn(nq, 71)), gk(check::randn(nkv, 72)),
        gv(check::randn(nkv, 73)), gdout(check::randn(nq, 74));
    gpu::DeviceBuffer<int32_t> gcu(cu);
    gpu::DeviceBuffer<float> gout(std::vector<float>(nq + G, guard)),
        glse(std::vector<float>(nl + G, guard)), gdq(std::vector<float>(nq + G, guard)),
        gdk(std::vector<float>(nkv + G, guard)), gdv(std::vector<float>(nkv + G, guard));
    int64_t ws_bytes = 0;
    CHECK_STATUS(moe4j_cuda_attention_backward_workspace_bytes(1, T, hq, d, &ws_bytes), MOE4J_OK);
    gpu::DeviceBuffer<float> gws(std::vector<float>(ws_bytes / 4 + G, guard));
    CHECK_STATUS(moe4j_cuda_attention_forward(MOE4J_DTYPE_F32, gq.ptr, gk.ptr, gv.ptr, gout.ptr,
                                              glse.ptr, gcu.ptr, B, T, hq, hkv, d, 1, 0, 0.35f,
                                              nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_attention_backward(MOE4J_DTYPE_F32, gq.ptr, gk.ptr, gv.ptr, gout.ptr,
                                               gdout.ptr, glse.ptr, gdq.ptr, gdk.ptr, gdv.ptr,
                                               gcu.ptr, B, T, hq, hkv, d, 1, 0, 0.35f, gws.ptr,
                                               ws_bytes, nullptr), MOE4J_OK);
    gpu::sync();
    const std::vector<float> out = gout.download(), lse = glse.download(), dq = gdq.download(),
                             dk = gdk.download(), dv = gdv.download(), ws = gws.download();
    for (size_t i = 0; i < G; i++) {
      CHECK(out[nq + i] == guard && lse[nl + i] == guard && dq[nq + i] == guard);
      CHECK(dk[nkv + i] == guard && dv[nkv + i] == guard);
      CHECK(ws[ws_bytes / 4 + i] == guard);
    }
    for (size_t i = 0; i < nq; i++) CHECK(isfinite(out[i]) && isfinite(dq[i]));
    for (size_t i = 0; i < nkv; i++) CHECK(isfinite(dk[i]) && isfinite(dv[i]));
    for (size_t i = 0; i < nl; i++) CHECK(isfinite(lse[i]) || lse[i] == -INFINITY);
    if (ci == 1) /* tokens 0..2 lie in no sequence (sequence 1 clamps to 3..39) */
      for (int64_t t = 0; t < 3; t++) {
        for (int64_t h = 0; h < hq; h++) {
          CHECK(lse[h * T + t] == -INFINITY);
          for (int64_t e = 0; e < d; e++)
            CHECK(out[(t * hq + h) * d + e] == 0.0f && dq[(t * hq + h) * d + e] == 0.0f);
        }
        for (int64_t e = 0; e < d; e++) CHECK(dk[t * d + e] == 0.0f && dv[t * d + e] == 0.0f);
      }
  }
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(0), MOE4J_OK);
}

TEST_CASE(attention_empty_is_noop) {
  CHECK_STATUS(moe4j_cuda_attention_forward(MOE4J_DTYPE_F32, nullptr, nullptr, nullptr, nullptr,
                                            nullptr, nullptr, 0, 5, 2, 2, 8, 1, 0, 0.5f, nullptr),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_attention_backward(MOE4J_DTYPE_BF16, nullptr, nullptr, nullptr, nullptr,
                                             nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                             3, 0, 2, 1, 8, 0, 0, 0.5f, nullptr, 0, nullptr),
               MOE4J_OK);
}

GPU_TEST_MAIN("gpu_attention")
