/*
 * CPU twins of the element-wise kernels: add, scale, copy, dtype casts.
 * Streaming loops split into kChunk-element pieces over OpenMP threads; each piece runs a
 * SIMD-cloned loop. bf16/f16 results are rounded to nearest even by the shared numerics header.
 */
#include <string.h>

#include "cpu_common.h"
#include "op_args.h"

using namespace moe4j;

namespace {

template <typename T>
MOE4J_SIMD_CLONES void add_chunk(const T *a, const T *b, T *out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
}

template <typename T>
MOE4J_SIMD_CLONES void scale_chunk(const T *x, T *out, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; i++) out[i] = from_f32<T>(alpha * to_f32(x[i]));
}

template <typename S, typename D>
MOE4J_SIMD_CLONES void cast_chunk(const S *src, D *dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = from_f32<D>(to_f32(src[i]));
}

/* Runs body(start, count) over [0, n) in kChunk pieces on all threads. */
template <typename Body>
void parallel_chunks(int64_t n, Body body) {
  int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; c++) {
    int64_t start = c * kChunk;
    int64_t count = n - start < kChunk ? n - start : kChunk;
    body(start, count);
  }
}

template <typename S>
void cast_from(const S *src, int32_t dst_dtype, void *dst, int64_t n) {
  parallel_chunks(n, [&](int64_t s, int64_t c) {
    switch (dst_dtype) {
      case MOE4J_DTYPE_F32: cast_chunk(src + s, (float *)dst + s, c); break;
      case MOE4J_DTYPE_BF16: cast_chunk(src + s, (bf16_t *)dst + s, c); break;
      default: cast_chunk(src + s, (f16_t *)dst + s, c); break;
    }
  });
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_add(int32_t dtype, const void *a, const void *b, void *out, int64_t n) {
  ArgCheck chk("moe4j_cpu_add");
  check_add(chk, dtype, a, b, out, n);
  if (chk.failed()) return chk.status();
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_chunks(n, [&](int64_t s, int64_t c) {
      add_chunk((const T *)a + s, (const T *)b + s, (T *)out + s, c);
    });
  });
  return MOE4J_OK;
}

int32_t moe4j_cpu_scale(int32_t dtype, const void *x, void *out, int64_t n, float alpha) {
  ArgCheck chk("moe4j_cpu_scale");
  check_scale(chk, dtype, x, out, n, alpha);
  if (chk.failed()) return chk.status();
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_chunks(n, [&](int64_t s, int64_t c) {
      scale_chunk((const T *)x + s, (T *)out + s, c, alpha);
    });
  });
  return MOE4J_OK;
}

int32_t moe4j_cpu_copy(const void *src, void *dst, int64_t bytes) {
  ArgCheck chk("moe4j_cpu_copy");
  check_copy(chk, src, dst, bytes);
  if (chk.failed()) return chk.status();
  parallel_chunks(bytes, [&](int64_t s, int64_t c) {
    memcpy((char *)dst + s, (const char *)src + s, (size_t)c);
  });
  return MOE4J_OK;
}

int32_t moe4j_cpu_cast(int32_t src_dtype, const void *src, int32_t dst_dtype, void *dst,
                       int64_t n) {
  ArgCheck chk("moe4j_cpu_cast");
  check_cast(chk, src_dtype, src, dst_dtype, dst, n);
  if (chk.failed()) return chk.status();
  switch (src_dtype) {
    case MOE4J_DTYPE_F32: cast_from((const float *)src, dst_dtype, dst, n); break;
    case MOE4J_DTYPE_BF16: cast_from((const bf16_t *)src, dst_dtype, dst, n); break;
    default: cast_from((const f16_t *)src, dst_dtype, dst, n); break;
  }
  return MOE4J_OK;
}

}  // extern "C"
