/* Library identity, build flags, SIMD level, threads, and 64-byte-aligned host memory. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_common.h"

#ifndef MOE4J_VERSION
#define MOE4J_VERSION "0.0.0"
#endif
#ifndef MOE4J_CXX_FLAGS
#define MOE4J_CXX_FLAGS ""
#endif

using namespace moe4j;

extern "C" {

const char *moe4j_last_error(void) { return last_error_message(); }

const char *moe4j_cpu_build_info(void) {
  return "version=" MOE4J_VERSION ";compiler=gcc " __VERSION__ ";flags=" MOE4J_CXX_FLAGS
         ";simd_variants=x86-64-v4(avx512),x86-64-v3(avx2+fma),baseline;openmp=" MOE4J_STR(_OPENMP);
}

const char *moe4j_cpu_simd_level(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "avx512";
  if (__builtin_cpu_supports("x86-64-v3")) return "avx2";
  return "baseline";
}

int32_t moe4j_cpu_num_threads(void) { return omp_get_max_threads(); }

int32_t moe4j_cpu_noop(void) { return MOE4J_OK; }

int32_t moe4j_cpu_alloc(int64_t bytes, int64_t *out_address) {
  ArgCheck a("moe4j_cpu_alloc");
  a.non_negative("bytes", bytes).buffer("out_address", out_address, 1, MOE4J_DTYPE_I64);
  if (a.failed()) return a.status();
  *out_address = 0;
  if (bytes == 0) return MOE4J_OK;
  size_t rounded = ((size_t)bytes + 63u) & ~(size_t)63u;
  void *p = aligned_alloc(64, rounded);
  if (p == nullptr)
    return fail(MOE4J_ERR_OUT_OF_MEMORY, "moe4j_cpu_alloc: out of host memory allocating %lld bytes",
                (long long)bytes);
  *out_address = (int64_t)(uintptr_t)p;
  return MOE4J_OK;
}

int32_t moe4j_cpu_free(void *ptr) {
  clear_error();
  free(ptr);
  return MOE4J_OK;
}

int32_t moe4j_cpu_memset_zero(void *ptr, int64_t bytes) {
  ArgCheck a("moe4j_cpu_memset_zero");
  a.non_negative("bytes", bytes).buffer("ptr", ptr, bytes, MOE4J_DTYPE_U8);
  if (a.failed()) return a.status();
  if (bytes > 0) memset(ptr, 0, (size_t)bytes);
  return MOE4J_OK;
}

}  // extern "C"
