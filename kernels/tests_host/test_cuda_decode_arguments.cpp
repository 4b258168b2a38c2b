/*
 * Bad-argument tests for the KV-cache decode functions of libmoe4j_cuda (moe4j.h "KV-cache
 * decode": attention_decode_workspace_bytes, attention_decode). Validation runs before any CUDA
 * call, so these run on every machine (label cpu): no GPU, no driver needed. Each call must fail
 * with the expected status and a message naming the function and the argument. The pointers below
 * are host memory that is never dereferenced (validation rejects the call first); empty calls
 * return before any launch.
 *
 * Shapes used: B 2, N 2, max_seq 4, Hq 4, Hkv 2, D 4: q/out 64 elements, k_new/v_new 32, caches 64,
 * lengths 2; split_k 2 needs 16 rows * 2 splits * (4 + 2) floats = 192 floats (768 bytes),
 * split_k 1 half that (the shared rules require it even though the CUDA path leaves it unused).
 */
#include <math.h>
#include <stdint.h>

#define CHECK_LAST_ERROR moe4j_cuda_last_error
#include "check.h"
#include "moe4j.h"

static float g_buf[2048];
static float *const Q = g_buf;            /* [2, 2, 4, 4] = 64 */
static float *const KN = g_buf + 64;      /* [2, 2, 2, 4] = 32 */
static float *const VN = g_buf + 96;      /* 32 */
static float *const KC = g_buf + 128;     /* [2, 4, 2, 4] = 64 */
static float *const VC = g_buf + 192;     /* 64 */
static float *const O = g_buf + 256;      /* 64 */
static int32_t *const LEN = (int32_t *)(g_buf + 320); /* 2 */
static float *const WS = g_buf + 384;     /* 192 floats */
static const int64_t WSB = 768;
static const int32_t F32 = MOE4J_DTYPE_F32, BF16 = MOE4J_DTYPE_BF16;
static const int32_t BAD = MOE4J_ERR_INVALID_ARGUMENT, UNSUP = MOE4J_ERR_UNSUPPORTED;

/* The valid call with one argument changed. */
#define DECODE(dt, q, kn, vn, kc, vc, len, o, b, n, ms, hq, hkv, d, win, sc, sk, ws, wsb) \
  moe4j_cuda_attention_decode(dt, q, kn, vn, kc, vc, len, o, b, n, ms, hq, hkv, d, win, sc, sk, \
                              ws, wsb, nullptr)

TEST_CASE(workspace_bytes_function) {
  int64_t bytes = -1;
  CHECK_STATUS(moe4j_cuda_attention_decode_workspace_bytes(2, 2, 4, 4, 2, &bytes), MOE4J_OK);
  CHECK(bytes == WSB);
  CHECK_STATUS(moe4j_cuda_attention_decode_workspace_bytes(2, 2, 4, 4, 1, &bytes), MOE4J_OK);
  CHECK(bytes == 384);
  CHECK_STATUS(moe4j_cuda_attention_decode_workspace_bytes(0, 2, 4, 4, 3, &bytes), MOE4J_OK);
  CHECK(bytes == 0);
  CHECK_FAILS(moe4j_cuda_attention_decode_workspace_bytes(2, 2, 4, 4, 2, nullptr), BAD, "moe4j_cuda_attention_decode_workspace_bytes: out_bytes is NULL");
  CHECK_FAILS(moe4j_cuda_attention_decode_workspace_bytes(-1, 2, 4, 4, 2, &bytes), BAD, "batch must be >= 0, got -1");
  CHECK_FAILS(moe4j_cuda_attention_decode_workspace_bytes(2, -3, 4, 4, 2, &bytes), BAD, "new_tokens must be >= 0, got -3");
  CHECK_FAILS(moe4j_cuda_attention_decode_workspace_bytes(2, 2, 0, 4, 2, &bytes), BAD, "q_heads must be >= 1, got 0");
  CHECK_FAILS(moe4j_cuda_attention_decode_workspace_bytes(2, 2, 4, 0, 2, &bytes), BAD, "head_dim must be even and in [2, 256], got 0");
  CHECK_FAILS(moe4j_cuda_attention_decode_workspace_bytes(2, 2, 4, 257, 2, &bytes), BAD, "head_dim must be even and in [2, 256], got 257");
  CHECK_FAILS(moe4j_cuda_attention_decode_workspace_bytes(2, 2, 4, 5, 2, &bytes), BAD, "head_dim must be even and in [2, 256], got 5");
  CHECK_FAILS(moe4j_cuda_attention_decode_workspace_bytes(2, 2, 4, 4, 1025, &bytes), BAD, "split_k must be in [1, 1024], got 1025");
  CHECK_FAILS(moe4j_cuda_attention_decode_workspace_bytes(2, 2, 4, 4, 0, &bytes), BAD, "split_k must be in [1, 1024], got 0");
  CHECK_FAILS(moe4j_cuda_attention_decode_workspace_bytes(INT64_MAX / 2, 4, 4, 4, 2, &bytes), BAD, "overflows");
  CHECK_FAILS(moe4j_cuda_attention_decode_workspace_bytes(1LL << 30, 1LL << 20, 1LL << 10, 256, 2, &bytes), BAD, "overflows");
}

