/* The routing CUDA kernels (kernels/routing_kernels.cuh and expert_choice_kernels.cuh, the very
 * code routing.cu and expert_choice.cu compile for the GPU) run on the CPU under the warp emulator
 * (warp_emulator.h), launched in the order and shapes the .cu entry points use, against the CPU
 * twins (native/src/cpu_routing.cpp, cpu_expert_choice.cpp) with the comparisons of the GPU tests
 * (kernels/tests/test_routing.cpp, test_expert_choice.cpp): bitwise for top-k and its backward,
 * the dispatch plan, gather, combine and their backwards, and Expert Choice; within the GPU
 * test's bounds for the warp-reduced softmax and its backward. What this checks without a GPU: the warp
 * butterflies, the plan's per-expert radix select and ballot prefixes (also with more experts
 * than scan threads and several 1024-assignment chunks), the 16/4/2-byte gather units and the
 * packet / element paths of the row kernels, Expert Choice's radix select (warp-scan digit pick),
 * ordered two-ballot placement over several rounds, its shared-memory and global-memory paths
 * and the uncovered count. Grids of grid-stride kernels are kept small
 * (1-3 blocks) so every block loops; the plan's place kernel has its E + 1 blocks as on the GPU.
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
#include "../../kernels/expert_choice_kernels.cuh"
#include "../../kernels/routing_kernels.cuh"
#include "../../kernels/tests/routing_inputs.h"

using namespace moe4j;
using namespace emulated_compare;
using namespace routing_inputs;

namespace {

void expect_same(bool ok, int line, const char *what, long long a, long long b, long long c) {
  if (ok) return;
  char msg[200];
  snprintf(msg, sizeof msg, "%s differs from the CPU twin at sizes %lld, %lld, %lld", what, a, b, c);
  check::report(__FILE__, line, msg);
}
#define EXPECT_SAME(cond, what, a, b, c) expect_same((cond), __LINE__, what, a, b, c)

std::vector<uint8_t> as_dtype(const std::vector<float> &v, int32_t dtype) {
  std::vector<uint8_t> out(v.size() * (dtype == BF16 ? 2 : 4));
  for (size_t i = 0; i < v.size(); i++) {
    if (dtype == BF16) {
      const uint16_t b = f32_to_bf16_bits(v[i]);
      memcpy(out.data() + 2 * i, &b, 2);
    } else {
      memcpy(out.data() + 4 * i, &v[i], 4);
    }
  }
  return out;
}

/* ---- routing.cu's launch sequences, emulated ---- */

/* moe4j_cuda_router_scores and its backward: reference (a thread per row), sigmoid (a thread per
 * element) or softmax (a warp per row); `grid` blocks of the grid-stride kernels. */
void emulated_scores(const float *logits, float *scores, int64_t tokens, int64_t E, int32_t fn, bool ref,
                     unsigned grid) {
  if (ref)
    emu::run_grid(dim3{(unsigned)((tokens + kRefThreads - 1) / kRefThreads), 1, 1}, kRefThreads,
                  [&] { router_scores_ref(logits, scores, tokens, E, fn); });
  else if (fn == kRouteScoreSigmoid)
    emu::run_grid(dim3{grid, 1, 1}, kScoresThreads, [&] { router_sigmoid_kernel(logits, scores, tokens * E); });
  else
    emu::run_grid(dim3{grid, 1, 1}, kScoresThreads, [&] { router_softmax_kernel(logits, scores, tokens, E); });
}

void emulated_scores_backward(const float *s, const float *ds, float *dx, int64_t tokens, int64_t E, int32_t fn,
                              bool ref, unsigned grid) {
  if (ref)
    emu::run_grid(dim3{(unsigned)((tokens + kRefThreads - 1) / kRefThreads), 1, 1}, kRefThreads,
                  [&] { router_scores_backward_ref(s, ds, dx, tokens, E, fn); });
  else if (fn == kRouteScoreSigmoid)
    emu::run_grid(dim3{grid, 1, 1}, kScoresThreads, [&] { router_sigmoid_backward_kernel(s, ds, dx, tokens * E); });
  else
    emu::run_grid(dim3{grid, 1, 1}, kScoresThreads, [&] { router_softmax_backward_kernel(s, ds, dx, tokens, E); });
}

