/*
 * Bad-argument tests for the flash attention functions of libmoe4j_cuda (moe4j.h "Attention":
 * moe4j_cuda_attention_forward / _backward). Validation (native/src/attention_args.h, shared with
 * the CPU twin, plus the reference kernels' grid limit) runs before any CUDA call, so these run on
 * every machine (label cpu): no GPU, no driver needed. Each call must fail with the expected status
 * and a message naming the function and the argument, and leave the outputs untouched. The pointers
 * are host memory (or, for the grid limit, far-apart fake addresses) that are never dereferenced;
 * empty calls (batch * seq == 0) return OK before any launch.
 *
 * Shapes used: B 1, S 3, Hq 4, Hkv 2, D 4: q/out/dout/dq 48 elements, k/v/dk/dv 24, lse 12.
 * Varlen (cu_seqlens): the host never reads the offsets on CUDA (device memory; the kernels clamp
 * them), so only the buffer rules, the int32 limits and the backward workspace are checked here.
 */
#include <math.h>
#include <stdint.h>

#include <vector>

#define CHECK_LAST_ERROR moe4j_cuda_last_error
#include "check.h"
#include "moe4j.h"

namespace {

const int64_t B = 1, S = 3, Hq = 4, Hkv = 2, D = 4;
const int64_t NQ = B * S * Hq * D, NKV = B * S * Hkv * D;
const int32_t F32 = MOE4J_DTYPE_F32, BF16 = MOE4J_DTYPE_BF16;
const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT, UNSUP = MOE4J_ERR_UNSUPPORTED;

}  // namespace

TEST_CASE(forward_arguments) {
  std::vector<float> q(NQ, 0.5f), k(NKV, 0.5f), v(NKV, 0.5f), out(NQ, 9.0f), lse(B * Hq * S, 9.0f);
  const float *Q = q.data(), *K = k.data(), *V = v.data();
  float *O = out.data(), *L = lse.data();
  auto fwd = [&](int32_t dt, const void *qp, const void *kp, const void *vp, void *op, float *lp,
                 int64_t b, int64_t s, int64_t hq, int64_t hkv, int64_t d, float scale) {
    return moe4j_cuda_attention_forward(dt, qp, kp, vp, op, lp, nullptr, b, s, hq, hkv, d, 1, 0,
                                        scale, nullptr);
  };
  CHECK_FAILS(fwd(MOE4J_DTYPE_F16, Q, K, V, O, L, B, S, Hq, Hkv, D, 0.5f), UNSUP, "moe4j_cuda_attention_forward: dtype must be F32 or BF16, got F16");
  CHECK_FAILS(fwd(MOE4J_DTYPE_I32, Q, K, V, O, L, B, S, Hq, Hkv, D, 0.5f), UNSUP, "dtype must be F32 or BF16");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, -1, S, Hq, Hkv, D, 0.5f), INV, "moe4j_cuda_attention_forward: batch must be >= 0, got -1");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, B, -3, Hq, Hkv, D, 0.5f), INV, "seq must be >= 0, got -3");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, B, S, 0, Hkv, D, 0.5f), INV, "q_heads must be >= 1, got 0");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, B, S, Hq, 0, D, 0.5f), INV, "kv_heads must be >= 1, got 0");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, B, S, 6, 4, D, 0.5f), INV, "q_heads (6) must be a multiple of kv_heads (4)");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, B, S, Hq, Hkv, 3, 0.5f), INV, "head_dim must be even and in [2, 256], got 3");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, B, S, Hq, Hkv, 0, 0.5f), INV, "head_dim must be even");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, B, S, Hq, Hkv, 258, 0.5f), INV, "got 258");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, B, S, Hq, Hkv, D, 0.0f), INV, "scale must be finite and > 0");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, B, S, Hq, Hkv, D, -1.0f), INV, "scale must be finite and > 0");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, B, S, Hq, Hkv, D, NAN), INV, "scale must be finite and > 0");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, B, S, Hq, Hkv, D, INFINITY), INV, "scale must be finite and > 0");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, INT64_MAX / 2, 4, Hq, Hkv, D, 0.5f), INV, "batch * seq");
  CHECK_FAILS(fwd(F32, Q, K, V, O, L, int64_t(1) << 40, int64_t(1) << 18, Hq, Hkv, D, 0.5f), INV, "overflows int64");
  CHECK_FAILS(fwd(F32, nullptr, K, V, O, L, B, S, Hq, Hkv, D, 0.5f), INV, "q is NULL");
  CHECK_FAILS(fwd(F32, Q, nullptr, V, O, L, B, S, Hq, Hkv, D, 0.5f), INV, "k is NULL");
  CHECK_FAILS(fwd(F32, Q, K, nullptr, O, L, B, S, Hq, Hkv, D, 0.5f), INV, "v is NULL");
  CHECK_FAILS(fwd(F32, Q, K, V, nullptr, L, B, S, Hq, Hkv, D, 0.5f), INV, "out is NULL");
  CHECK_FAILS(fwd(F32, Q, K, V, O, nullptr, B, S, Hq, Hkv, D, 0.5f), INV, "lse is NULL");
  CHECK_FAILS(fwd(F32, (const char *)Q + 2, K, V, O, L, B, S, Hq, Hkv, D, 0.5f), INV, "q (address");
  CHECK_FAILS(fwd(BF16, Q, K, V, (char *)O + 1, L, B, S, Hq, Hkv, D, 0.5f), INV, "out (address");
  CHECK_FAILS(fwd(F32, Q, K, V, O, (float *)((char *)L + 2), B, S, Hq, Hkv, D, 0.5f), INV, "lse (address");
  CHECK_FAILS(fwd(F32, Q, K, V, (float *)Q + 1, L, B, S, Hq, Hkv, D, 0.5f), INV, "out and q overlap");
  CHECK_FAILS(fwd(F32, Q, K, V, (float *)V, L, B, S, Hq, Hkv, D, 0.5f), INV, "out and v overlap");
  CHECK_FAILS(fwd(F32, Q, K, V, O, (float *)K, B, S, Hq, Hkv, D, 0.5f), INV, "lse and k overlap");
  CHECK_FAILS(fwd(F32, Q, K, V, O, O + 4, B, S, Hq, Hkv, D, 0.5f), INV, "out and lse overlap");
  /* the reference kernels' grid: one thread per (b, q head, i) must stay below 2^31 (fake,
   * far-apart addresses: validation rejects the call before anything is read) */
  const char *base = (const char *)(uintptr_t(1) << 44);
  const void *fq = base, *fk = base + (int64_t(1) << 40), *fv = base + (int64_t(2) << 40);
  void *fo = (void *)(base + (int64_t(3) << 40));
  float *fl = (float *)(base + (int64_t(4) << 40));
  CHECK_FAILS(fwd(F32, fq, fk, fv, fo, fl, int64_t(1) << 20, int64_t(1) << 12, 1, 1, 2, 0.5f), INV, "moe4j_cuda_attention_forward: grid too large");
  for (float x : out) CHECK(x == 9.0f);
  for (float x : lse) CHECK(x == 9.0f);
  /* empty: OK without touching anything (no GPU needed) */
  CHECK_STATUS(fwd(F32, Q, K, V, O, L, 0, S, Hq, Hkv, D, 0.5f), MOE4J_OK);
  CHECK_STATUS(fwd(BF16, Q, K, V, O, L, B, 0, Hq, Hkv, D, 0.5f), MOE4J_OK);
  CHECK_STATUS(fwd(F32, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 0, Hq, Hkv, D, 0.5f), MOE4J_OK);
  for (float x : out) CHECK(x == 9.0f);
}

