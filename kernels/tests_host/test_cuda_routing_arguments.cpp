/*
 * Bad-argument tests for the routing functions of libmoe4j_cuda (moe4j.h "Routing (token
 * choice)"). Argument validation runs before any CUDA call, so these run on every machine (label
 * cpu): no GPU, no driver needed. Each call must fail with the expected status and a message
 * naming the function and the argument; none may crash. The pointers below are never dereferenced
 * (validation rejects the call first); valid empty calls return MOE4J_OK without touching the
 * device.
 */
#define CHECK_LAST_ERROR moe4j_cuda_last_error
#include "check.h"
#include "moe4j.h"

static float g_buf[256];
static float *const F = g_buf;                      /* float buffers, 16-byte aligned */
static int32_t *const I = (int32_t *)(g_buf + 128); /* int buffers, disjoint from F's range */
static int64_t g_i64[64];
static int64_t *const L = g_i64;
static const int32_t F32 = MOE4J_DTYPE_F32, BF16 = MOE4J_DTYPE_BF16, I32 = MOE4J_DTYPE_I32;
static const int32_t BAD = MOE4J_ERR_INVALID_ARGUMENT, UNSUP = MOE4J_ERR_UNSUPPORTED;

TEST_CASE(router_scores_functions) {
  CHECK_FAILS(moe4j_cuda_router_scores(F, F + 32, -1, 4, 0, nullptr), BAD, "moe4j_cuda_router_scores: tokens must be >= 0");
  CHECK_FAILS(moe4j_cuda_router_scores(F, F + 32, 2, 0, 0, nullptr), BAD, "experts must be in [1, 65536]");
  CHECK_FAILS(moe4j_cuda_router_scores(F, F + 32, 2, 65537, 0, nullptr), BAD, "experts must be in [1, 65536]");
  CHECK_FAILS(moe4j_cuda_router_scores(F, F + 32, 2, 4, 2, nullptr), BAD, "score_fn must be 0 (softmax) or 1 (sigmoid)");
  CHECK_FAILS(moe4j_cuda_router_scores(nullptr, F + 32, 2, 4, 0, nullptr), BAD, "logits is NULL");
  CHECK_FAILS(moe4j_cuda_router_scores(F, nullptr, 2, 4, 1, nullptr), BAD, "scores is NULL");
  CHECK_FAILS(moe4j_cuda_router_scores(F, F + 4, 2, 4, 0, nullptr), BAD, "overlap");
  CHECK_FAILS(moe4j_cuda_router_scores(F, F + 32, INT64_MAX / 2, 4, 0, nullptr), BAD, "overflows");
  CHECK_STATUS(moe4j_cuda_router_scores(nullptr, nullptr, 0, 4, 0, nullptr), MOE4J_OK);

  CHECK_FAILS(moe4j_cuda_router_scores_backward(F, F + 32, F + 64, 2, 4, 3, nullptr), BAD, "moe4j_cuda_router_scores_backward: score_fn");
  CHECK_FAILS(moe4j_cuda_router_scores_backward(nullptr, F + 32, F + 64, 2, 4, 0, nullptr), BAD, "scores is NULL");
  CHECK_FAILS(moe4j_cuda_router_scores_backward(F, nullptr, F + 64, 2, 4, 0, nullptr), BAD, "d_scores is NULL");
  CHECK_FAILS(moe4j_cuda_router_scores_backward(F, F + 32, nullptr, 2, 4, 0, nullptr), BAD, "d_logits is NULL");
  CHECK_FAILS(moe4j_cuda_router_scores_backward(F, F + 32, F + 2, 2, 4, 0, nullptr), BAD, "d_logits and scores overlap");
  CHECK_FAILS(moe4j_cuda_router_scores_backward(F, F + 32, F + 33, 2, 4, 0, nullptr), BAD, "d_logits and d_scores overlap");
  CHECK_FAILS(moe4j_cuda_router_scores_backward(F, F + 32, F + 64, -2, 4, 0, nullptr), BAD, "tokens must be >= 0");
}