/* moe4j_cuda_route_plan's fast path: zero offsets, count, scan, place. */
void emulated_plan(const int32_t *ids, const float *w, int64_t tokens, int64_t E, int k, int64_t capacity,
                   int64_t *offsets, int32_t *sorted, int32_t *slot, int64_t *counts) {
  const int64_t n = tokens * k;
  memset(offsets, 0, (size_t)(E + 1) * sizeof(int64_t));
  if (n > 0) emu::run_grid(dim3{2, 1, 1}, kCountThreads, [&] { route_count_kernel(ids, n, E, offsets); });
  emu::run_grid(dim3{1, 1, 1}, kScanThreads, [&] { route_scan_kernel(offsets, counts, E, capacity); });
  if (n == 0) return;
  emu::run_grid(dim3{(unsigned)(E + 1), 1, 1}, kPlaceThreads,
                [&] { route_place_kernel(ids, w, n, E, capacity, offsets, sorted, slot, k); });
}

void scores_case(int64_t tokens, int64_t E, int32_t fn) {
  const auto logits = router_logits(tokens, E, 100 + E);
  const auto ds = check::randn(tokens * E, 101 + tokens);
  const int64_t n = tokens * E;
  std::vector<float> cpu(n), cpu_dx(n);
  CHECK_STATUS(moe4j_cpu_router_scores(logits.data(), cpu.data(), tokens, E, fn), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_router_scores_backward(cpu.data(), ds.data(), cpu_dx.data(), tokens, E, fn), MOE4J_OK);
  for (bool ref : {false, true}) {
    std::vector<float> got(n, NAN), got_dx(n, NAN);
    emulated_scores(logits.data(), got.data(), tokens, E, fn, ref, 2);
    emulated_scores_backward(cpu.data(), ds.data(), got_dx.data(), tokens, E, fn, ref, 1);
    bool ok = true, ok_dx = true;
    for (int64_t t = 0; t < tokens; t++) {
      double mag = 0;
      for (int64_t e = 0; e < E; e++) mag += fabs((double)cpu[t * E + e] * ds[t * E + e]);
      for (int64_t e = 0; e < E; e++) {
        const int64_t i = t * E + e;
        ok = ok && fabs((double)got[i] - cpu[i]) <= 1e-5 * fabs(cpu[i]) + 1e-30;
        /* bitwise where the operation sequence is the CPU twin's, else the reordered dot's bound */
        const double bound = fn == kRouteScoreSigmoid || ref ? 0.0 : 1.2e-7 * (fabs(cpu_dx[i]) + (double)(E + 32) * cpu[i] * mag) + 1e-30;
        ok_dx = ok_dx && fabs((double)got_dx[i] - cpu_dx[i]) <= bound;
      }
    }
    EXPECT_SAME(ok, ref ? "router scores (reference)" : "router scores", tokens, E, fn);
    EXPECT_SAME(ok_dx, ref ? "router scores backward (reference)" : "router scores backward", tokens, E, fn);
    /* in place (scores over logits) gives the same bytes */
    std::vector<float> inplace = logits;
    emulated_scores(inplace.data(), inplace.data(), tokens, E, fn, ref, 3);
    EXPECT_SAME(same_bytes(inplace, got), "router scores in place", tokens, E, fn);
  }
}

void topk_case(int64_t tokens, int64_t E, int k, bool with_bias, int renormalize) {
  const auto scores = tied_scores(tokens, E, 200 + E + k);
  std::vector<float> bias = check::randn(E, 201, 0.05f);
  for (int64_t e = 0; e < E; e += 2) bias[e] = 0.0f;
  const float *b = with_bias ? bias.data() : nullptr;
  const int64_t nk = tokens * k, n = tokens * E;
  std::vector<int32_t> ids(nk), got_ids(nk, -9);
  std::vector<float> w(nk), got_w(nk, NAN), ds(n), got_ds(n, 0.0f);
  const auto dw = check::randn(nk, 202);
  CHECK_STATUS(moe4j_cpu_route_topk(scores.data(), b, tokens, E, k, renormalize, ids.data(), w.data()), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_topk_backward(scores.data(), ids.data(), dw.data(), ds.data(), tokens, E, k, renormalize), MOE4J_OK);
  emu::run_grid(dim3{2, 1, 1}, kTopkThreads, [&] {
    route_topk_kernel(scores.data(), b, tokens, E, k, renormalize, got_ids.data(), got_w.data());
  });
  emu::run_grid(dim3{2, 1, 1}, kTopkThreads, [&] { /* d_scores zeroed first, as by cudaMemsetAsync */
    route_topk_backward_kernel(scores.data(), ids.data(), dw.data(), got_ds.data(), tokens, E, k, renormalize);
  });
  EXPECT_SAME(same_bytes(got_ids, ids), "route_topk expert_ids", tokens, E, k);
  EXPECT_SAME(same_bytes(got_w, w), "route_topk weights", tokens, E, k);
  EXPECT_SAME(same_bytes(got_ds, ds), "route_topk_backward", tokens, E, k);
}

