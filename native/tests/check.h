/*
 * Minimal test harness for the native tests (no external framework: a fresh machine must build
 * them from this repository alone). Each test file is one executable registered with CTest.
 *   TEST_CASE(name) { CHECK(cond); CHECK_CLOSE(a, b, tol); CHECK_STATUS(call, MOE4J_OK); }
 * Exit code 0 = pass, 1 = failures, 77 = skipped (CTest SKIP_RETURN_CODE).
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#ifndef CHECK_LAST_ERROR
#define CHECK_LAST_ERROR moe4j_last_error
#endif

namespace check {

struct Registry {
  std::vector<std::pair<const char *, std::function<void()>>> tests;
  int failures = 0;
  static Registry &get() {
    static Registry r;
    return r;
  }
};

struct Register {
  Register(const char *name, std::function<void()> fn) {
    Registry::get().tests.emplace_back(name, std::move(fn));
  }
};

inline void report(const char *file, int line, const std::string &what) {
  Registry::get().failures++;
  if (Registry::get().failures <= 50) fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, what.c_str());
}

inline int run_all(const char *suite) {
  auto &r = Registry::get();
  int failed_tests = 0;
  for (auto &t : r.tests) {
    int before = r.failures;
    t.second();
    bool ok = r.failures == before;
    if (!ok) failed_tests++;
    printf("[%s] %s %s\n", ok ? " OK " : "FAIL", suite, t.first);
  }
  printf("%s: %d passed, %d failed\n", suite, (int)r.tests.size() - failed_tests, failed_tests);
  return failed_tests == 0 ? 0 : 1;
}

/* Deterministic random data. */
inline std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto &x : v) x = d(g);
  return v;
}

/* max |a - b| / max(|b|, floor) over arrays; returns worst index in *where. */
inline double max_rel_err(const float *a, const double *b, size_t n, double floor, size_t *where) {
  double worst = 0;
  *where = 0;
  for (size_t i = 0; i < n; i++) {
    double denom = fabs(b[i]) > floor ? fabs(b[i]) : floor;
    double e = fabs((double)a[i] - b[i]) / denom;
    if (!(e <= worst)) {
      worst = e;
      *where = i;
    }
  }
  return worst;
}

}  // namespace check

#define CHECK_CAT2(a, b) a##b
#define CHECK_CAT(a, b) CHECK_CAT2(a, b)
#define TEST_CASE(name)                                                          \
  static void name();                                                            \
  static check::Register CHECK_CAT(register_, name)(#name, name);                \
  static void name()

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) check::report(__FILE__, __LINE__, "CHECK(" #cond ")");         \
  } while (0)

#define CHECK_STATUS(call, expected)                                             \
  do {                                                                           \
    int32_t s_ = (call);                                                         \
    if (s_ != (expected)) {                                                      \
      check::report(__FILE__, __LINE__,                                          \
                    std::string(#call " returned ") + std::to_string(s_) +      \
                        " expected " + std::to_string(expected) + ": " + CHECK_LAST_ERROR()); \
    }                                                                            \
  } while (0)

/* Checks that a call fails with `code` and that the message mentions `needle`. */
#define CHECK_FAILS(call, code, needle)                                          \
  do {                                                                           \
    int32_t s_ = (call);                                                         \
    std::string m_ = CHECK_LAST_ERROR();                                         \
    if (s_ != (code) || m_.find(needle) == std::string::npos)                    \
      check::report(__FILE__, __LINE__, std::string(#call " gave ") + std::to_string(s_) + \
                                            " '" + m_ + "', expected code " +   \
                                            std::to_string(code) + " mentioning '" + needle + "'"); \
  } while (0)

#define CHECK_CLOSE(actual, expected, tol)                                       \
  do {                                                                           \
    double a_ = (actual), e_ = (expected);                                       \
    if (!(fabs(a_ - e_) <= (tol))) {                                             \
      char b_[256];                                                              \
      snprintf(b_, sizeof b_, "%s = %.9g, expected %.9g (tol %.3g)", #actual, a_, e_, (double)(tol)); \
      check::report(__FILE__, __LINE__, b_);                                     \
    }                                                                            \
  } while (0)

#define TEST_MAIN(suite) \
  int main() { return check::run_all(suite); }