TEST_CASE(route_topk_functions) {
  CHECK_FAILS(moe4j_cuda_route_topk(F, nullptr, 2, 4, 0, 1, I, F + 64, nullptr), BAD, "moe4j_cuda_route_topk: k must be in [1, experts = 4]");
  CHECK_FAILS(moe4j_cuda_route_topk(F, nullptr, 2, 4, 5, 1, I, F + 64, nullptr), BAD, "k must be in [1, experts = 4]");
  CHECK_FAILS(moe4j_cuda_route_topk(F, nullptr, 2, 0, 1, 1, I, F + 64, nullptr), BAD, "experts must be in");
  CHECK_FAILS(moe4j_cuda_route_topk(nullptr, nullptr, 2, 4, 2, 1, I, F + 64, nullptr), BAD, "scores is NULL");
  CHECK_FAILS(moe4j_cuda_route_topk(F, nullptr, 2, 4, 2, 1, nullptr, F + 64, nullptr), BAD, "expert_ids is NULL");
  CHECK_FAILS(moe4j_cuda_route_topk(F, nullptr, 2, 4, 2, 1, I, nullptr, nullptr), BAD, "weights is NULL");
  CHECK_FAILS(moe4j_cuda_route_topk(F, F + 62, 2, 4, 2, 1, I, F + 64, nullptr), BAD, "weights and bias overlap");
  CHECK_FAILS(moe4j_cuda_route_topk(F, nullptr, 2, 4, 2, 1, I, F + 4, nullptr), BAD, "weights and scores overlap");
  CHECK_FAILS(moe4j_cuda_route_topk(F, nullptr, (int64_t)1 << 30, 4, 4, 1, I, F + 64, nullptr), BAD, "slots are I32");
  CHECK_STATUS(moe4j_cuda_route_topk(nullptr, nullptr, 0, 4, 2, 1, nullptr, nullptr, nullptr), MOE4J_OK);

  CHECK_FAILS(moe4j_cuda_route_topk_backward(F, I, F + 64, F + 96, 2, 4, 9, 1, nullptr), BAD, "moe4j_cuda_route_topk_backward: k must be in");
  CHECK_FAILS(moe4j_cuda_route_topk_backward(F, nullptr, F + 64, F + 96, 2, 4, 2, 1, nullptr), BAD, "expert_ids is NULL");
  CHECK_FAILS(moe4j_cuda_route_topk_backward(F, I, nullptr, F + 96, 2, 4, 2, 1, nullptr), BAD, "d_weights is NULL");
  CHECK_FAILS(moe4j_cuda_route_topk_backward(F, I, F + 64, nullptr, 2, 4, 2, 1, nullptr), BAD, "d_scores is NULL");
  CHECK_FAILS(moe4j_cuda_route_topk_backward(F, I, F + 64, F + 4, 2, 4, 2, 1, nullptr), BAD, "d_scores and scores overlap");
  CHECK_FAILS(moe4j_cuda_route_topk_backward(F, I, F + 64, F + 62, 2, 4, 2, 1, nullptr), BAD, "d_scores and d_weights overlap");
}

