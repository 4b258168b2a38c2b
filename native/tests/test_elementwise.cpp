/* add / scale / copy / cast against fp64 references, odd sizes, and bad arguments. */
#include <string.h>

#include "check.h"
#include "cpu_common.h"

using namespace moe4j;

static const int64_t kSizes[] = {0, 1, 7, 31, 16383, 16384, 16385, 100003};

TEST_CASE(add_and_scale_f32_match_fp64) {
  for (int64_t n : kSizes) {
    auto a = check::randn(n, 1), b = check::randn(n, 2);
    std::vector<float> out(n + 1, -7.0f);
    CHECK_STATUS(moe4j_cpu_add(MOE4J_DTYPE_F32, a.data(), b.data(), out.data(), n), MOE4J_OK);
    for (int64_t i = 0; i < n; i++) CHECK_CLOSE(out[i], (double)a[i] + (double)b[i], 1e-6 * (fabs(a[i]) + fabs(b[i])) + 1e-30);
    CHECK(out[n] == -7.0f); /* nothing written past the end */
    CHECK_STATUS(moe4j_cpu_scale(MOE4J_DTYPE_F32, a.data(), out.data(), n, -2.5f), MOE4J_OK);
    for (int64_t i = 0; i < n; i++) CHECK(out[i] == -2.5f * a[i]); /* one rounding: exact */
  }
}

TEST_CASE(add_bf16_rounds_once_from_f32_sum) {
  int64_t n = 1001;
  auto a = check::randn(n, 3), b = check::randn(n, 4);
  std::vector<bf16_t> ab(n), bb(n), out(n);
  for (int64_t i = 0; i < n; i++) {
    ab[i] = from_f32<bf16_t>(a[i]);
    bb[i] = from_f32<bf16_t>(b[i]);
  }
  CHECK_STATUS(moe4j_cpu_add(MOE4J_DTYPE_BF16, ab.data(), bb.data(), out.data(), n), MOE4J_OK);
  for (int64_t i = 0; i < n; i++) {
    double exact = (double)to_f32(ab[i]) + (double)to_f32(bb[i]);
    /* round to nearest: error at most half a bf16 ulp (2^-8 relative) */
    CHECK_CLOSE(to_f32(out[i]), exact, fabs(exact) * (1.0 / 256) + 1e-30);
  }
}

TEST_CASE(bf16_rounding_is_nearest_even_and_keeps_nan) {
  /* 1 + 2^-8 is exactly halfway between bf16 1.0 and 1 + 2^-7: ties to even -> 1.0 */
  CHECK(f32_to_bf16_bits(1.0f + 1.0f / 256) == 0x3f80);
  /* 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even) -> 1+2^-6 */
  CHECK(f32_to_bf16_bits(1.0f + 3.0f / 256) == 0x3f82);
  CHECK(f32_to_bf16_bits(1.0f + 1.0f / 256 + 1.0f / 65536) == 0x3f81); /* above the tie: up */
  CHECK(isnan(bf16_bits_to_f32(f32_to_bf16_bits(NAN))));
  CHECK(isnan(bf16_bits_to_f32(f32_to_bf16_bits(f32_from_bits(0x7f800001u))))); /* low-payload NaN */
  CHECK(bf16_bits_to_f32(f32_to_bf16_bits(INFINITY)) == INFINITY);
}

TEST_CASE(f16_round_trip_and_edges) {
  CHECK(f32_to_f16_bits(1.0f) == 0x3c00);
  CHECK(f32_to_f16_bits(65504.0f) == 0x7bff);
  CHECK(f32_to_f16_bits(65520.0f) == 0x7c00);                    /* rounds to inf */
  CHECK(f32_to_f16_bits(5.9604645e-08f) == 0x0001);              /* smallest subnormal */
  CHECK(f32_to_f16_bits(2.9802322e-08f) == 0x0000);              /* half of it: tie to even 0 */
  CHECK(f32_to_f16_bits(1.0f + 1.0f / 2048) == 0x3c00);          /* tie to even */
  CHECK(isnan(f16_bits_to_f32(f32_to_f16_bits(NAN))));
  for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive half round-trips exactly */
    CHECK(f32_to_f16_bits(f16_bits_to_f32((uint16_t)h)) == h);
}

