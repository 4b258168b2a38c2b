/*
 * Bad-argument tests for moe4j_cuda_route_expert_choice (moe4j.h "Expert Choice routing and
 * balancing"). Argument validation runs before any CUDA call, so these run on every machine (label
 * cpu): no GPU, no driver needed. Each call must fail with the expected status and a message
 * naming the function and the argument; none may crash. The pointers below are never dereferenced
 * (validation rejects the call first).
 */
#define CHECK_LAST_ERROR moe4j_cuda_last_error
#include "check.h"
#include "moe4j.h"

static float g_buf[256];
static float *const F = g_buf;                      /* scores, weights: 16-byte aligned */
static int32_t *const I = (int32_t *)(g_buf + 128); /* int buffers, disjoint from F's range */
static int64_t g_i64[64];
static int64_t *const L = g_i64;
static const int32_t BAD = MOE4J_ERR_INVALID_ARGUMENT;

/* T = 8 tokens, E = 4 experts, groups of 4, capacity 2: scores F[0, 32), weights F[64, 96),
 * slot_of I[0, 32), sorted_token I[64, 80), offsets L[0, 5), uncovered L[8]. */
static int32_t ec(const float *s, int64_t t, int64_t e, int64_t g, int64_t c, int64_t *off,
                  int32_t *sorted, int32_t *slot, float *w, int64_t *unc) {
  return moe4j_cuda_route_expert_choice(s, t, e, g, c, off, sorted, slot, w, unc, nullptr);
}

TEST_CASE(sizes) {
  CHECK_FAILS(ec(F, -1, 4, 4, 2, L, I + 64, I, F + 64, L + 8), BAD, "moe4j_cuda_route_expert_choice: tokens must be >= 0");
  CHECK_FAILS(ec(F, 8, 0, 4, 2, L, I + 64, I, F + 64, L + 8), BAD, "experts must be in [1, 65536], got 0");
  CHECK_FAILS(ec(F, 8, 65537, 4, 2, L, I + 64, I, F + 64, L + 8), BAD, "experts must be in [1, 65536]");
  CHECK_FAILS(ec(F, 8, 4, 0, 0, L, I + 64, I, F + 64, L + 8), BAD, "group_size must be >= 1, got 0");
  CHECK_FAILS(ec(F, 8, 4, 3, 1, L, I + 64, I, F + 64, L + 8), BAD, "tokens = 8 must be a multiple of group_size = 3");
  CHECK_FAILS(ec(F, 8, 4, 4, 5, L, I + 64, I, F + 64, L + 8), BAD, "capacity must be in [0, group_size = 4], got 5");
  CHECK_FAILS(ec(F, 8, 4, 4, -1, L, I + 64, I, F + 64, L + 8), BAD, "capacity must be in [0, group_size = 4], got -1");
  CHECK_FAILS(ec(F, INT64_MAX / 2, 4, 1, 1, L, I + 64, I, F + 64, L + 8), BAD, "overflows");
  CHECK_FAILS(ec(F, (int64_t)1 << 30, 4, 1, 1, L, I + 64, I, F + 64, L + 8), BAD, "slots are I32");
}

TEST_CASE(buffers) {
  CHECK_FAILS(ec(nullptr, 8, 4, 4, 2, L, I + 64, I, F + 64, L + 8), BAD, "moe4j_cuda_route_expert_choice: scores is NULL");
  CHECK_FAILS(ec(F, 8, 4, 4, 2, nullptr, I + 64, I, F + 64, L + 8), BAD, "offsets is NULL");
  CHECK_FAILS(ec(F, 8, 4, 4, 2, L, nullptr, I, F + 64, L + 8), BAD, "sorted_token is NULL");
  CHECK_FAILS(ec(F, 8, 4, 4, 2, L, I + 64, nullptr, F + 64, L + 8), BAD, "slot_of is NULL");
  CHECK_FAILS(ec(F, 8, 4, 4, 2, L, I + 64, I, nullptr, L + 8), BAD, "weights is NULL");
  CHECK_FAILS(ec(F, 8, 4, 4, 2, (int64_t *)((char *)L + 4), I + 64, I, F + 64, L + 8), BAD, "offsets (address");
  CHECK_FAILS(ec(F, 8, 4, 4, 2, L, I + 64, I, F + 64, (int64_t *)((char *)L + 68)), BAD, "uncovered (address");
  CHECK_FAILS(ec(F, 8, 4, 4, 2, L, I + 64, I, F + 4, L + 8), BAD, "weights and scores overlap");
  CHECK_FAILS(ec(F, 8, 4, 4, 2, L, I + 64, I + 60, F + 64, L + 8), BAD, "sorted_token and slot_of overlap");
  CHECK_FAILS(ec(F, 8, 4, 4, 2, L, I + 64, I, F + 64, L + 2), BAD, "offsets and uncovered overlap");
  CHECK_FAILS(ec(F, 8, 4, 4, 2, L, I + 64, (int32_t *)(F + 80), F + 64, L + 8), BAD, "slot_of and weights overlap");
}

TEST_CASE(zero_tokens_still_need_offsets) {
  /* the other buffers are empty and may be NULL; offsets [E + 1] never is */
  CHECK_FAILS(ec(nullptr, 0, 4, 4, 2, nullptr, nullptr, nullptr, nullptr, nullptr), BAD, "offsets is NULL but holds 5 elements");
}

TEST_MAIN("cuda_expert_choice_arguments")