TEST_CASE(route_plan_function) {
  CHECK_FAILS(moe4j_cuda_route_plan(I, F, -1, 4, 2, 0, L, I + 16, I + 32, nullptr, nullptr), BAD, "moe4j_cuda_route_plan: tokens must be >= 0");
  CHECK_FAILS(moe4j_cuda_route_plan(I, F, 2, 4, 5, 0, L, I + 16, I + 32, nullptr, nullptr), BAD, "k must be in [1, experts = 4]");
  CHECK_FAILS(moe4j_cuda_route_plan(nullptr, F, 2, 4, 2, 0, L, I + 16, I + 32, nullptr, nullptr), BAD, "expert_ids is NULL");
  CHECK_FAILS(moe4j_cuda_route_plan(I, nullptr, 2, 4, 2, 0, L, I + 16, I + 32, nullptr, nullptr), BAD, "weights is NULL");
  CHECK_FAILS(moe4j_cuda_route_plan(I, F, 2, 4, 2, 0, nullptr, I + 16, I + 32, nullptr, nullptr), BAD, "offsets is NULL");
  CHECK_FAILS(moe4j_cuda_route_plan(I, F, 2, 4, 2, 0, L, nullptr, I + 32, nullptr, nullptr), BAD, "sorted_token is NULL");
  CHECK_FAILS(moe4j_cuda_route_plan(I, F, 2, 4, 2, 0, L, I + 16, nullptr, nullptr, nullptr), BAD, "slot_of is NULL");
  CHECK_FAILS(moe4j_cuda_route_plan(I, F, 2, 4, 2, 0, L, I + 16, I + 18, nullptr, nullptr), BAD, "sorted_token and slot_of overlap");
  CHECK_FAILS(moe4j_cuda_route_plan(I, F, 2, 4, 2, 0, L, I + 16, I + 32, L + 2, nullptr), BAD, "offsets and counts overlap");
  CHECK_FAILS(moe4j_cuda_route_plan(I, F, 2, 4, 2, 0, L, I + 2, I + 32, nullptr, nullptr), BAD, "sorted_token and expert_ids overlap");
  CHECK_FAILS(moe4j_cuda_route_plan(I, F, 2, 4, 2, 0, (int64_t *)((char *)L + 4), I + 16, I + 32, nullptr, nullptr), BAD, "offsets");
}