TEST_CASE(decode_function) {
  /* the valid call is rejected by none of the rules below: only by the missing device, which these
   * tests do not reach (every call here fails validation first) */
  CHECK_FAILS(DECODE(MOE4J_DTYPE_I32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), UNSUP, "moe4j_cuda_attention_decode: dtype must be F32 or BF16");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, -1, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "moe4j_cuda_attention_decode: batch must be >= 0");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, -1, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "new_tokens must be >= 0");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 0, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "q_heads must be >= 1");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 3, 4, 0, 0.5f, 2, WS, WSB), BAD, "q_heads (4) must be a multiple of kv_heads (3)");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 0, 4, 0, 0.5f, 2, WS, WSB), BAD, "kv_heads must be >= 1, got 0");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 512, 0, 0.5f, 2, WS, WSB), BAD, "head_dim must be even and in [2, 256], got 512");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 1, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "max_seq (1) must be >= new_tokens (2)");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.0f, 2, WS, WSB), BAD, "scale must be finite and > 0");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, NAN, 2, WS, WSB), BAD, "scale must be finite and > 0");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, INFINITY, 2, WS, WSB), BAD, "scale must be finite and > 0");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 0, WS, WSB), BAD, "split_k must be in [1, 1024], got 0");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, INT64_MAX / 2, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "overflows");
  CHECK_FAILS(DECODE(F32, nullptr, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "q is NULL");
  CHECK_FAILS(DECODE(F32, Q, nullptr, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "k_new is NULL");
  CHECK_FAILS(DECODE(F32, Q, KN, nullptr, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "v_new is NULL");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, nullptr, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "k_cache is NULL");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, nullptr, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "v_cache is NULL");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, nullptr, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "lengths is NULL");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, nullptr, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "out is NULL");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, nullptr, WSB), BAD, "workspace is NULL");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB - 4), BAD, "workspace_bytes (764) is smaller than the required 768 bytes");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 3, WS, WSB), BAD, "is smaller than the required 1152 bytes");
  CHECK_FAILS(DECODE(F32, (char *)Q + 2, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "q (address");
  CHECK_FAILS(DECODE(BF16, Q, KN, VN, KC, VC, LEN, (char *)O + 1, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "out (address");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, (const int32_t *)((char *)LEN + 2), O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "lengths (address");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, Q + 8, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "out and q overlap");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, KC + 8, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "k_cache and v_cache overlap");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KN, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "k_cache and k_new overlap");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, (const int32_t *)(VC + 4), O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, WS, WSB), BAD, "v_cache and lengths overlap");
  CHECK_FAILS(DECODE(F32, Q, KN, VN, KC, VC, LEN, O, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, O + 16, WSB), BAD, "out and workspace overlap");
  /* empty calls: no launch, no device needed, NULL buffers allowed */
  CHECK_STATUS(DECODE(F32, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 2, 4, 4, 2, 4, 0, 0.5f, 2, nullptr, 0), MOE4J_OK);
  CHECK(moe4j_cuda_last_error()[0] == '\0');
  CHECK_STATUS(DECODE(BF16, nullptr, nullptr, nullptr, KC, VC, LEN, nullptr, 2, 0, 4, 4, 2, 4, 8, 0.5f, 3, nullptr, 0), MOE4J_OK);
}

TEST_MAIN("test_cuda_decode_arguments")
