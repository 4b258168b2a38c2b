/*
 * Shared pieces of the CPU twins.
 *
 * SIMD: hot inner loops are compiled three times (x86-64-v4 = AVX-512, x86-64-v3 = AVX2+FMA, and
 * the portable baseline) with GCC target_clones; the loader picks the variant for the running CPU
 * once (ifunc), so the shipped library never assumes -march=native. OpenMP parallel regions live
 * in plain functions and call the cloned per-row / per-chunk loops.
 *
 * Reductions that must be deterministic accumulate into a fixed number of lanes (kLanes) combined in
 * a fixed order, so the result does not depend on the SIMD variant or the thread count.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "../../kernels/common/numerics.h"
#include "moe4j.h"
#include "status.h"

#define MOE4J_STR2(x) #x
#define MOE4J_STR(x) MOE4J_STR2(x)

#define MOE4J_SIMD_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

namespace moe4j {

constexpr int kLanes = 16;

/* Elements per parallel chunk for streaming element-wise loops (64 KiB of f32). */
constexpr int64_t kChunk = 16384;

/* Calls fn(dtype-typed pointer cast) for F32/BF16: dispatch a template on the runtime dtype. */
template <typename F>
void dispatch_float(int32_t dtype, F &&fn) {
  if (dtype == MOE4J_DTYPE_BF16) {
    fn(bf16_t{});
  } else {
    fn(float{});
  }
}

}  // namespace moe4j
