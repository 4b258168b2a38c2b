/*
 * Bad-argument tests for the router balancing functions of libmoe4j_cuda (moe4j.h "Expert Choice
 * routing and balancing": router_balance_loss, router_z_loss, router_bias_update). Argument
 * validation runs before any CUDA call, so these run on every machine (label cpu): no GPU, no
 * driver needed. Each call must fail with the expected status and a message naming the function
 * and the argument. The pointers below are never dereferenced (validation rejects the call first).
 */
#include <math.h>

#define CHECK_LAST_ERROR moe4j_cuda_last_error
#include "check.h"
#include "moe4j.h"

static float g_buf[256];
static float *const F = g_buf;                      /* float buffers, 16-byte aligned */
static int32_t *const I = (int32_t *)(g_buf + 128); /* int buffers, disjoint from F's range */
static int64_t g_i64[64];
static int64_t *const L = g_i64;
static const int32_t BAD = MOE4J_ERR_INVALID_ARGUMENT;

TEST_CASE(balance_loss_function) {
  /* scores F [2, 4], ids I [2, 2], out F + 64, d_scores F + 96 */
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, -1, 4, 2, 0.01f, F + 64, F + 96, nullptr), BAD, "moe4j_cuda_router_balance_loss: tokens must be >= 0");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 0, 1, 0.01f, F + 64, F + 96, nullptr), BAD, "experts must be in [1, 65536]");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 65537, 1, 0.01f, F + 64, F + 96, nullptr), BAD, "experts must be in [1, 65536], got 65537");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 4, 0, 0.01f, F + 64, F + 96, nullptr), BAD, "k must be in [1, experts = 4], got 0");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 4, 5, 0.01f, F + 64, F + 96, nullptr), BAD, "got 5");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 4, 2, -1.0f, F + 64, F + 96, nullptr), BAD, "coef must be finite and >= 0");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 4, 2, NAN, F + 64, F + 96, nullptr), BAD, "coef must be finite");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 4, 2, INFINITY, F + 64, F + 96, nullptr), BAD, "coef must be finite");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(nullptr, I, 2, 4, 2, 0.01f, F + 64, F + 96, nullptr), BAD, "scores is NULL");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, nullptr, 2, 4, 2, 0.01f, F + 64, F + 96, nullptr), BAD, "expert_ids is NULL");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 4, 2, 0.01f, nullptr, F + 96, nullptr), BAD, "out is NULL");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 4, 2, 0.01f, F + 3, F + 96, nullptr), BAD, "out and scores overlap");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 4, 2, 0.01f, F + 97, F + 96, nullptr), BAD, "out and d_scores overlap");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 4, 2, 0.01f, F + 64, F + 4, nullptr), BAD, "d_scores and scores overlap");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 4, 2, 0.01f, F + 64, (float *)I + 2, nullptr), BAD, "d_scores and expert_ids overlap");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, 2, 4, 2, 0.01f, (float *)((char *)F + 66), F + 96, nullptr), BAD, "out (address");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(F, I, INT64_MAX / 2, 4, 2, 0.01f, F + 64, F + 96, nullptr), BAD, "overflows");
  CHECK_FAILS(moe4j_cuda_router_balance_loss(nullptr, nullptr, 0, 4, 2, 0.01f, nullptr, nullptr, nullptr), BAD, "out is NULL");
}

TEST_CASE(z_loss_function) {
  CHECK_FAILS(moe4j_cuda_router_z_loss(F, -1, 4, 0.001f, F + 64, F + 96, nullptr), BAD, "moe4j_cuda_router_z_loss: tokens must be >= 0");
  CHECK_FAILS(moe4j_cuda_router_z_loss(F, 2, 0, 0.001f, F + 64, F + 96, nullptr), BAD, "experts must be in [1, 65536]");
  CHECK_FAILS(moe4j_cuda_router_z_loss(F, 2, 70000, 0.001f, F + 64, F + 96, nullptr), BAD, "got 70000");
  CHECK_FAILS(moe4j_cuda_router_z_loss(F, 2, 4, -0.5f, F + 64, F + 96, nullptr), BAD, "coef must be finite and >= 0, got -0.5");
  CHECK_FAILS(moe4j_cuda_router_z_loss(F, 2, 4, NAN, F + 64, F + 96, nullptr), BAD, "coef must be finite");
  CHECK_FAILS(moe4j_cuda_router_z_loss(nullptr, 2, 4, 0.001f, F + 64, F + 96, nullptr), BAD, "logits is NULL");
  CHECK_FAILS(moe4j_cuda_router_z_loss(F, 2, 4, 0.001f, nullptr, F + 96, nullptr), BAD, "out is NULL");
  CHECK_FAILS(moe4j_cuda_router_z_loss(F, 2, 4, 0.001f, F + 7, F + 96, nullptr), BAD, "out and logits overlap");
  CHECK_FAILS(moe4j_cuda_router_z_loss(F, 2, 4, 0.001f, F + 100, F + 96, nullptr), BAD, "out and d_logits overlap");
  CHECK_FAILS(moe4j_cuda_router_z_loss(F, 2, 4, 0.001f, F + 64, F + 4, nullptr), BAD, "d_logits and logits overlap");
  CHECK_FAILS(moe4j_cuda_router_z_loss(F, 2, 4, 0.001f, F + 64, (float *)((char *)F + 386), nullptr), BAD, "d_logits (address");
  CHECK_FAILS(moe4j_cuda_router_z_loss(F, INT64_MAX / 2, 4, 0.001f, F + 64, F + 96, nullptr), BAD, "overflows");
}

TEST_CASE(bias_update_function) {
  CHECK_FAILS(moe4j_cuda_router_bias_update(F, L, 0, 0.001f, nullptr), BAD, "moe4j_cuda_router_bias_update: experts must be in [1, 65536]");
  CHECK_FAILS(moe4j_cuda_router_bias_update(F, L, 65537, 0.001f, nullptr), BAD, "experts must be in");
  CHECK_FAILS(moe4j_cuda_router_bias_update(F, L, 4, -0.001f, nullptr), BAD, "rate must be finite and >= 0");
  CHECK_FAILS(moe4j_cuda_router_bias_update(F, L, 4, INFINITY, nullptr), BAD, "rate must be finite");
  CHECK_FAILS(moe4j_cuda_router_bias_update(nullptr, L, 4, 0.001f, nullptr), BAD, "bias is NULL");
  CHECK_FAILS(moe4j_cuda_router_bias_update(F, nullptr, 4, 0.001f, nullptr), BAD, "counts is NULL");
  CHECK_FAILS(moe4j_cuda_router_bias_update(F, (int64_t *)(F + 2), 4, 0.001f, nullptr), BAD, "bias and counts overlap");
  CHECK_FAILS(moe4j_cuda_router_bias_update(F, (int64_t *)((char *)L + 4), 4, 0.001f, nullptr), BAD, "counts (address");
}

TEST_MAIN("test_cuda_router_loss_arguments")
