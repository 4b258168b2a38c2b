/*
 * CUDA routing kernels (fast and reference) against the CPU twin (native/src/cpu_routing.cpp).
 *
 * Bitwise where both sides run the same operation sequence from routing_math.h: top-k and its
 * backward, the plan, gather, gather backward, combine, combine backward, the sigmoid backward and
 * the reference softmax backward. With a tolerance where they cannot: softmax and sigmoid forward
 * use expf, whose CUDA version is within 2 ulp of the correctly rounded result (CUDA C
 * Programming Guide, "Mathematical Functions") while glibc's differs by up to 1 ulp; with one
 * division and a sum of E positive terms (reordered by the warp in the fast kernel, relative
 * error <= log2(32) * eps for the butterfly plus E/32 * eps for each lane's run) the scores agree
 * to ~1e-6 relative: 1e-5 (DESIGN.md's fp32 tolerance) leaves margin. The fast softmax backward
 * reorders the dot sum_e s_e ds_e: its error is bounded by (E * eps) * sum |s_e ds_e|, scaled by
 * s_i, on top of the last rounding.
 */
#include <string.h>

#include <algorithm>

#include "gpu_test.h"
#include "numerics.h"
#include "routing_inputs.h"

using namespace routing_inputs;

namespace {

const int32_t F32 = MOE4J_DTYPE_F32, BF16 = MOE4J_DTYPE_BF16;

/* Float data as raw bytes in dtype (BF16: rounded). */
std::vector<uint8_t> as_dtype(const std::vector<float> &v, int32_t dtype) {
  std::vector<uint8_t> out(v.size() * (dtype == BF16 ? 2 : 4));
  if (dtype == BF16) {
    for (size_t i = 0; i < v.size(); i++) {
      const uint16_t b = moe4j::f32_to_bf16_bits(v[i]);
      memcpy(out.data() + 2 * i, &b, 2);
    }
  } else {
    memcpy(out.data(), v.data(), out.size());
  }
  return out;
}

template <typename T>
bool same_bytes(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

void report_if(bool bad, const char *file, int line, const char *what, const char *path,
               long long a, long long b, long long c) {
  if (!bad) return;
  char msg[256];
  snprintf(msg, sizeof msg, "%s (%s) differs from CPU at sizes %lld, %lld, %lld", what, path, a, b, c);
  check::report(file, line, msg);
}
#define EXPECT_SAME(cond, what, path, a, b, c) report_if(!(cond), __FILE__, __LINE__, what, path, a, b, c)

const char *path_name(int ref) { return ref ? "reference" : "fast"; }

void scores_case(int64_t tokens, int64_t experts, int32_t score_fn) {
  const auto logits = router_logits(tokens, experts, 100 + experts);
  const auto ds = check::randn(tokens * experts, 101 + tokens);
  const int64_t n = tokens * experts;
  std::vector<float> cpu(n), cpu_dx(n);
  CHECK_STATUS(moe4j_cpu_router_scores(logits.data(), cpu.data(), tokens, experts, score_fn), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_router_scores_backward(cpu.data(), ds.data(), cpu_dx.data(), tokens, experts, score_fn), MOE4J_OK);
  gpu::DeviceBuffer<float> dlogits(logits), dscores(n), dsaved(cpu), dds(ds), ddx(n);
  for (int ref : {0, 1}) {
    moe4j_cuda_use_reference_kernels(ref);
    CHECK_STATUS(moe4j_cuda_router_scores(dlogits.ptr, dscores.ptr, tokens, experts, score_fn, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_router_scores_backward(dsaved.ptr, dds.ptr, ddx.ptr, tokens, experts, score_fn, nullptr), MOE4J_OK);
    gpu::sync();
    const auto got = dscores.download(), got_dx = ddx.download();
    bool ok = true;
    for (int64_t i = 0; i < n && ok; i++) {
      if (isnan(cpu[i])) ok = isnan(got[i]);
      else ok = fabs((double)got[i] - cpu[i]) <= 1e-5 * fabs(cpu[i]) + 1e-30;
    }
    EXPECT_SAME(ok, "router_scores", path_name(ref), tokens, experts, score_fn);
    if (score_fn == 1 || ref) {
      EXPECT_SAME(same_bytes(got_dx, cpu_dx), "router_scores_backward bitwise", path_name(ref), tokens, experts, score_fn);
    } else {
      ok = true;
      for (int64_t t = 0; t < tokens && ok; t++) {
        double mag = 0;
        for (int64_t e = 0; e < experts; e++) mag += fabs((double)cpu[t * experts + e] * ds[t * experts + e]);
        for (int64_t e = 0; e < experts && ok; e++) {
          const int64_t i = t * experts + e;
          const double bound = 1.2e-7 * (fabs(cpu_dx[i]) + (double)(experts + 32) * cpu[i] * mag) + 1e-30;
          ok = fabs((double)got_dx[i] - cpu_dx[i]) <= bound;
        }
      }
      EXPECT_SAME(ok, "router_scores_backward", path_name(ref), tokens, experts, score_fn);
    }
    /* in place: scores over logits, d_logits over d_scores, same result as out of place */
    gpu::DeviceBuffer<float> inplace(logits), inplace_d(ds);
    CHECK_STATUS(moe4j_cuda_router_scores(inplace.ptr, inplace.ptr, tokens, experts, score_fn, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_router_scores_backward(dsaved.ptr, inplace_d.ptr, inplace_d.ptr, tokens, experts, score_fn, nullptr), MOE4J_OK);
    gpu::sync();
    EXPECT_SAME(same_bytes(inplace.download(), got), "router_scores in place", path_name(ref), tokens, experts, score_fn);
    EXPECT_SAME(same_bytes(inplace_d.download(), got_dx), "router_scores_backward in place", path_name(ref), tokens, experts, score_fn);
  }
  moe4j_cuda_use_reference_kernels(0);
}

void topk_case(int64_t tokens, int64_t experts, int32_t k, bool with_bias, int32_t renormalize) {
  const auto scores = tied_scores(tokens, experts, 200 + experts + k);
  std::vector<float> bias = check::randn(experts, 201, 0.05f);
  for (int64_t e = 0; e < experts; e += 2) bias[e] = 0.0f;
  const float *b = with_bias ? bias.data() : nullptr;
  const int64_t nk = tokens * k, n = tokens * experts;
  std::vector<int32_t> ids(nk);
  std::vector<float> w(nk);
  CHECK_STATUS(moe4j_cpu_route_topk(scores.data(), b, tokens, experts, k, renormalize, ids.data(), w.data()), MOE4J_OK);
  const auto dw = check::randn(nk, 202);
  std::vector<float> ds(n);
  CHECK_STATUS(moe4j_cpu_route_topk_backward(scores.data(), ids.data(), dw.data(), ds.data(), tokens, experts, k, renormalize), MOE4J_OK);

  gpu::DeviceBuffer<float> dscores(scores), dbias(bias), dweights(nk), ddw(dw), dds(std::vector<float>(n, 7.0f));
  gpu::DeviceBuffer<int32_t> dids(nk), dcpu_ids(ids);
  CHECK_STATUS(moe4j_cuda_route_topk(dscores.ptr, with_bias ? dbias.ptr : nullptr, tokens, experts, k, renormalize, dids.ptr, dweights.ptr, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_route_topk_backward(dscores.ptr, dcpu_ids.ptr, ddw.ptr, dds.ptr, tokens, experts, k, renormalize, nullptr), MOE4J_OK);
  gpu::sync();
  EXPECT_SAME(same_bytes(dids.download(), ids), "route_topk expert_ids", "fast", tokens, experts, k);
  EXPECT_SAME(same_bytes(dweights.download(), w), "route_topk weights", "fast", tokens, experts, k);
  EXPECT_SAME(same_bytes(dds.download(), ds), "route_topk_backward", "fast", tokens, experts, k);
}

/* Expert ids from top-k of random scores, weights with ties. */
void plan_inputs(int64_t tokens, int64_t experts, int32_t k, uint64_t seed, std::vector<int32_t> *ids,
                 std::vector<float> *w) {
  const auto scores = tied_scores(tokens, experts, seed);
  ids->assign(tokens * k, 0);
  w->assign(tokens * k, 0.0f);
  CHECK_STATUS(moe4j_cpu_route_topk(scores.data(), nullptr, tokens, experts, k, 0, ids->data(), w->data()), MOE4J_OK);
}

void plan_case(int64_t tokens, int64_t experts, int32_t k, int64_t capacity, bool with_counts) {
  std::vector<int32_t> ids;
  std::vector<float> w;
  plan_inputs(tokens, experts, k, 300 + tokens + experts, &ids, &w);
  const int64_t nk = tokens * k;
  std::vector<int64_t> offsets(experts + 1), counts(experts);
  std::vector<int32_t> sorted(nk), slot(nk);
  CHECK_STATUS(moe4j_cpu_route_plan(ids.data(), w.data(), tokens, experts, k, capacity, offsets.data(), sorted.data(), slot.data(),
                                    with_counts ? counts.data() : nullptr), MOE4J_OK);
  gpu::DeviceBuffer<int32_t> dids(ids);
  gpu::DeviceBuffer<float> dw(w);
  for (int ref : {0, 1}) {
    moe4j_cuda_use_reference_kernels(ref);
    for (int run = 0; run < 2; run++) { /* second run over stale outputs: nothing depends on them */
      gpu::DeviceBuffer<int64_t> doff(std::vector<int64_t>(experts + 1, 99)), dcounts(std::vector<int64_t>(experts, 99));
      gpu::DeviceBuffer<int32_t> dsorted(std::vector<int32_t>(nk, 77 + run)), dslot(std::vector<int32_t>(nk, 77 + run));
      CHECK_STATUS(moe4j_cuda_route_plan(dids.ptr, dw.ptr, tokens, experts, k, capacity, doff.ptr, dsorted.ptr, dslot.ptr,
                                         with_counts ? dcounts.ptr : nullptr, nullptr), MOE4J_OK);
      gpu::sync();
      EXPECT_SAME(same_bytes(doff.download(), offsets), "route_plan offsets", path_name(ref), tokens, experts, capacity);
      EXPECT_SAME(same_bytes(dsorted.download(), sorted), "route_plan sorted_token", path_name(ref), tokens, experts, capacity);
      EXPECT_SAME(same_bytes(dslot.download(), slot), "route_plan slot_of", path_name(ref), tokens, experts, capacity);
      if (with_counts)
        EXPECT_SAME(same_bytes(dcounts.download(), counts), "route_plan counts", path_name(ref), tokens, experts, capacity);
      else
        EXPECT_SAME(same_bytes(dcounts.download(), std::vector<int64_t>(experts, 99)), "route_plan counts untouched", path_name(ref), tokens, experts, capacity);
    }
  }
  moe4j_cuda_use_reference_kernels(0);
}

/* gather, gather backward, combine, combine backward on one plan; `offset` shifts the outputs by
 * one element to defeat 16-byte alignment (the narrow paths). */
void rows_case(int32_t dtype, int64_t tokens, int64_t experts, int32_t k, int64_t capacity, int64_t hidden, int64_t offset) {
  std::vector<int32_t> ids;
  std::vector<float> w;
  plan_inputs(tokens, experts, k, 400 + hidden, &ids, &w);
  const int64_t nk = tokens * k, es = dtype == BF16 ? 2 : 4;
  std::vector<int64_t> offsets(experts + 1);
  std::vector<int32_t> sorted(nk), slot(nk);
  CHECK_STATUS(moe4j_cpu_route_plan(ids.data(), w.data(), tokens, experts, k, capacity, offsets.data(), sorted.data(), slot.data(), nullptr), MOE4J_OK);
  const int64_t R = nk; /* the static row count: padding rows past offsets[E] */
  const auto x = as_dtype(check::randn(tokens * hidden, 401), dtype);
  const auto d_rows = as_dtype(check::randn(R * hidden, 402), dtype);
  const auto dy = as_dtype(check::randn(tokens * hidden, 403), dtype);
  const auto dx0 = as_dtype(check::randn(tokens * hidden, 404), dtype);
  std::vector<uint8_t> rows(R * hidden * es), y(tokens * hidden * es), dx_acc = dx0, dx(tokens * hidden * es), d_rows_out(R * hidden * es, 0xcd);
  std::vector<uint8_t> y_unw(y.size());
  std::vector<float> dweights(nk);
  CHECK_STATUS(moe4j_cpu_route_gather(dtype, x.data(), sorted.data(), rows.data(), R, tokens, hidden), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_gather_backward(dtype, d_rows.data(), slot.data(), dx.data(), tokens, k, R, hidden, 0), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_gather_backward(dtype, d_rows.data(), slot.data(), dx_acc.data(), tokens, k, R, hidden, 1), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_combine(dtype, rows.data(), slot.data(), w.data(), y.data(), tokens, k, R, hidden), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_combine(dtype, rows.data(), slot.data(), nullptr, y_unw.data(), tokens, k, R, hidden), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_combine_backward(dtype, dy.data(), rows.data(), slot.data(), w.data(), d_rows_out.data(), dweights.data(), tokens, k, R, hidden), MOE4J_OK);

  gpu::DeviceBuffer<uint8_t> dxin(x), dd_rows(d_rows), ddy(dy), drows_in(rows);
  gpu::DeviceBuffer<int32_t> dsorted(sorted), dslot(slot);
  gpu::DeviceBuffer<float> dw(w);
  const size_t pad = (size_t)(offset + 1) * es;
  for (int ref : {0, 1}) {
    moe4j_cuda_use_reference_kernels(ref);
    gpu::DeviceBuffer<uint8_t> grows(rows.size() + pad), gy(y.size() + pad), gy_unw(y.size() + pad), gdx(dx.size() + pad), gdx_acc(dx.size() + pad),
        gd_rows(d_rows_out.size() + pad);
    gpu::DeviceBuffer<float> gdw(std::vector<float>(nk, 5.0f));
    CHECK(cudaMemset(grows.ptr, 0x5a, grows.count) == cudaSuccess);
    CHECK(cudaMemset(gd_rows.ptr, 0x5a, gd_rows.count) == cudaSuccess);
    CHECK(cudaMemcpy(gdx_acc.ptr + offset * es, dx0.data(), dx0.size(), cudaMemcpyHostToDevice) == cudaSuccess);
    const int64_t o = offset * es;
    CHECK_STATUS(moe4j_cuda_route_gather(dtype, dxin.ptr, dsorted.ptr, grows.ptr + o, R, tokens, hidden, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_route_gather_backward(dtype, dd_rows.ptr, dslot.ptr, gdx.ptr + o, tokens, k, R, hidden, 0, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_route_gather_backward(dtype, dd_rows.ptr, dslot.ptr, gdx_acc.ptr + o, tokens, k, R, hidden, 1, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_route_combine(dtype, drows_in.ptr, dslot.ptr, dw.ptr, gy.ptr + o, tokens, k, R, hidden, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_route_combine(dtype, drows_in.ptr, dslot.ptr, nullptr, gy_unw.ptr + o, tokens, k, R, hidden, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_route_combine_backward(dtype, ddy.ptr, drows_in.ptr, dslot.ptr, dw.ptr, gd_rows.ptr + o, gdw.ptr, tokens, k, R, hidden, nullptr), MOE4J_OK);
    gpu::sync();
    auto slice = [&](const gpu::DeviceBuffer<uint8_t> &b, size_t bytes) {
      const auto all = b.download();
      return std::vector<uint8_t>(all.begin() + o, all.begin() + o + (int64_t)bytes);
    };
    const char *p = path_name(ref);
    EXPECT_SAME(same_bytes(slice(grows, rows.size()), rows), "route_gather", p, dtype, tokens, hidden);
    EXPECT_SAME(grows.download()[o + rows.size()] == 0x5a, "route_gather writes past the end", p, dtype, tokens, hidden);
    EXPECT_SAME(same_bytes(slice(gdx, dx.size()), dx), "route_gather_backward", p, dtype, tokens, hidden);
    EXPECT_SAME(same_bytes(slice(gdx_acc, dx.size()), dx_acc), "route_gather_backward accumulate", p, dtype, tokens, hidden);
    EXPECT_SAME(same_bytes(slice(gy, y.size()), y), "route_combine", p, dtype, tokens, hidden);
    EXPECT_SAME(same_bytes(slice(gy_unw, y.size()), y_unw), "route_combine unweighted", p, dtype, tokens, hidden);
    EXPECT_SAME(same_bytes(slice(gd_rows, d_rows_out.size()), d_rows_out), "route_combine_backward d_rows", p, dtype, tokens, hidden);
    EXPECT_SAME(same_bytes(gdw.download(), dweights), "route_combine_backward d_weights", p, dtype, tokens, hidden);
    /* d_weights NULL: d_rows alone, same bytes */
    CHECK(cudaMemset(gd_rows.ptr, 0x5a, gd_rows.count) == cudaSuccess);
    CHECK_STATUS(moe4j_cuda_route_combine_backward(dtype, ddy.ptr, drows_in.ptr, dslot.ptr, dw.ptr, gd_rows.ptr + o, nullptr, tokens, k, R, hidden, nullptr), MOE4J_OK);
    gpu::sync();
    EXPECT_SAME(same_bytes(slice(gd_rows, d_rows_out.size()), d_rows_out), "route_combine_backward without d_weights", p, dtype, tokens, hidden);
  }
  moe4j_cuda_use_reference_kernels(0);
}

}  // namespace

TEST_CASE(router_scores_match_cpu) {
  for (int32_t fn : {0, 1}) {
    scores_case(1, 1, fn);
    scores_case(7, 3, fn);
    scores_case(33, 8, fn);
    scores_case(1000, 64, fn);
    scores_case(517, 257, fn);
    scores_case(3, 65536, fn);
  }
}

TEST_CASE(route_topk_and_backward_match_cpu_bitwise) {
  for (int32_t renorm : {0, 1}) {
    for (bool bias : {false, true}) {
      topk_case(1, 1, 1, bias, renorm);
      topk_case(37, 8, 2, bias, renorm);
      topk_case(1000, 64, 8, bias, renorm);
      topk_case(300, 256, 16, bias, renorm);
      topk_case(300, 256, 17, bias, renorm); /* past the local array: topk_row on global rows */
      topk_case(50, 64, 64, bias, renorm);   /* k == E */
      topk_case(5, 1000, 3, bias, renorm);
    }
  }
}

TEST_CASE(route_plan_fast_and_reference_match_cpu_bitwise) {
  for (bool counts : {true, false}) {
    plan_case(1, 1, 1, 0, counts);
    plan_case(37, 8, 2, 0, counts);
    plan_case(37, 8, 2, 1, counts);
    plan_case(37, 8, 2, 5, counts);
    plan_case(500, 16, 4, 0, counts);
    plan_case(500, 16, 4, 60, counts);   /* some experts over capacity */
    plan_case(500, 16, 4, 125, counts);  /* exactly the mean load */
    plan_case(500, 16, 4, 2000, counts); /* nothing dropped */
    plan_case(1500, 64, 8, 150, counts); /* several 1024-assignment chunks per expert */
    plan_case(20, 3000, 2, 0, counts);   /* more experts than scan threads, most empty */
  }
}

TEST_CASE(gather_and_combine_match_cpu_bitwise) {
  for (int32_t dtype : {F32, BF16}) {
    for (int64_t hidden : {1, 7, 8, 64, 129, 1024}) {
      for (int64_t offset : {0, 1}) {
        rows_case(dtype, 37, 8, 2, 0, hidden, offset);
        rows_case(dtype, 100, 16, 4, 20, hidden, offset); /* dropped slots, padding rows */
      }
    }
    rows_case(dtype, 3, 8, 8, 0, 4096, 0);
  }
}

TEST_CASE(empty_calls_succeed) {
  CHECK_STATUS(moe4j_cuda_router_scores(nullptr, nullptr, 0, 8, 0, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_route_topk(nullptr, nullptr, 0, 8, 2, 1, nullptr, nullptr, nullptr), MOE4J_OK);
  gpu::DeviceBuffer<int64_t> offsets(std::vector<int64_t>(9, 5)), counts(std::vector<int64_t>(8, 5));
  CHECK_STATUS(moe4j_cuda_route_plan(nullptr, nullptr, 0, 8, 2, 4, offsets.ptr, nullptr, nullptr, counts.ptr, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK(same_bytes(offsets.download(), std::vector<int64_t>(9, 0)));
  CHECK(same_bytes(counts.download(), std::vector<int64_t>(8, 0)));
  CHECK_STATUS(moe4j_cuda_route_gather(F32, nullptr, nullptr, nullptr, 0, 0, 16, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_route_combine(F32, nullptr, nullptr, nullptr, nullptr, 0, 2, 0, 16, nullptr), MOE4J_OK);
  gpu::DeviceBuffer<float> rows(32), d_rows(std::vector<float>(32, 3.0f));
  CHECK_STATUS(moe4j_cuda_route_combine_backward(F32, nullptr, rows.ptr, nullptr, nullptr, d_rows.ptr, nullptr, 0, 2, 2, 16, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK(same_bytes(d_rows.download(), std::vector<float>(32, 0.0f))); /* unreferenced rows zeroed */
}

GPU_TEST_MAIN("gpu_routing")
