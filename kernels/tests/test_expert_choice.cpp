/*
 * CUDA Expert Choice routing (fast and reference kernels, kernels/expert_choice.cu) against the
 * CPU twin (native/src/cpu_expert_choice.cpp), bitwise: both choose the unique set the pick
 * order defines (common/expert_choice_math.h) and lay it out identically, and the weights are
 * copied scores, so every output must match byte for byte. Covers groups per sequence and per
 * batch, ties (quantized scores, all-equal scores), NaN and signed zeros, capacity 0, 1, G - 1
 * and G, E = 1, the shared-memory path (group_size <= 4096) and the global-memory path beyond
 * it, stale outputs (every output element is rewritten), uncovered NULL, and zero tokens.
 */
#include <string.h>

#include "gpu_test.h"
#include "routing_inputs.h"

using namespace routing_inputs;

namespace {

template <typename T>
bool same_bytes(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

void report_if(bool bad, int line, const char *what, const char *path, long long t, long long e, long long g,
               long long c) {
  if (!bad) return;
  char msg[256];
  snprintf(msg, sizeof msg, "%s (%s) differs from CPU at T=%lld E=%lld G=%lld C=%lld", what, path, t, e, g, c);
  check::report(__FILE__, line, msg);
}
#define EXPECT_SAME(cond, what) report_if(!(cond), __LINE__, what, path, T, E, G, C)

void ec_case(int64_t T, int64_t E, int64_t G, int64_t C, ScoreKind kind, bool with_reference = true) {
  const auto s = scores(T, E, 1000 + T + E * 3 + C, kind, 1.5f);
  const int64_t R = E * (T / G) * C, n = T * E;
  std::vector<int64_t> offsets(E + 1), unc(1);
  std::vector<int32_t> sorted(R), slot(n);
  std::vector<float> w(n);
  CHECK_STATUS(moe4j_cpu_route_expert_choice(s.data(), T, E, G, C, offsets.data(), sorted.data(), slot.data(), w.data(),
                                             unc.data()),
               MOE4J_OK);
  gpu::DeviceBuffer<float> dscores(s);
  for (int ref : {0, 1}) {
    if (ref && !with_reference) continue;
    const char *path = ref ? "reference" : "fast";
    moe4j_cuda_use_reference_kernels(ref);
    for (int run = 0; run < 2; run++) { /* stale outputs: nothing may depend on them */
      const bool with_unc = run == 0;
      gpu::DeviceBuffer<int64_t> doff(std::vector<int64_t>(E + 1, 99)), dunc(std::vector<int64_t>(1, 99));
      gpu::DeviceBuffer<int32_t> dsorted(std::vector<int32_t>(R, 77 + run)), dslot(std::vector<int32_t>(n, 77 + run));
      gpu::DeviceBuffer<float> dw(std::vector<float>(n, 5.0f + run));
      CHECK_STATUS(moe4j_cuda_route_expert_choice(dscores.ptr, T, E, G, C, doff.ptr, dsorted.ptr, dslot.ptr, dw.ptr,
                                                  with_unc ? dunc.ptr : nullptr, nullptr),
                   MOE4J_OK);
      gpu::sync();
      EXPECT_SAME(same_bytes(doff.download(), offsets), "offsets");
      EXPECT_SAME(same_bytes(dsorted.download(), sorted), "sorted_token");
      EXPECT_SAME(same_bytes(dslot.download(), slot), "slot_of");
      EXPECT_SAME(same_bytes(dw.download(), w), "weights");
      EXPECT_SAME(dunc.download()[0] == (with_unc ? unc[0] : 99), "uncovered");
    }
  }
  moe4j_cuda_use_reference_kernels(0);
}

}  // namespace

TEST_CASE(small_and_edge_cases_match_cpu_bitwise) {
  ec_case(1, 1, 1, 1, kRandom);
  ec_case(6, 1, 6, 3, kTied);
  ec_case(12, 1, 4, 2, kAllEqual);
  for (ScoreKind kind : {kRandom, kTied, kAllEqual, kSpecial}) {
    ec_case(64, 8, 16, 0, kind);   /* nothing chosen */
    ec_case(64, 8, 16, 1, kind);
    ec_case(64, 8, 16, 4, kind);
    ec_case(64, 8, 16, 15, kind);  /* G - 1 */
    ec_case(64, 8, 16, 16, kind);  /* every expert takes every token */
    ec_case(64, 8, 64, 16, kind);  /* whole batch */
    ec_case(300, 3, 300, 299, kind);
    ec_case(96, 5, 1, 1, kind);    /* a token per group */
  }
}

TEST_CASE(realistic_sizes_match_cpu_bitwise) {
  ec_case(1000, 16, 200, 25, kTied);          /* 5 groups, cf = 2 */
  ec_case(4096, 64, 512, 10, kTied);          /* per sequence, cf = 1.25 */
  ec_case(2048, 8, 1024, 1024, kRandom);      /* C = G over several rounds */
  ec_case(4096, 64, 4096, 80, kTied, false);  /* the largest shared-memory group */
  ec_case(4096, 8, 4096, 4096, kSpecial, false);
}

TEST_CASE(large_groups_use_the_global_memory_path) {
  ec_case(8192, 4, 8192, 1000, kTied, false);
  ec_case(12288, 2, 6144, 3000, kSpecial, false);
  ec_case(6000, 8, 6000, 6000, kRandom, false);
  ec_case(5000, 3, 5000, 1, kAllEqual, false);
  ec_case(4100, 2, 4100, 37, kRandom); /* just past the limit, against the reference kernel too */
}

TEST_CASE(zero_tokens_writes_offsets_and_uncovered) {
  for (int ref : {0, 1}) {
    moe4j_cuda_use_reference_kernels(ref);
    gpu::DeviceBuffer<int64_t> off(std::vector<int64_t>(5, 9)), unc(std::vector<int64_t>(1, 9));
    CHECK_STATUS(moe4j_cuda_route_expert_choice(nullptr, 0, 4, 8, 3, off.ptr, nullptr, nullptr, nullptr, unc.ptr, nullptr),
                 MOE4J_OK);
    gpu::sync();
    CHECK(same_bytes(off.download(), std::vector<int64_t>(5, 0)));
    CHECK(unc.download()[0] == 0);
  }
  moe4j_cuda_use_reference_kernels(0);
}

GPU_TEST_MAIN("gpu_expert_choice")
