/* Inputs of the routing tests, shared by the GPU tests (kernels/tests/test_routing.cpp,
 * test_expert_choice.cpp) and the warp-emulator test (native/tests/test_routing_emulated.cpp), so
 * the kernels see the same edge cases on both. */
#pragma once
#include <math.h>
#include <stdint.h>

#include <vector>

#include "check.h"
#include "moe4j.h"

namespace routing_inputs {

/* Router logits with a spread of magnitudes and some -inf (masked experts), never a whole row
 * (an all -inf row is NaN on both sides, but x86 and the GPU spell NaN with different bits). */
inline std::vector<float> router_logits(int64_t tokens, int64_t experts, uint64_t seed) {
  auto v = check::randn(tokens * experts, seed, 2.0f);
  for (int64_t i = 0; i < tokens * experts; i += 37)
    if (i % experts != 0) v[i] = -INFINITY;
  return v;
}

enum ScoreKind { kRandom, kTied, kAllEqual, kSpecial };

/* Softmax scores of randn(scale) logits; kTied quantizes every third token to 1/8 steps (top-k,
 * capacity and Expert Choice meet exact ties), kAllEqual makes every score 0.25, kSpecial
 * sprinkles NaN, -0, +0 and -inf. */
inline std::vector<float> scores(int64_t tokens, int64_t experts, uint64_t seed, ScoreKind kind,
                                 float scale = 1.0f) {
  std::vector<float> s(tokens * experts);
  const auto logits = check::randn(tokens * experts, seed, scale);
  CHECK_STATUS(moe4j_cpu_router_scores(logits.data(), s.data(), tokens, experts, 0), MOE4J_OK);
  if (kind == kTied)
    for (int64_t t = 0; t < tokens; t += 3)
      for (int64_t e = 0; e < experts; e++) s[t * experts + e] = floorf(s[t * experts + e] * 8.0f) / 8.0f;
  if (kind == kAllEqual)
    for (float &x : s) x = 0.25f;
  if (kind == kSpecial) {
    const float special[] = {NAN, -0.0f, 0.0f, -INFINITY, NAN};
    for (int64_t i = 0; i < tokens * experts; i += 5) s[i] = special[(i / 5) % 5];
  }
  return s;
}

/* Scores with ties (kTied, unit logits), the inputs of the top-k and plan tests. */
inline std::vector<float> tied_scores(int64_t tokens, int64_t experts, uint64_t seed) {
  return scores(tokens, experts, seed, kTied);
}

}  // namespace routing_inputs
