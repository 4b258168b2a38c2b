/* The reference attention (forward, dq, dk/dv; what the CUDA path runs for head dims the FlashAttention-2 kernels do not take, e.g. the demo's 32) CUDA kernels (kernels/attention_kernels.cuh, the very code kernels/attention.cu compiles for
 * the GPU) run on the CPU under the warp emulator (warp_emulator.h), launched as the .cu entry
 * points launch them, against the CPU twin with the GPU test's rules
 * (kernels/tests/test_attention.cpp): within 1e-5 |ref| + 3e-5 max|ref| (the twins sum in different orders), plus one bf16 ulp for bf16. Grids of grid-stride kernels are kept small so
 * every block loops.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "check.h"
#include "emulated_compare.h"
#include "moe4j.h"
#include "numerics.h"
#include "warp_emulator.h"

/* the kernels under test */
#include "../../kernels/attention_kernels.cuh"

using namespace moe4j;
using namespace emulated_compare;

namespace {

struct Case {
  int64_t batch, seq;
  std::vector<int32_t> cu; /* empty: uniform */
  int64_t hq, hkv, d;
  int32_t causal;
  int64_t window;
  int64_t tokens() const { return cu.empty() ? batch * seq : seq; }
};

/* |got - cpu| <= rel * |cpu| + 3e-5 * max|cpu| (+ one bf16 ulp). */
template <typename S>
bool near(const std::vector<S> &got, const std::vector<S> &cpu) {
  double mx = 0;
  for (S x : cpu) mx = fmax(mx, fabs(val(x)));
  return close(got, cpu, 1e-5, 3e-5 * mx);
}

/* attention.cu's forward_ref / backward_ref: a thread per (token, head) row. */
template <typename S>
void attention_case(const Case &c) {
  using Elem = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  const int32_t dt = sizeof(S) == 2 ? BF16 : F32;
  const int64_t T = c.tokens(), nq = T * c.hq * c.d, nkv = T * c.hkv * c.d, nl = T * c.hq;
  const float scale = 1.0f / sqrtf((float)c.d);
  const auto q = encode<S>(check::randn(nq, 101 + c.d)), k = encode<S>(check::randn(nkv, 102)),
             v = encode<S>(check::randn(nkv, 103)), dout = encode<S>(check::randn(nq, 104));
  const int32_t *cu = c.cu.empty() ? nullptr : c.cu.data();
  std::vector<S> out(nq), dq(nq), dk(nkv), dv(nkv);
  std::vector<float> lse(nl);
  CHECK_STATUS(moe4j_cpu_attention_forward(dt, q.data(), k.data(), v.data(), out.data(), lse.data(), cu, c.batch, c.seq, c.hq, c.hkv, c.d, c.causal, c.window, scale), MOE4J_OK);
  int64_t ws_bytes = 0;
  CHECK_STATUS(moe4j_cpu_attention_backward_workspace_bytes(cu ? 1 : c.batch, c.seq, c.hq, c.d, &ws_bytes), MOE4J_OK);
  std::vector<float> ws(ws_bytes / 4 + 1);
  CHECK_STATUS(moe4j_cpu_attention_backward(dt, q.data(), k.data(), v.data(), out.data(), dout.data(), lse.data(), dq.data(), dk.data(), dv.data(), cu, c.batch, c.seq, c.hq, c.hkv, c.d, c.causal, c.window, scale, ws.data(), ws_bytes), MOE4J_OK);

  std::vector<S> gout(nq), gdq(nq), gdk(nkv), gdv(nkv);
  std::vector<float> glse(nl, NAN);
  const Elem *qp = (const Elem *)q.data(), *kp = (const Elem *)k.data(), *vp = (const Elem *)v.data();
  const int64_t q_rows = T * c.hq, kv_rows = T * c.hkv;
  const int qh = (int)c.hq, kh = (int)c.hkv, D = (int)c.d;
  auto grid = [](int64_t rows) { return dim3{(unsigned)((rows + kAttnRefThreads - 1) / kAttnRefThreads), 1, 1}; };
  emu::run_grid(grid(q_rows), kAttnRefThreads, [&] {
    attention_forward_ref<Elem>(qp, kp, vp, (Elem *)gout.data(), glse.data(), cu, c.batch, c.seq, q_rows, qh, kh, D, c.causal != 0, c.window, scale);
  });
  /* the backward reads the CPU forward's out / lse, as in the GPU test */
  emu::run_grid(grid(q_rows), kAttnRefThreads, [&] {
    attention_backward_dq_ref<Elem>(qp, kp, vp, (const Elem *)out.data(), (const Elem *)dout.data(), lse.data(), (Elem *)gdq.data(), cu, c.batch, c.seq, q_rows, qh, kh, D, c.causal != 0, c.window, scale);
  });
  emu::run_grid(grid(kv_rows), kAttnRefThreads, [&] {
    attention_backward_dkv_ref<Elem>(qp, kp, vp, (const Elem *)out.data(), (const Elem *)dout.data(), lse.data(), (Elem *)gdk.data(), (Elem *)gdv.data(), cu, c.batch, c.seq, kv_rows, qh, kh, D, c.causal != 0, c.window, scale);
  });
  EXPECT(near(gout, out) && close(glse, lse, 1e-5, 1e-5), "attention forward (reference kernel)", c.seq, c.d);
  EXPECT(near(gdq, dq) && near(gdk, dk) && near(gdv, dv), "attention backward (reference kernels)", c.seq, c.d);
}

}  // namespace

TEST_CASE(reference_kernels_match_cpu_twin) {
  attention_case<float>({2, 33, {}, 4, 2, 32, 1, 0});        /* the demo's head_dim, GQA 2:1, causal */
  attention_case<uint16_t>({1, 40, {}, 2, 2, 64, 0, 5});     /* window, not causal */
  attention_case<float>({3, 70, {0, 1, 1, 70}, 4, 1, 40, 1, 0}); /* varlen: a 1-token and an empty sequence */
}

TEST_MAIN("attention_emulated")