TEST_CASE(gather_and_combine_functions) {
  CHECK_FAILS(moe4j_cuda_route_gather(I32, F, I, F + 64, 2, 2, 4, nullptr), UNSUP, "moe4j_cuda_route_gather: dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cuda_route_gather(F32, F, I, F + 64, -1, 2, 4, nullptr), BAD, "num_rows must be >= 0");
  CHECK_FAILS(moe4j_cuda_route_gather(F32, F, I, F + 64, 2, 2, -4, nullptr), BAD, "hidden must be >= 0");
  CHECK_FAILS(moe4j_cuda_route_gather(F32, nullptr, I, F + 64, 2, 2, 4, nullptr), BAD, "x is NULL");
  CHECK_FAILS(moe4j_cuda_route_gather(F32, F, nullptr, F + 64, 2, 2, 4, nullptr), BAD, "sorted_token is NULL");
  CHECK_FAILS(moe4j_cuda_route_gather(F32, F, I, nullptr, 2, 2, 4, nullptr), BAD, "rows is NULL");
  CHECK_FAILS(moe4j_cuda_route_gather(F32, F, I, F + 4, 2, 2, 4, nullptr), BAD, "rows and x overlap");
  CHECK_FAILS(moe4j_cuda_route_gather(BF16, F, I, (char *)(F + 64) + 1, 2, 2, 4, nullptr), BAD, "rows");
  CHECK_STATUS(moe4j_cuda_route_gather(F32, nullptr, nullptr, nullptr, 0, 0, 4, nullptr), MOE4J_OK);

  CHECK_FAILS(moe4j_cuda_route_gather_backward(I32, F, I, F + 64, 2, 2, 4, 4, 0, nullptr), UNSUP, "moe4j_cuda_route_gather_backward: dtype");
  CHECK_FAILS(moe4j_cuda_route_gather_backward(F32, F, I, F + 64, 2, 0, 4, 4, 0, nullptr), BAD, "k must be in [1, 65536]");
  CHECK_FAILS(moe4j_cuda_route_gather_backward(F32, nullptr, I, F + 64, 2, 2, 4, 4, 0, nullptr), BAD, "d_rows is NULL");
  CHECK_FAILS(moe4j_cuda_route_gather_backward(F32, F, nullptr, F + 64, 2, 2, 4, 4, 0, nullptr), BAD, "slot_of is NULL");
  CHECK_FAILS(moe4j_cuda_route_gather_backward(F32, F, I, nullptr, 2, 2, 4, 4, 0, nullptr), BAD, "dx is NULL");
  CHECK_FAILS(moe4j_cuda_route_gather_backward(F32, F, I, F + 8, 2, 2, 4, 4, 0, nullptr), BAD, "dx and d_rows overlap");
  CHECK_FAILS(moe4j_cuda_route_gather_backward(F32, F, I, F + 64, (int64_t)1 << 30, 4, 0, 0, 0, nullptr), BAD, "slots are I32");

  CHECK_FAILS(moe4j_cuda_route_combine(I32, F, I, nullptr, F + 64, 2, 2, 4, 4, nullptr), UNSUP, "moe4j_cuda_route_combine: dtype");
  CHECK_FAILS(moe4j_cuda_route_combine(F32, F, I, nullptr, F + 64, -2, 2, 4, 4, nullptr), BAD, "tokens must be >= 0");
  CHECK_FAILS(moe4j_cuda_route_combine(F32, nullptr, I, nullptr, F + 64, 2, 2, 4, 4, nullptr), BAD, "rows is NULL");
  CHECK_FAILS(moe4j_cuda_route_combine(F32, F, nullptr, nullptr, F + 64, 2, 2, 4, 4, nullptr), BAD, "slot_of is NULL");
  CHECK_FAILS(moe4j_cuda_route_combine(F32, F, I, nullptr, nullptr, 2, 2, 4, 4, nullptr), BAD, "y is NULL");
  CHECK_FAILS(moe4j_cuda_route_combine(F32, F, I, F + 96, F + 94, 2, 2, 4, 4, nullptr), BAD, "y and weights overlap");
  CHECK_FAILS(moe4j_cuda_route_combine(F32, F, I, nullptr, F + 8, 2, 2, 4, 4, nullptr), BAD, "y and rows overlap");

  CHECK_FAILS(moe4j_cuda_route_combine_backward(I32, F, F + 16, I, nullptr, F + 64, nullptr, 2, 2, 4, 4, nullptr), UNSUP, "moe4j_cuda_route_combine_backward: dtype");
  CHECK_FAILS(moe4j_cuda_route_combine_backward(F32, nullptr, F + 16, I, nullptr, F + 64, nullptr, 2, 2, 4, 4, nullptr), BAD, "dy is NULL");
  CHECK_FAILS(moe4j_cuda_route_combine_backward(F32, F, nullptr, I, nullptr, F + 64, nullptr, 2, 2, 4, 4, nullptr), BAD, "rows is NULL");
  CHECK_FAILS(moe4j_cuda_route_combine_backward(F32, F, F + 16, nullptr, nullptr, F + 64, nullptr, 2, 2, 4, 4, nullptr), BAD, "slot_of is NULL");
  CHECK_FAILS(moe4j_cuda_route_combine_backward(F32, F, F + 16, I, nullptr, nullptr, nullptr, 2, 2, 4, 4, nullptr), BAD, "d_rows is NULL");
  CHECK_FAILS(moe4j_cuda_route_combine_backward(F32, F, F + 16, I, nullptr, F + 20, nullptr, 2, 2, 4, 4, nullptr), BAD, "d_rows and rows overlap");
  CHECK_FAILS(moe4j_cuda_route_combine_backward(F32, F, F + 16, I, nullptr, F + 64, F + 66, 2, 2, 4, 4, nullptr), BAD, "d_rows and d_weights overlap");
  CHECK_FAILS(moe4j_cuda_route_combine_backward(F32, F, F + 16, I, nullptr, F + 64, F + 2, 2, 2, 4, 4, nullptr), BAD, "d_weights and dy overlap");
  CHECK_FAILS(moe4j_cuda_route_combine_backward(F32, F, F + 16, I, nullptr, F + 64, nullptr, 2, 2, -4, 4, nullptr), BAD, "num_rows must be >= 0");
}

TEST_MAIN("cuda_routing_arguments")