TEST_CASE(cast_between_float_dtypes) {
  int64_t n = 16385 + 3;
  auto x = check::randn(n, 5, 100.0f);
  std::vector<bf16_t> b(n);
  std::vector<f16_t> h(n);
  std::vector<float> back(n);
  CHECK_STATUS(moe4j_cpu_cast(MOE4J_DTYPE_F32, x.data(), MOE4J_DTYPE_BF16, b.data(), n), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_cast(MOE4J_DTYPE_BF16, b.data(), MOE4J_DTYPE_F16, h.data(), n), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_cast(MOE4J_DTYPE_F16, h.data(), MOE4J_DTYPE_F32, back.data(), n), MOE4J_OK);
  for (int64_t i = 0; i < n; i++) {
    CHECK(b[i].bits == f32_to_bf16_bits(x[i]));
    CHECK(h[i].bits == f32_to_f16_bits(to_f32(b[i])));
    CHECK(back[i] == f16_bits_to_f32(h[i].bits));
  }
}

TEST_CASE(copy_bytes) {
  std::vector<uint8_t> s(100003), d(100003, 0);
  for (size_t i = 0; i < s.size(); i++) s[i] = (uint8_t)(i * 31);
  CHECK_STATUS(moe4j_cpu_copy(s.data(), d.data(), (int64_t)s.size()), MOE4J_OK);
  CHECK(memcmp(s.data(), d.data(), s.size()) == 0);
}

TEST_CASE(bad_arguments_are_reported_not_fatal) {
  float a[4] = {0}, out[4];
  CHECK_FAILS(moe4j_cpu_add(MOE4J_DTYPE_I32, a, a, out, 4), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got I32");
  CHECK_FAILS(moe4j_cpu_add(MOE4J_DTYPE_F32, nullptr, a, out, 4), MOE4J_ERR_INVALID_ARGUMENT, "a is NULL");
  CHECK_FAILS(moe4j_cpu_add(MOE4J_DTYPE_F32, a, a, out, -1), MOE4J_ERR_INVALID_ARGUMENT, "n must be >= 0, got -1");
  CHECK_FAILS(moe4j_cpu_add(MOE4J_DTYPE_F32, a, a, out, INT64_MAX), MOE4J_ERR_INVALID_ARGUMENT, "overflows");
  CHECK_FAILS(moe4j_cpu_add(MOE4J_DTYPE_F32, (char *)a + 1, a, out, 2), MOE4J_ERR_INVALID_ARGUMENT, "aligned");
  CHECK_FAILS(moe4j_cpu_scale(MOE4J_DTYPE_F32, a, out, 4, NAN), MOE4J_ERR_INVALID_ARGUMENT, "alpha must be finite");
  CHECK_FAILS(moe4j_cpu_copy(a, a + 1, 8), MOE4J_ERR_INVALID_ARGUMENT, "overlap");
  CHECK_FAILS(moe4j_cpu_cast(MOE4J_DTYPE_U8, a, MOE4J_DTYPE_F32, out, 4), MOE4J_ERR_UNSUPPORTED, "src_dtype");
  CHECK_FAILS(moe4j_cpu_cast(MOE4J_DTYPE_F32, a, 99, out, 4), MOE4J_ERR_UNSUPPORTED, "unknown");
  CHECK_FAILS(moe4j_cpu_alloc(-5, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "bytes must be >= 0");
  CHECK_FAILS(moe4j_cpu_memset_zero(nullptr, 10), MOE4J_ERR_INVALID_ARGUMENT, "ptr is NULL");
  double gflops = 0;
  CHECK_FAILS(moe4j_cpu_measure_fma_peak(0.0, &gflops), MOE4J_ERR_INVALID_ARGUMENT, "seconds must be in (0, 60]");
  CHECK_FAILS(moe4j_cpu_measure_fma_peak(0.01, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "out_gflops is NULL");
  CHECK_STATUS(moe4j_cpu_measure_fma_peak(0.01, &gflops), MOE4J_OK);
  CHECK(gflops > 0.1);
  /* empty calls with NULL buffers are fine and clear the message */
  CHECK_STATUS(moe4j_cpu_add(MOE4J_DTYPE_F32, nullptr, nullptr, nullptr, 0), MOE4J_OK);
  CHECK(moe4j_last_error()[0] == '\0');
}

TEST_CASE(alloc_is_64_byte_aligned) {
  int64_t addr = 0;
  CHECK_STATUS(moe4j_cpu_alloc(1000, &addr), MOE4J_OK);
  CHECK(addr != 0 && addr % 64 == 0);
  CHECK_STATUS(moe4j_cpu_memset_zero((void *)addr, 1000), MOE4J_OK);
  CHECK(((uint8_t *)addr)[999] == 0);
  CHECK_STATUS(moe4j_cpu_free((void *)addr), MOE4J_OK);
}

TEST_MAIN("elementwise")