void plan_inputs(int64_t tokens, int64_t E, int k, uint64_t seed, std::vector<int32_t> *ids,
                 std::vector<float> *w) {
  const auto scores = tied_scores(tokens, E, seed);
  ids->assign(tokens * k, 0);
  w->assign(tokens * k, 0.0f);
  CHECK_STATUS(moe4j_cpu_route_topk(scores.data(), nullptr, tokens, E, k, 0, ids->data(), w->data()), MOE4J_OK);
}

void plan_case(int64_t tokens, int64_t E, int k, int64_t capacity) {
  std::vector<int32_t> ids;
  std::vector<float> w;
  plan_inputs(tokens, E, k, 300 + tokens + E, &ids, &w);
  const int64_t nk = tokens * k;
  std::vector<int64_t> offsets(E + 1), counts(E), got_off(E + 1, 99), got_counts(E, 99);
  std::vector<int32_t> sorted(nk), slot(nk), got_sorted(nk, 77), got_slot(nk, 77);
  CHECK_STATUS(moe4j_cpu_route_plan(ids.data(), w.data(), tokens, E, k, capacity, offsets.data(), sorted.data(),
                                    slot.data(), counts.data()), MOE4J_OK);
  emulated_plan(ids.data(), w.data(), tokens, E, k, capacity, got_off.data(), got_sorted.data(), got_slot.data(),
                got_counts.data());
  EXPECT_SAME(same_bytes(got_off, offsets), "route_plan offsets", tokens, E, capacity);
  EXPECT_SAME(same_bytes(got_sorted, sorted), "route_plan sorted_token", tokens, E, capacity);
  EXPECT_SAME(same_bytes(got_slot, slot), "route_plan slot_of", tokens, E, capacity);
  EXPECT_SAME(same_bytes(got_counts, counts), "route_plan counts", tokens, E, capacity);
  /* the reference kernel: one thread */
  std::vector<int64_t> ref_off(E + 1, 99);
  std::vector<int32_t> ref_sorted(nk, 77), ref_slot(nk, 77);
  emu::run_grid(dim3{1, 1, 1}, 32, [&] {
    route_plan_ref(ids.data(), w.data(), tokens, E, k, capacity, ref_off.data(), ref_sorted.data(), ref_slot.data(), nullptr);
  });
  EXPECT_SAME(same_bytes(ref_off, offsets) && same_bytes(ref_sorted, sorted) && same_bytes(ref_slot, slot),
              "route_plan_ref", tokens, E, capacity);
}

/* The element type and packet width routing.cu picks for a row kernel. */
template <typename T>
bool packed(int64_t H, const void *a, const void *b, const void *c) {
  const int64_t per = 16 / (int64_t)sizeof(T);
  auto al = [](const void *p) { return p == nullptr || (uintptr_t)p % 16 == 0; };
  return H % per == 0 && al(a) && al(b) && al(c);
}

