/*
 * Bad-argument tests for every libmoe4j_cuda function. Argument validation runs before any CUDA
 * call, so these run on every machine (label cpu): no GPU, no driver needed. Each call must fail
 * with the expected status and a message naming the function and the argument; none may crash.
 * The pointers below are never dereferenced (validation rejects the call first).
 */
#define CHECK_LAST_ERROR moe4j_cuda_last_error
#include "check.h"
#include "moe4j.h"

static float g_buf[64];
static void *const P = g_buf; /* a valid-looking, aligned address */
static const int32_t F32 = MOE4J_DTYPE_F32, I32 = MOE4J_DTYPE_I32;
static const int32_t BAD = MOE4J_ERR_INVALID_ARGUMENT, UNSUP = MOE4J_ERR_UNSUPPORTED;

TEST_CASE(runtime_functions) {
  CHECK_FAILS(moe4j_cuda_device_count(nullptr), BAD, "moe4j_cuda_device_count: out_count is NULL");
  int32_t d = 0;
  CHECK_FAILS(moe4j_cuda_versions(&d, nullptr), BAD, "out_runtime is NULL");
  CHECK(moe4j_cuda_build_info()[0] != '\0');
  CHECK(moe4j_cuda_use_reference_kernels(0) == MOE4J_OK);
}

TEST_CASE(elementwise_functions) {
  CHECK_FAILS(moe4j_cuda_add(I32, P, P, P, 4, nullptr), UNSUP, "moe4j_cuda_add: dtype must be F32 or BF16, got I32");
  CHECK_FAILS(moe4j_cuda_add(F32, P, P, nullptr, 4, nullptr), BAD, "out is NULL");
  CHECK_FAILS(moe4j_cuda_scale(F32, P, P, -1, 1.0f, nullptr), BAD, "n must be >= 0");
  CHECK_FAILS(moe4j_cuda_copy(g_buf, g_buf + 1, 8, nullptr), BAD, "overlap");
  CHECK_FAILS(moe4j_cuda_cast(F32, P, I32, P, 4, nullptr), UNSUP, "dst_dtype");
}

TEST_CASE(norm_activation_embedding_loss_functions) {
  float *f = g_buf;
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F32, P, P, g_buf + 32, f, 2, 4, 0.0f, nullptr), BAD, "eps");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F32, P, P, P, nullptr, g_buf + 32, f, 2, 4, 0, nullptr), BAD, "rstd is NULL");
  CHECK_FAILS(moe4j_cuda_swiglu_forward(F32, P, P, P, 2, 4, 3, nullptr), BAD, "in_stride must be >= 4");
  CHECK_FAILS(moe4j_cuda_swiglu_backward(I32, P, P, P, P, P, 2, 4, 4, nullptr), UNSUP, "dtype");
  CHECK_FAILS(moe4j_cuda_embedding_forward(F32, P, nullptr, P, 3, 10, 4, nullptr), BAD, "ids is NULL");
  CHECK_FAILS(moe4j_cuda_embedding_backward(F32, P, (const int32_t *)P, f, -3, 10, 4, 0, nullptr), BAD, "num_ids must be >= 0");
  CHECK_FAILS(moe4j_cuda_cross_entropy_forward(F32, P, (const int32_t *)P, f, f, 2, 0, -100, nullptr), BAD, "vocab must be > 0");
  CHECK_FAILS(moe4j_cuda_cross_entropy_backward(F32, P, (const int32_t *)P, f, P, 2, 8, -100, NAN, nullptr), BAD, "grad_scale");
}

TEST_CASE(optimizer_functions) {
  float *f = g_buf;
  CHECK_FAILS(moe4j_cuda_adamw_step(f, F32, f + 8, f + 16, f + 24, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, nullptr, nullptr),
              BAD, "step must be >= 1");
  CHECK_FAILS(moe4j_cuda_adamw_step(f, F32, f + 8, f + 16, f + 16, F32, nullptr, 8, 1e-3f, 1.0f, 0.999f, 1e-8f, 0.0f, 1, nullptr, nullptr),
              BAD, "beta1");
  CHECK_FAILS(moe4j_cuda_sum_squares(F32, P, 4, nullptr, nullptr), BAD, "out is NULL");
  CHECK_FAILS(moe4j_cuda_clip_coefficient(f, 4, -1.0f, f + 8, nullptr), BAD, "max_norm");
}

TEST_CASE(gemm_functions) {
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(I32, P, P, F32, P, nullptr, 1, 2, 2, 2, nullptr, 0, nullptr), UNSUP, "in_dtype");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F32, P, P, F32, P, nullptr, 2, 2, 2, 2, nullptr, 0, nullptr), BAD, "offsets");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_dgrad(F32, P, P, F32, P, nullptr, 1, -2, 2, 2, 0, nullptr), BAD, "total_rows");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_wgrad(F32, P, nullptr, F32, P, nullptr, 1, 2, 2, 2, 0, nullptr), BAD, "x is NULL");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_swiglu_forward(F32, P, P, F32, P, nullptr, nullptr, 0, 2, 2, 2, nullptr), BAD, "num_groups");
  CHECK_FAILS(moe4j_cuda_cublas_gemm(I32, P, P, F32, P, 2, 2, 2, nullptr), UNSUP, "moe4j_cuda_cublas_gemm: in_dtype");
}

TEST_MAIN("cuda_arguments")
