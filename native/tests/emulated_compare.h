/* Comparison helpers of the warp-emulator tests of the small op families
 * (test_<op>_emulated.cpp): storage decoding, bitwise and tolerance checks that report the first
 * mismatch. */
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vector>

#include "check.h"
#include "moe4j.h"
#include "numerics.h"

namespace emulated_compare {

using moe4j::bf16_bits_to_f32;
using moe4j::f32_to_bf16_bits;

constexpr int32_t F32 = MOE4J_DTYPE_F32, BF16 = MOE4J_DTYPE_BF16;

template <typename S> double val(S s);
template <> inline double val<float>(float s) { return s; }
template <> inline double val<uint16_t>(uint16_t s) { return bf16_bits_to_f32(s); }

template <typename S>
std::vector<S> encode(const std::vector<float> &v) {
  std::vector<S> out(v.size());
  for (size_t i = 0; i < v.size(); i++) {
    if constexpr (sizeof(S) == 2) out[i] = f32_to_bf16_bits(v[i]);
    else out[i] = v[i];
  }
  return out;
}

template <typename T>
bool same_bytes(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

/* |got - want| <= rel * |want| + abs, plus one bf16 ulp (2^-7 relative) for bf16 storage. */
template <typename S>
bool close(const std::vector<S> &got, const std::vector<S> &want, double rel, double abs) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); i++) {
    const double g = val(got[i]), w = val(want[i]);
    if (isnan(w) ? !isnan(g) : !(fabs(g - w) <= rel * fabs(w) + abs + (sizeof(S) == 2 ? fabs(w) / 128 : 0.0))) {
      fprintf(stderr, "      [%zu] got %.9g want %.9g\n", i, g, w);
      return false;
    }
  }
  return true;
}

inline void expect(bool ok, const char *file, int line, const char *what, long long a, long long b) {
  if (ok) return;
  char msg[200];
  snprintf(msg, sizeof msg, "%s differs from the CPU twin at sizes %lld, %lld", what, a, b);
  check::report(file, line, msg);
}

}  // namespace emulated_compare

#define EXPECT(cond, what, a, b) emulated_compare::expect((cond), __FILE__, __LINE__, what, a, b)