template <typename T>
void rows_kernels(const uint8_t *x, const uint8_t *d_rows_in, const uint8_t *dy, const uint8_t *rows_in,
                  const int32_t *sorted, const int32_t *slot, const float *w, int64_t tokens, int k, int64_t R,
                  int64_t H, uint8_t *rows, uint8_t *dx, uint8_t *dx_acc, uint8_t *y, uint8_t *d_rows,
                  float *d_weights) {
  constexpr int V = 16 / sizeof(T);
  /* gather: the widest unit the row bytes and both bases allow */
  const int64_t row_bytes = H * (int64_t)sizeof(T);
  const unsigned g = 2;
  if (row_bytes % 16 == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)rows % 16 == 0)
    emu::run_grid(dim3{g, 1, 1}, kGatherThreads, [&] { route_gather_kernel((const uint4 *)x, sorted, (uint4 *)rows, R, tokens, row_bytes / 16); });
  else if (row_bytes % 4 == 0 && (uintptr_t)x % 4 == 0 && (uintptr_t)rows % 4 == 0)
    emu::run_grid(dim3{g, 1, 1}, kGatherThreads, [&] { route_gather_kernel((const uint32_t *)x, sorted, (uint32_t *)rows, R, tokens, row_bytes / 4); });
  else
    emu::run_grid(dim3{g, 1, 1}, kGatherThreads, [&] { route_gather_kernel((const uint16_t *)x, sorted, (uint16_t *)rows, R, tokens, row_bytes / 2); });
  auto run = [&](bool pk, auto packet_kernel, auto element_kernel) {
    if (pk) emu::run_grid(dim3{3, 1, 1}, kRowThreads, packet_kernel);
    else emu::run_grid(dim3{3, 1, 1}, kRowThreads, element_kernel);
  };
  const T *dr = (const T *)d_rows_in, *ri = (const T *)rows_in, *dyt = (const T *)dy;
  for (int acc : {0, 1}) {
    T *out = (T *)(acc ? dx_acc : dx);
    run(packed<T>(H, dr, out, nullptr),
        [&] { route_gather_backward_kernel<T, V>(dr, slot, out, tokens, k, R, H, acc); },
        [&] { route_gather_backward_kernel<T, 1>(dr, slot, out, tokens, k, R, H, acc); });
  }
  run(packed<T>(H, ri, y, nullptr), [&] { route_combine_kernel<T, V>(ri, slot, w, (T *)y, tokens, k, R, H); },
      [&] { route_combine_kernel<T, 1>(ri, slot, w, (T *)y, tokens, k, R, H); });
  memset(d_rows, 0, (size_t)(R * H) * sizeof(T)); /* cudaMemsetAsync in routing.cu */
  run(packed<T>(H, dyt, ri, d_rows),
      [&] { route_combine_backward_kernel<T, V>(dyt, ri, slot, w, (T *)d_rows, d_weights, tokens, k, R, H); },
      [&] { route_combine_backward_kernel<T, 1>(dyt, ri, slot, w, (T *)d_rows, d_weights, tokens, k, R, H); });
}

/* gather, gather backward (overwrite and accumulate), combine, combine backward on one plan;
 * `offset` shifts the outputs by one element so the narrow paths run. */
