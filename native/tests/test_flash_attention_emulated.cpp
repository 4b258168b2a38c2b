/* The FlashAttention-2 CUDA kernels (kernels/flash_attention_kernels.cuh, the very code
 * flash_attention.cu compiles for the GPU) run on the CPU under a small warp emulator, against the
 * CPU twin, so the fragment plumbing (ldmatrix / mma.sync layouts, swizzled tiles, P and dS kept in
 * registers), the online softmax, masks, tile ranges, the cp.async stage rotation, GQA, varlen
 * slots and the epilogues are checked on a machine without a GPU.
 *
 * Emulator: native/tests/warp_emulator.h. Exponentials use exp2f where the GPU uses ex2.approx
 * (the kernels' host fallback), so the tolerances are those of kernels/tests/test_flash_attention.cpp.
 * Cases: D 32, 64 and 128, causal / not, windows (one spanning tile edges, so whole tiles are skipped),
 * GQA 2:1 and 4:1, S = 1, 64 (one exact tile), 70..200 (partial last tiles), a varlen batch with an
 * empty and a 1-token sequence, and an invalid cu_seqlens whose uncovered tokens must come out
 * zero (orphan kernel).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "attention_tiles.h"
#include "check.h"
#include "moe4j.h"
#include "numerics.h"
#include "warp_emulator.h"

/* the kernels under test */
#include "../../kernels/flash_attention_kernels.cuh"

using namespace moe4j;