TEST_CASE(backward_arguments) {
  std::vector<float> q(NQ, 0.5f), k(NKV, 0.5f), v(NKV, 0.5f), out(NQ, 0.5f), lse(B * Hq * S, 1.0f);
  std::vector<float> dout(NQ, 1.0f), dq(NQ, 9.0f), dk(NKV, 9.0f), dv(NKV, 9.0f), ws(64, 9.0f);
  const float *Q = q.data();
  float *O = out.data(), *L = lse.data(), *GQ = dq.data(), *GK = dk.data(), *GV = dv.data();
  float *W = ws.data();
  const int64_t WB = 256; /* 4 * 12 rows rounded up to 256 */
  auto bwd = [&](int32_t dt, const void *o, const void *g, const float *l, void *gq, void *gk,
                 void *gv, int64_t b, int64_t s, int64_t hq, int64_t hkv, int64_t d, float scale) {
    return moe4j_cuda_attention_backward(dt, Q, k.data(), v.data(), o, g, l, gq, gk, gv, nullptr,
                                         b, s, hq, hkv, d, 0, 5, scale, W, WB, nullptr);
  };
  const float *G = dout.data();
  CHECK_FAILS(bwd(MOE4J_DTYPE_I32, O, G, L, GQ, GK, GV, B, S, Hq, Hkv, D, 0.5f), UNSUP, "moe4j_cuda_attention_backward: dtype must be F32 or BF16");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, GV, -1, S, Hq, Hkv, D, 0.5f), INV, "moe4j_cuda_attention_backward: batch must be >= 0, got -1");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, GV, B, -2, Hq, Hkv, D, 0.5f), INV, "seq must be >= 0, got -2");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, GV, B, S, 3, 2, D, 0.5f), INV, "q_heads (3) must be a multiple of kv_heads (2)");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, GV, B, S, Hq, 0, D, 0.5f), INV, "kv_heads must be >= 1, got 0");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, GV, B, S, Hq, Hkv, 7, 0.5f), INV, "head_dim must be even");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, GV, B, S, Hq, Hkv, 512, 0.5f), INV, "head_dim must be even and in [2, 256], got 512");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, GV, B, S, Hq, Hkv, D, -1.0f), INV, "scale must be finite and > 0");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, GV, B, S, Hq, Hkv, D, NAN), INV, "scale must be finite and > 0");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, GV, int64_t(1) << 40, int64_t(1) << 18, Hq, Hkv, D, 0.5f), INV, "overflows int64");
  CHECK_FAILS(bwd(F32, nullptr, G, L, GQ, GK, GV, B, S, Hq, Hkv, D, 0.5f), INV, "out is NULL");
  CHECK_FAILS(bwd(F32, O, nullptr, L, GQ, GK, GV, B, S, Hq, Hkv, D, 0.5f), INV, "dout is NULL");
  CHECK_FAILS(bwd(F32, O, G, nullptr, GQ, GK, GV, B, S, Hq, Hkv, D, 0.5f), INV, "lse is NULL");
  CHECK_FAILS(bwd(F32, O, G, L, nullptr, GK, GV, B, S, Hq, Hkv, D, 0.5f), INV, "dq is NULL");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, nullptr, GV, B, S, Hq, Hkv, D, 0.5f), INV, "dk is NULL");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, nullptr, B, S, Hq, Hkv, D, 0.5f), INV, "dv is NULL");
  CHECK_FAILS(moe4j_cuda_attention_backward(F32, nullptr, k.data(), v.data(), O, G, L, GQ, GK, GV, nullptr, B, S, Hq, Hkv, D, 0, 0, 0.5f, W, WB, nullptr), INV, "q is NULL");
  CHECK_FAILS(bwd(BF16, O, G, L, (char *)GQ + 1, GK, GV, B, S, Hq, Hkv, D, 0.5f), INV, "dq (address");
  CHECK_FAILS(bwd(F32, O, G, L, (float *)Q, GK, GV, B, S, Hq, Hkv, D, 0.5f), INV, "dq and q overlap");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, O + 8, GV, B, S, Hq, Hkv, D, 0.5f), INV, "dk and out overlap");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, (float *)G, B, S, Hq, Hkv, D, 0.5f), INV, "dv and dout overlap");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, GK + 4, B, S, Hq, Hkv, D, 0.5f), INV, "dk and dv overlap");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GQ + 4, GV, B, S, Hq, Hkv, D, 0.5f), INV, "dq and dk overlap");
  CHECK_FAILS(bwd(F32, O, G, L, GQ, GK, (float *)L, B, S, Hq, Hkv, D, 0.5f), INV, "dv and lse overlap");
  for (float x : dq) CHECK(x == 9.0f);
  for (float x : dk) CHECK(x == 9.0f);
  for (float x : dv) CHECK(x == 9.0f);
  CHECK_STATUS(bwd(F32, O, G, L, GQ, GK, GV, 0, S, Hq, Hkv, D, 0.5f), MOE4J_OK);
  CHECK_STATUS(bwd(BF16, O, G, L, GQ, GK, GV, B, 0, Hq, Hkv, D, 0.5f), MOE4J_OK);
  for (float x : dq) CHECK(x == 9.0f);
}