void rows_case(int32_t dtype, int64_t tokens, int64_t E, int k, int64_t capacity, int64_t H, int64_t offset) {
  std::vector<int32_t> ids;
  std::vector<float> w;
  plan_inputs(tokens, E, k, 400 + H, &ids, &w);
  const int64_t nk = tokens * k, es = dtype == BF16 ? 2 : 4, R = nk;
  std::vector<int64_t> offsets(E + 1);
  std::vector<int32_t> sorted(nk), slot(nk);
  CHECK_STATUS(moe4j_cpu_route_plan(ids.data(), w.data(), tokens, E, k, capacity, offsets.data(), sorted.data(), slot.data(), nullptr), MOE4J_OK);
  const auto x = as_dtype(check::randn(tokens * H, 401), dtype), d_rows = as_dtype(check::randn(R * H, 402), dtype),
             dy = as_dtype(check::randn(tokens * H, 403), dtype), dx0 = as_dtype(check::randn(tokens * H, 404), dtype);
  std::vector<uint8_t> rows(R * H * es), y(tokens * H * es), dx_acc = dx0, dx(tokens * H * es), d_rows_out(R * H * es);
  std::vector<float> dweights(nk);
  CHECK_STATUS(moe4j_cpu_route_gather(dtype, x.data(), sorted.data(), rows.data(), R, tokens, H), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_gather_backward(dtype, d_rows.data(), slot.data(), dx.data(), tokens, k, R, H, 0), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_gather_backward(dtype, d_rows.data(), slot.data(), dx_acc.data(), tokens, k, R, H, 1), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_combine(dtype, rows.data(), slot.data(), w.data(), y.data(), tokens, k, R, H), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_combine_backward(dtype, dy.data(), rows.data(), slot.data(), w.data(), d_rows_out.data(), dweights.data(), tokens, k, R, H), MOE4J_OK);

  /* outputs at byte offset o of 16-byte aligned buffers, one spare element after each */
  const int64_t o = offset * es;
  auto buffer = [&](size_t bytes) { return std::vector<uint8_t>(bytes + o + es, 0x5a); };
  std::vector<uint8_t> g_rows = buffer(rows.size()), g_y = buffer(y.size()), g_dx = buffer(dx.size()),
                       g_dx_acc = buffer(dx.size()), g_d_rows = buffer(d_rows_out.size());
  memcpy(g_dx_acc.data() + o, dx0.data(), dx0.size());
  std::vector<float> g_dw(nk, 5.0f);
  if (dtype == BF16)
    rows_kernels<bf16_t>(x.data(), d_rows.data(), dy.data(), rows.data(), sorted.data(), slot.data(), w.data(), tokens, k, R, H,
                         g_rows.data() + o, g_dx.data() + o, g_dx_acc.data() + o, g_y.data() + o, g_d_rows.data() + o, g_dw.data());
  else
    rows_kernels<float>(x.data(), d_rows.data(), dy.data(), rows.data(), sorted.data(), slot.data(), w.data(), tokens, k, R, H,
                        g_rows.data() + o, g_dx.data() + o, g_dx_acc.data() + o, g_y.data() + o, g_d_rows.data() + o, g_dw.data());
  auto slice = [&](const std::vector<uint8_t> &b, size_t bytes) {
    return std::vector<uint8_t>(b.begin() + o, b.begin() + o + (int64_t)bytes);
  };
  EXPECT_SAME(same_bytes(slice(g_rows, rows.size()), rows), "route_gather", dtype, tokens, H);
  EXPECT_SAME(g_rows[o + rows.size()] == 0x5a, "route_gather writes past the end", dtype, tokens, H);
  EXPECT_SAME(same_bytes(slice(g_dx, dx.size()), dx), "route_gather_backward", dtype, tokens, H);
  EXPECT_SAME(same_bytes(slice(g_dx_acc, dx.size()), dx_acc), "route_gather_backward accumulate", dtype, tokens, H);
  EXPECT_SAME(same_bytes(slice(g_y, y.size()), y), "route_combine", dtype, tokens, H);
  EXPECT_SAME(same_bytes(slice(g_d_rows, d_rows_out.size()), d_rows_out), "route_combine_backward d_rows", dtype, tokens, H);
  EXPECT_SAME(same_bytes(g_dw, dweights), "route_combine_backward d_weights", dtype, tokens, H);
}

/* moe4j_cuda_route_expert_choice, fast path: memsets, select (a block per (group, expert)),
 * finish (grid-stride; 2 blocks here); or the reference kernels. */
void emulated_expert_choice(const float *scores, int64_t T, int64_t E, int64_t G, int64_t C, int64_t *offsets,
                            int32_t *sorted, int32_t *slot, float *w, int64_t *uncovered, bool ref) {
  const int64_t groups = ec_groups(T, G), per_expert = ec_rows_per_expert(groups, C), pairs = groups * E;
  if (ref) {
    if (pairs > 0)
      emu::run_grid(dim3{(unsigned)((pairs + kEcRefThreads - 1) / kEcRefThreads), 1, 1}, kEcRefThreads,
                    [&] { ec_select_ref(scores, E, G, C, groups, sorted, slot, w); });
    emu::run_grid(dim3{1, 1, 1}, 32, [&] { ec_finish_ref(slot, T, E, per_expert, offsets, uncovered); });
    return;
  }
  memset(slot, 0xff, (size_t)(T * E) * sizeof(int32_t));
  memset(w, 0, (size_t)(T * E) * sizeof(float));
  if (uncovered != nullptr) *uncovered = 0;
  if (pairs > 0 && C > 0) {
    if (G <= kEcSharedTokens)
      emu::run_grid(dim3{(unsigned)pairs, 1, 1}, kEcThreads, [&] { ec_select_kernel<true>(scores, E, G, C, groups, sorted, slot, w); });
    else
      emu::run_grid(dim3{(unsigned)pairs, 1, 1}, kEcThreads, [&] { ec_select_kernel<false>(scores, E, G, C, groups, sorted, slot, w); });
  }
  emu::run_grid(dim3{2, 1, 1}, kEcFinishThreads,
                [&] { ec_finish_kernel(slot, T, E, per_expert, offsets, (unsigned long long *)uncovered); });
}