namespace {

using Bits = uint16_t;

std::vector<Bits> encode(const std::vector<float> &v) {
  std::vector<Bits> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = f32_to_bf16_bits(v[i]);
  return out;
}

struct Case {
  int64_t batch, seq;
  std::vector<int32_t> cu; /* empty: uniform */
  int64_t hq, hkv;
  int d;
  int32_t causal;
  int64_t window;
  int64_t tokens() const { return cu.empty() ? batch * seq : seq; }
};

bool close(const char *what, const Case &c, const std::vector<Bits> &got,
           const std::vector<Bits> &want, double rel, double norm) {
  double mx = 0;
  for (Bits x : want) mx = fmax(mx, fabs((double)bf16_bits_to_f32(x)));
  for (size_t i = 0; i < want.size(); i++) {
    const double a = bf16_bits_to_f32(got[i]), b = bf16_bits_to_f32(want[i]);
    if (!(fabs(a - b) <= rel * fabs(b) + norm * mx)) {
      char msg[300];
      snprintf(msg, sizeof msg, "%s[%zu] = %.7g, want %.7g (max %.3g) %s S%lld Hq%lld Hkv%lld D%d causal %d window %lld",
               what, i, a, b, mx, c.cu.empty() ? "uniform" : "varlen", (long long)c.seq,
               (long long)c.hq, (long long)c.hkv, c.d, c.causal, (long long)c.window);
      check::report(__FILE__, __LINE__, msg);
      return false;
    }
  }
  return true;
}

/* The launch geometry of flash_attention.cu (tile_grid). */
dim3 grid_of(const Case &c, int64_t heads) {
  if (!c.cu.empty())
    return dim3{(unsigned)attn_varlen_slot_count(c.batch, c.seq), (unsigned)heads, 1u};
  return dim3{(unsigned)attn_tile_count(c.seq, kFaRows), (unsigned)heads, (unsigned)c.batch};
}

template <int D>
void run_case(const Case &c, uint64_t seed) {
  const size_t nq = c.tokens() * c.hq * D, nkv = c.tokens() * c.hkv * D, nl = c.tokens() * c.hq;
  const float scale = 1.0f / sqrtf((float)D);
  const std::vector<Bits> q = encode(check::randn(nq, seed)), k = encode(check::randn(nkv, seed + 1)),
                          v = encode(check::randn(nkv, seed + 2)),
                          dout = encode(check::randn(nq, seed + 3));
  const int32_t *cu = c.cu.empty() ? nullptr : c.cu.data();
  const Bits nan = f32_to_bf16_bits(NAN);

  /* CPU twin */
  std::vector<Bits> out_c(nq, nan), dq_c(nq, nan), dk_c(nkv, nan), dv_c(nkv, nan);
  std::vector<float> lse_c(nl, NAN);
  CHECK_STATUS(moe4j_cpu_attention_forward(MOE4J_DTYPE_BF16, q.data(), k.data(), v.data(),
                                           out_c.data(), lse_c.data(), cu, c.batch, c.seq, c.hq,
                                           c.hkv, D, c.causal, c.window, scale), MOE4J_OK);
  int64_t ws_bytes = 0;
  CHECK_STATUS(moe4j_cpu_attention_backward_workspace_bytes(cu ? 1 : c.batch, c.seq, c.hq, D,
                                                            &ws_bytes), MOE4J_OK);
  std::vector<float> ws_c(ws_bytes / 4 + 1);
  CHECK_STATUS(moe4j_cpu_attention_backward(MOE4J_DTYPE_BF16, q.data(), k.data(), v.data(),
                                            out_c.data(), dout.data(), lse_c.data(), dq_c.data(),
                                            dk_c.data(), dv_c.data(), cu, c.batch, c.seq, c.hq,
                                            c.hkv, D, c.causal, c.window, scale, ws_c.data(),
                                            ws_bytes), MOE4J_OK);

  /* the kernels, emulated; the backward reads the CPU forward's out / lse like the GPU test */
  std::vector<Bits> out(nq, nan), dq(nq, nan), dk(nkv, nan), dv(nkv, nan);
  std::vector<float> lse(nl, NAN), dsum(nl, NAN);
  FaParams p;
  p.q = (const bf16_t *)q.data();
  p.k = (const bf16_t *)k.data();
  p.v = (const bf16_t *)v.data();
  p.out = (const bf16_t *)out_c.data();
  p.dout = (const bf16_t *)dout.data();
  p.dk = (bf16_t *)dk.data();
  p.dv = (bf16_t *)dv.data();
  p.lse_in = lse_c.data();
  p.lse_out = lse.data();
  p.dsum = dsum.data();
  p.cu = cu;
  p.batch = c.batch;
  p.seq = c.seq;
  p.q_heads = (int)c.hq;
  p.kv_heads = (int)c.hkv;
  p.causal = c.causal != 0;
  p.window = c.window;
  p.scale = scale;
  p.o_or_dq = (bf16_t *)out.data();
  emu::run_grid(grid_of(c, c.hq), kFaThreads, [&] { flash_fwd_kernel<D>(p); });
  p.o_or_dq = (bf16_t *)dq.data();
  emu::run_grid(grid_of(c, c.hq), kFaThreads, [&] { flash_bwd_dot_kernel<D>(p); });
  emu::run_grid(grid_of(c, c.hkv), kFaThreads, [&] { flash_bwd_dkv_kernel<D>(p); });
  emu::run_grid(grid_of(c, c.hq), kFaThreads, [&] { flash_bwd_dq_kernel<D>(p); });
  if (cu != nullptr) { /* tokens in no sequence: none here, so this must leave everything as is */
    const std::vector<Bits> before = dq;
    emu::run_grid(dim3{(unsigned)attn_tile_count(c.seq, kFaThreads), 1, 1}, kFaThreads, [&] {
      flash_varlen_orphans_kernel(cu, c.batch, c.seq, D, (bf16_t *)dq.data(), (int)c.hq, nullptr,
                                  (bf16_t *)dk.data(), (bf16_t *)dv.data(), (int)c.hkv);
    });
    CHECK(memcmp(before.data(), dq.data(), nq * 2) == 0);
  }

  close("out", c, out, out_c, 1.0 / 128, 4e-3);
  for (size_t i = 0; i < nl; i++)
    if (!(fabsf(lse[i] - lse_c[i]) <= 1e-3f * (1.0f + fabsf(lse_c[i])))) {
      char msg[160];
      snprintf(msg, sizeof msg, "lse[%zu] = %.9g, want %.9g (S%lld D%d)", i, lse[i], lse_c[i],
               (long long)c.seq, D);
      check::report(__FILE__, __LINE__, msg);
      break;
    }
  close("dq", c, dq, dq_c, 1.0 / 64, 2e-2);
  close("dk", c, dk, dk_c, 1.0 / 64, 2e-2);
  close("dv", c, dv, dv_c, 1.0 / 64, 2e-2);
}

}  // namespace