TEST_CASE(varlen_and_workspace_arguments) {
  const int64_t T = 3; /* the shapes above as one packed sequence: [T, H, D] */
  /* lse has room for a whole 256-byte workspace, so using it as one overlaps lse only */
  std::vector<float> q(NQ, 0.5f), k(NKV, 0.5f), v(NKV, 0.5f), out(NQ, 9.0f), lse(64, 9.0f);
  std::vector<float> dout(NQ, 1.0f), dq(NQ, 9.0f), dk(NKV, 9.0f), dv(NKV, 9.0f), ws(64, 9.0f);
  std::vector<int32_t> cu_store = {0, 1, 3, 0};
  const int32_t *CU = cu_store.data();
  float *O = out.data(), *L = lse.data(), *GQ = dq.data(), *GK = dk.data(), *GV = dv.data();
  float *W = ws.data();
  auto fwd = [&](const int32_t *cu, int64_t b, int64_t t) {
    return moe4j_cuda_attention_forward(F32, q.data(), k.data(), v.data(), O, L, cu, b, t, Hq, Hkv,
                                        D, 1, 0, 0.5f, nullptr);
  };
  CHECK_FAILS(fwd((const int32_t *)((const char *)CU + 2), 2, T), INV, "moe4j_cuda_attention_forward: cu_seqlens (address");
  CHECK_FAILS(fwd(CU, 2, int64_t(INT32_MAX) + 1), INV, "seq (2147483648, the packed token count) must be <= 2147483647 with cu_seqlens");
  CHECK_FAILS(fwd(CU, INT32_MAX, T), INV, "batch (2147483647) must be < 2147483647 with cu_seqlens");
  CHECK_FAILS(fwd(CU, -1, T), INV, "batch must be >= 0, got -1");
  CHECK_FAILS(fwd((const int32_t *)O, 2, T), INV, "out and cu_seqlens overlap");
  CHECK_FAILS(fwd((const int32_t *)L, 2, T), INV, "lse and cu_seqlens overlap");
  for (float x : out) CHECK(x == 9.0f);
  for (float x : lse) CHECK(x == 9.0f);
  /* no tokens: OK before any launch, the offsets are not read */
  CHECK_STATUS(moe4j_cuda_attention_forward(F32, nullptr, nullptr, nullptr, nullptr, nullptr, CU, 2, 0, Hq, Hkv, D, 1, 0, 0.5f, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_attention_forward(F32, nullptr, nullptr, nullptr, nullptr, nullptr, CU, 0, 0, Hq, Hkv, D, 1, 0, 0.5f, nullptr), MOE4J_OK);

  auto bwd = [&](const int32_t *cu, int64_t b, int64_t t, void *w, int64_t wb) {
    return moe4j_cuda_attention_backward(F32, q.data(), k.data(), v.data(), out.data(),
                                         dout.data(), L, GQ, GK, GV, cu, b, t, Hq, Hkv, D, 1, 0,
                                         0.5f, w, wb, nullptr);
  };
  CHECK_FAILS(bwd(CU, 2, T, W, 255), INV, "moe4j_cuda_attention_backward: workspace_bytes (255) is smaller than the required 256 bytes");
  CHECK_FAILS(bwd(CU, 2, T, nullptr, 256), INV, "workspace is NULL");
  CHECK_FAILS(bwd(CU, 2, T, (char *)W + 1, 256), INV, "workspace (address");
  CHECK_FAILS(bwd(CU, 2, T, GK + 4, 256), INV, "dk and workspace overlap");
  CHECK_FAILS(bwd(CU, 2, T, (void *)L, 256), INV, "workspace and lse overlap");
  CHECK_FAILS(bwd((const int32_t *)GQ, 2, T, W, 256), INV, "dq and cu_seqlens overlap");
  CHECK_FAILS(bwd(CU, 2, int64_t(INT32_MAX) + 1, W, 256), INV, "must be <= 2147483647 with cu_seqlens");
  /* uniform: the same rules without cu_seqlens */
  CHECK_FAILS(bwd(nullptr, 1, T, W, 0), INV, "workspace_bytes (0) is smaller than the required 256 bytes");
  for (float x : dq) CHECK(x == 9.0f);
  for (float x : dk) CHECK(x == 9.0f);
  for (float x : dv) CHECK(x == 9.0f);
  CHECK_STATUS(moe4j_cuda_attention_backward(F32, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, CU, 2, 0, Hq, Hkv, D, 1, 0, 0.5f, nullptr, 0, nullptr), MOE4J_OK);
}

TEST_CASE(backward_workspace_bytes_match_the_cpu_rule) {
  /* 4 * batch * seq * q_heads rounded up to 256 (the same shared function as the CPU twin) */
  int64_t bytes = -1;
  CHECK_STATUS(moe4j_cuda_attention_backward_workspace_bytes(2, 3, 4, 64, &bytes), MOE4J_OK);
  CHECK(bytes == 256);
  CHECK_STATUS(moe4j_cuda_attention_backward_workspace_bytes(1, 100, 8, 64, &bytes), MOE4J_OK);
  CHECK(bytes == 3328);
  CHECK_STATUS(moe4j_cuda_attention_backward_workspace_bytes(0, 100, 8, 64, &bytes), MOE4J_OK);
  CHECK(bytes == 0);
  CHECK_FAILS(moe4j_cuda_attention_backward_workspace_bytes(1, 1, 1, 64, nullptr), INV, "moe4j_cuda_attention_backward_workspace_bytes: out_bytes is NULL");
  CHECK_FAILS(moe4j_cuda_attention_backward_workspace_bytes(1, -1, 1, 64, &bytes), INV, "seq must be >= 0, got -1");
  CHECK_FAILS(moe4j_cuda_attention_backward_workspace_bytes(1, 1, 1, 300, &bytes), INV, "head_dim must be even and in [2, 256], got 300");
  CHECK_FAILS(moe4j_cuda_attention_backward_workspace_bytes(int64_t(1) << 40, int64_t(1) << 20, 1, 64, &bytes), INV, "overflows int64");
}

TEST_MAIN("cuda_attention_arguments")
