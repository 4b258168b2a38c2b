/*
 * The device code of the embedding lookup and its backward (see kernels/embedding.cu for what,
 * layouts and why), in a header so a CPU test can run the very same kernels under a warp emulator
 * (native/tests/test_embedding_emulated.cpp). The includer provides the CUDA builtins:
 * embedding.cu includes cuda_check.cuh, the emulation test native/tests/warp_emulator.h.
 * Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "hd.h"
#include "numerics.h"

namespace moe4j {

namespace {

constexpr int kForwardThreads = 256;  /* 8 warps, one id row each */
constexpr int kBackwardThreads = 256; /* 8 warps, one work item each */
constexpr int kBackwardCols = 4;      /* columns per lane: 4 independent loads in flight */
constexpr int kBackwardTile = 32 * kBackwardCols;
constexpr int kBackwardWarpsPerSm = 32; /* work items aimed for per SM */

/* U: copy unit (uint4, uint32_t or uint16_t); units = row width in units. */
template <typename U>
__global__ void __launch_bounds__(kForwardThreads)
embedding_forward_kernel(const U *__restrict__ table, const int32_t *__restrict__ ids,
                         U *__restrict__ out, int64_t num_ids, int64_t vocab, int64_t units) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t i = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); i < num_ids;
       i += warps) {
    const int64_t id = ids[i];
    U *dst = out + i * units;
    if (id >= 0 && id < vocab) {
      const U *src = table + id * units;
      for (int64_t c = lane; c < units; c += 32) dst[c] = src[c];
    } else {
      for (int64_t c = lane; c < units; c += 32) dst[c] = U{};
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kBackwardThreads)
embedding_backward_kernel(const T *__restrict__ dout, const int32_t *__restrict__ ids,
                          float *__restrict__ dtable, int64_t num_ids, int64_t dim,
                          int64_t vocab, int64_t col_tiles, int64_t rows_per_part,
                          int64_t items) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t item = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); item < items;
       item += warps) {
    const int64_t c0 = (item % col_tiles) * kBackwardTile + lane;
    const int64_t v0 = (item / col_tiles) * rows_per_part;
    const int64_t v1 = v0 + rows_per_part < vocab ? v0 + rows_per_part : vocab;
    int64_t current = -1; /* dtable row held in acc */
    float acc[kBackwardCols];
    for (int k = 0; k < kBackwardCols; k++) acc[k] = 0.0f;
    for (int64_t base = 0; base < num_ids; base += 32) {
      const int32_t id = base + lane < num_ids ? ids[base + lane] : -1;
      unsigned int mask = __ballot_sync(0xffffffffu, id >= v0 && id < v1);
      while (mask != 0u) {
        const int j = __ffs(mask) - 1;
        mask &= mask - 1u;
        const int64_t row = __shfl_sync(0xffffffffu, id, j); /* the warp's common row */
        if (row != current) {
          if (current >= 0) {
MOE4J_UNROLL
            for (int k = 0; k < kBackwardCols; k++)
              if (c0 + 32 * k < dim) dtable[current * dim + c0 + 32 * k] = acc[k];
          }
MOE4J_UNROLL
          for (int k = 0; k < kBackwardCols; k++)
            if (c0 + 32 * k < dim) acc[k] = dtable[row * dim + c0 + 32 * k];
          current = row;
        }
        const T *g = dout + (base + j) * dim;
MOE4J_UNROLL
        for (int k = 0; k < kBackwardCols; k++)
          if (c0 + 32 * k < dim) acc[k] += to_f32(g[c0 + 32 * k]);
      }
    }
    if (current >= 0) {
MOE4J_UNROLL
      for (int k = 0; k < kBackwardCols; k++)
        if (c0 + 32 * k < dim) dtable[current * dim + c0 + 32 * k] = acc[k];
    }
  }
}

/* Reference: a thread per column, every id in order, read-modify-write in global memory. */
template <typename T>
__global__ void embedding_backward_ref(const T *dout, const int32_t *ids, float *dtable,
                                       int64_t num_ids, int64_t dim, int64_t vocab) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= dim) return;
  for (int64_t i = 0; i < num_ids; i++) {
    const int64_t id = ids[i];
    if (id >= 0 && id < vocab) dtable[id * dim + c] += to_f32(dout[i * dim + c]);
  }
}

}  // namespace

}  // namespace moe4j