void ec_case(int64_t T, int64_t E, int64_t G, int64_t C, ScoreKind kind) {
  const auto s = scores(T, E, 1000 + T + E * 3 + C, kind, 1.5f);
  const int64_t R = E * (T / G) * C, n = T * E;
  std::vector<int64_t> offsets(E + 1), unc(1);
  std::vector<int32_t> sorted(R), slot(n);
  std::vector<float> w(n);
  CHECK_STATUS(moe4j_cpu_route_expert_choice(s.data(), T, E, G, C, offsets.data(), sorted.data(), slot.data(), w.data(), unc.data()),
               MOE4J_OK);
  for (bool ref : {false, true}) {
    if (ref && G > 1000) continue; /* the reference kernel is O(G^2) per pair */
    std::vector<int64_t> g_off(E + 1, 99), g_unc(1, 99);
    std::vector<int32_t> g_sorted(R, 77), g_slot(n, 77);
    std::vector<float> g_w(n, 5.0f);
    emulated_expert_choice(s.data(), T, E, G, C, g_off.data(), g_sorted.data(), g_slot.data(), g_w.data(), g_unc.data(), ref);
    const bool same = same_bytes(g_off, offsets) && same_bytes(g_sorted, sorted) && same_bytes(g_slot, slot) &&
                      same_bytes(g_w, w) && g_unc[0] == unc[0];
    EXPECT_SAME(same, ref ? "expert choice (reference)" : "expert choice", T, G, C);
  }
}

}  // namespace

TEST_CASE(router_scores_and_backward) {
  for (int32_t fn : {0, 1}) {
    scores_case(1, 1, fn);
    scores_case(33, 8, fn);
    scores_case(70, 257, fn); /* E not a multiple of 32: lanes with 8 and 9 elements */
  }
}

TEST_CASE(route_topk_and_backward_bitwise) {
  for (int renorm : {0, 1}) {
    topk_case(37, 8, 2, renorm == 1, renorm);
    topk_case(40, 64, 17, renorm == 0, renorm); /* past the local array: topk_row on global rows */
  }
}

TEST_CASE(route_plan_bitwise) {
  plan_case(37, 8, 2, 0);
  plan_case(37, 8, 2, 5);
  plan_case(500, 16, 4, 60);  /* experts over capacity: radix select of the threshold */
  plan_case(500, 16, 4, 125); /* exactly the mean load */
  plan_case(700, 4, 2, 300);  /* 1400 assignments: two 1024-assignment chunks per expert */
  plan_case(20, 1500, 2, 0);  /* more experts than scan threads, most empty */
}

TEST_CASE(gather_and_combine_bitwise) {
  for (int32_t dtype : {F32, BF16})
    for (int64_t H : {7, 64, 129})
      for (int64_t offset : {0, 1}) rows_case(dtype, 40, 16, 4, 7, H, offset); /* dropped slots, padding rows */
}

TEST_CASE(expert_choice_bitwise) {
  for (ScoreKind kind : {kRandom, kTied, kAllEqual, kSpecial}) {
    ec_case(64, 8, 16, 1, kind);
    ec_case(64, 8, 16, 15, kind); /* G - 1 */
  }
  ec_case(64, 8, 16, 0, kTied);         /* nothing chosen: every token uncovered */
  ec_case(64, 8, 16, 16, kSpecial);     /* every expert takes every token */
  ec_case(64, 8, 64, 16, kTied);        /* the whole batch as one group */
  ec_case(12, 1, 4, 2, kAllEqual);
  ec_case(600, 3, 600, 300, kTied);     /* three placement rounds */
  ec_case(4100, 2, 4100, 37, kRandom);  /* past 4096: keys read from global memory */
}

TEST_MAIN("routing_emulated")