TEST_CASE(forward_and_backward_match_cpu_twin_d64) {
  run_case<64>(Case{1, 130, {}, 2, 1, 64, 1, 0}, 100); /* GQA, causal, partial last tile */
  run_case<64>(Case{1, 70, {}, 2, 2, 64, 0, 37}, 110); /* window, not causal */
  run_case<64>(Case{2, 1, {}, 2, 1, 64, 1, 0}, 120);   /* single-token sequences, batch 2 */
  run_case<64>(Case{4, 150, {0, 70, 70, 71, 150}, 2, 1, 64, 1, 0}, 130); /* varlen, empty seq */
  run_case<64>(Case{1, 200, {}, 1, 1, 64, 1, 70}, 140); /* window over tile edges: tiles skipped */
}

TEST_CASE(forward_and_backward_match_cpu_twin_d32) {
  run_case<32>(Case{1, 130, {}, 2, 1, 32, 1, 0}, 300); /* GQA, causal, partial last tile */
  run_case<32>(Case{1, 70, {}, 2, 2, 32, 0, 37}, 310); /* window, not causal */
  run_case<32>(Case{4, 150, {0, 70, 70, 71, 150}, 2, 1, 32, 1, 0}, 320); /* varlen, empty seq */
}

TEST_CASE(forward_and_backward_match_cpu_twin_d128) {
  run_case<128>(Case{1, 100, {}, 4, 1, 128, 1, 20}, 200); /* GQA 4:1, causal + window */
  run_case<128>(Case{1, 64, {}, 1, 1, 128, 0, 0}, 210);   /* one exact tile */
}

TEST_CASE(pipeline_holds_when_cp_async_lands_late) {
  emu::g_late_cp_async = true;
  run_case<64>(Case{1, 200, {}, 2, 1, 64, 1, 0}, 400);
  run_case<128>(Case{3, 150, {0, 70, 71, 150}, 2, 2, 128, 0, 40}, 410);
  run_case<32>(Case{1, 200, {}, 4, 2, 32, 1, 0}, 420);
  emu::g_late_cp_async = false;
}

TEST_CASE(tokens_outside_every_sequence_get_zeros) {
  /* c[B] = 30 < T = 50: tokens 30..49 lie in no sequence; the tile kernels skip them and the
   * orphan kernel (run after them, as flash_attention.cu does) must zero out / lse / gradients */
  const int64_t T = 50, H = 2, D = 64;
  const std::vector<int32_t> cu = {0, 20, 30};
  const Bits nan = f32_to_bf16_bits(NAN);
  const std::vector<Bits> q = encode(check::randn(T * H * D, 5)), k = encode(check::randn(T * H * D, 6)),
                          v = encode(check::randn(T * H * D, 7));
  std::vector<Bits> out(T * H * D, nan), dk(T * H * D, nan), dv(T * H * D, nan);
  std::vector<float> lse(T * H, NAN);
  FaParams p{};
  p.q = (const bf16_t *)q.data();
  p.k = (const bf16_t *)k.data();
  p.v = (const bf16_t *)v.data();
  p.o_or_dq = (bf16_t *)out.data();
  p.lse_out = lse.data();
  p.cu = cu.data();
  p.batch = 2;
  p.seq = T;
  p.q_heads = p.kv_heads = (int)H;
  p.causal = true;
  p.scale = 0.125f;
  emu::run_grid(dim3{(unsigned)attn_varlen_slot_count(2, T), (unsigned)H, 1u}, kFaThreads,
                [&] { flash_fwd_kernel<64>(p); });
  emu::run_grid(dim3{1, 1, 1}, kFaThreads, [&] {
    flash_varlen_orphans_kernel(cu.data(), 2, T, (int)D, (bf16_t *)out.data(), (int)H, lse.data(),
                                (bf16_t *)dk.data(), (bf16_t *)dv.data(), (int)H);
  });
  bool orphans_zero = true, inside_finite = true;
  for (int64_t t = 0; t < T; t++)
    for (int64_t h = 0; h < H; h++) {
      const float l = lse[h * T + t];
      for (int64_t d = 0; d < D; d++) {
        const size_t e = (t * H + h) * D + d;
        const float o = bf16_bits_to_f32(out[e]);
        if (t >= 30)
          orphans_zero = orphans_zero && o == 0.0f && bf16_bits_to_f32(dk[e]) == 0.0f &&
                         bf16_bits_to_f32(dv[e]) == 0.0f && l == -INFINITY;
        else
          inside_finite = inside_finite && isfinite(o) && isfinite(l);
      }
    }
  CHECK(orphans_zero);
  CHECK(inside_finite);
}

TEST_MAIN("flash_attention_emulated")
