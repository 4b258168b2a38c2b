/*
 * Bad-argument tests for the RoPE functions of libmoe4j_cuda (moe4j.h "Attention (first slice)":
 * rope_forward, rope_backward). Argument validation runs before any CUDA call, so these run on
 * every machine (label cpu): no GPU, no driver needed. Each call must fail with the expected status
 * and a message naming the function and the argument. The pointers below are never dereferenced
 * (validation rejects the call first); empty calls return before any launch.
 */
#include <math.h>

#define CHECK_LAST_ERROR moe4j_cuda_last_error
#include "check.h"
#include "moe4j.h"

static float g_buf[256];
static float *const F = g_buf;                      /* x [2, 2, 4] = 16 floats */
static int32_t *const P = (int32_t *)(g_buf + 128); /* positions, disjoint from F's first half */
static const int32_t F32 = MOE4J_DTYPE_F32, BF16 = MOE4J_DTYPE_BF16;
static const int32_t BAD = MOE4J_ERR_INVALID_ARGUMENT, UNSUP = MOE4J_ERR_UNSUPPORTED;

TEST_CASE(rope_forward_function) {
  CHECK_FAILS(moe4j_cuda_rope_forward(MOE4J_DTYPE_I64, F, F + 32, P, 2, 2, 4, 1e4f, nullptr), UNSUP, "moe4j_cuda_rope_forward: dtype must be F32 or BF16, got I64");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, P, -1, 2, 4, 1e4f, nullptr), BAD, "moe4j_cuda_rope_forward: tokens must be >= 0, got -1");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, P, 2, 0, 4, 1e4f, nullptr), BAD, "heads must be >= 1 (0 only when tokens is 0), got 0");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, P, 2, 2, 7, 1e4f, nullptr), BAD, "head_dim must be even and in [2, 1024], got 7");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, P, 2, 2, 0, 1e4f, nullptr), BAD, "head_dim must be even");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, P, 2, 2, 1030, 1e4f, nullptr), BAD, "got 1030");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, P, 2, 2, 4, 1.0f, nullptr), BAD, "theta must be finite and > 1, got 1");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, P, 2, 2, 4, NAN, nullptr), BAD, "theta must be finite");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, P, 2, 2, 4, INFINITY, nullptr), BAD, "theta must be finite");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, P, INT64_MAX / 4, 8, 4, 1e4f, nullptr), BAD, "tokens * heads = ");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, P, INT64_MAX / 1024, 64, 1024, 1e4f, nullptr), BAD, "tokens * heads * head_dim");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, nullptr, F + 32, P, 2, 2, 4, 1e4f, nullptr), BAD, "x is NULL");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, nullptr, P, 2, 2, 4, 1e4f, nullptr), BAD, "out is NULL");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, nullptr, 2, 2, 4, 1e4f, nullptr), BAD, "positions is NULL");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, (char *)F + 2, F + 32, P, 2, 2, 4, 1e4f, nullptr), BAD, "x (address");
  CHECK_FAILS(moe4j_cuda_rope_forward(BF16, F, (char *)(F + 32) + 1, P, 2, 2, 4, 1e4f, nullptr), BAD, "out (address");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 32, (const int32_t *)((char *)P + 1), 2, 2, 4, 1e4f, nullptr), BAD, "positions (address");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F, F + 3, P, 2, 2, 4, 1e4f, nullptr), BAD, "x and out overlap");
  CHECK_FAILS(moe4j_cuda_rope_forward(F32, F + 32, (float *)P - 4, P, 2, 2, 4, 1e4f, nullptr), BAD, "out and positions overlap");
  CHECK_STATUS(moe4j_cuda_rope_forward(F32, nullptr, nullptr, nullptr, 0, 0, 4, 1e4f, nullptr), MOE4J_OK);
  CHECK(moe4j_cuda_last_error()[0] == '\0');
  CHECK_STATUS(moe4j_cuda_rope_forward(BF16, nullptr, nullptr, nullptr, 0, 4, 64, 1e4f, nullptr), MOE4J_OK);
}

TEST_CASE(rope_backward_function) {
  CHECK_FAILS(moe4j_cuda_rope_backward(MOE4J_DTYPE_F16, F, F + 32, P, 2, 2, 4, 1e4f, nullptr), UNSUP, "moe4j_cuda_rope_backward: dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cuda_rope_backward(F32, F, F + 32, P, -2, 2, 4, 1e4f, nullptr), BAD, "moe4j_cuda_rope_backward: tokens must be >= 0");
  CHECK_FAILS(moe4j_cuda_rope_backward(F32, F, F + 32, P, 2, -1, 4, 1e4f, nullptr), BAD, "heads must be >= 1");
  CHECK_FAILS(moe4j_cuda_rope_backward(F32, F, F + 32, P, 2, 2, 9, 1e4f, nullptr), BAD, "head_dim must be even");
  CHECK_FAILS(moe4j_cuda_rope_backward(F32, F, F + 32, P, 2, 2, 4, 0.0f, nullptr), BAD, "theta must be finite and > 1");
  CHECK_FAILS(moe4j_cuda_rope_backward(F32, F, F + 32, P, INT64_MAX / 2, 4, 4, 1e4f, nullptr), BAD, "overflows");
  CHECK_FAILS(moe4j_cuda_rope_backward(F32, nullptr, F + 32, P, 2, 2, 4, 1e4f, nullptr), BAD, "dout is NULL");
  CHECK_FAILS(moe4j_cuda_rope_backward(F32, F, nullptr, P, 2, 2, 4, 1e4f, nullptr), BAD, "dx is NULL");
  CHECK_FAILS(moe4j_cuda_rope_backward(F32, F, F + 32, nullptr, 2, 2, 4, 1e4f, nullptr), BAD, "positions is NULL");
  CHECK_FAILS(moe4j_cuda_rope_backward(F32, F, (char *)(F + 32) + 2, P, 2, 2, 4, 1e4f, nullptr), BAD, "dx (address");
  CHECK_FAILS(moe4j_cuda_rope_backward(F32, F + 8, F, P, 2, 2, 4, 1e4f, nullptr), BAD, "dout and dx overlap");
  CHECK_FAILS(moe4j_cuda_rope_backward(F32, F + 32, (float *)P - 2, P, 2, 2, 4, 1e4f, nullptr), BAD, "dx and positions overlap");
  CHECK_STATUS(moe4j_cuda_rope_backward(F32, nullptr, nullptr, nullptr, 0, 0, 2, 1e4f, nullptr), MOE4J_OK);
}

TEST_MAIN("test_cuda_rope_arguments")
