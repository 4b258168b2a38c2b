/*
 * The device code of RMSNorm (forward, dx, dweight, reference kernels) (see kernels/rmsnorm.cu for
 * what, layouts and why), in a header so a CPU test can run the very same kernels under a warp
 * emulator (native/tests/test_rmsnorm_emulated.cpp). The includer provides the CUDA builtins:
 * rmsnorm.cu includes cuda_check.cuh, the emulation test native/tests/warp_emulator.h.
 * Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "hd.h"
#include "numerics.h"
#include "rmsnorm_math.h"
#include "warp_reduce.cuh"

namespace moe4j {

namespace {

constexpr int kRmsThreads = 256;
constexpr int64_t kRmsWarpRowMaxCols = 1024; /* above: one block per row */
constexpr int kDweightCols = 32;             /* columns per dweight block (one warp wide) */
constexpr int kDweightRowGroups = 16;        /* thread rows per dweight block */
constexpr int kRefThreads = 128;

/* V elements of T moved as one aligned vector (16 bytes when V = 16 / sizeof(T)). */
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

/* 16-byte packs move as uint4 (stores through __stwb) so nvcc keeps 128-bit accesses: a plain
 * struct store was split into four scalar stores in the unrolled loop. */
template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const T *p) {
  Pack<T, V> v;
  if constexpr (sizeof(Pack<T, V>) == 16) {
    uint4 u = *reinterpret_cast<const uint4 *>(p);
    memcpy(&v, &u, 16);
  } else {
    v = *reinterpret_cast<const Pack<T, V> *>(p);
  }
  return v;
}

template <typename T, int V>
__device__ __forceinline__ void store_pack(T *p, const Pack<T, V> &v) {
  if constexpr (sizeof(Pack<T, V>) == 16) {
    uint4 u;
    memcpy(&u, &v, 16);
    __stwb(reinterpret_cast<uint4 *>(p), u);
  } else {
    *reinterpret_cast<Pack<T, V> *>(p) = v;
  }
}

/* Sum over a row group of TPR threads (a warp, or the whole block); all threads get it. */
template <int TPR>
__device__ __forceinline__ float row_group_sum(float v, float *scratch) {
  if constexpr (TPR == 32) return warp_sum(v);
  else return block_sum(v, scratch);
}

template <typename T, int V, int TPR>
__global__ void __launch_bounds__(kRmsThreads)
rmsnorm_forward_kernel(const T *__restrict__ x, const T *__restrict__ weight, T *__restrict__ y,
                       float *__restrict__ rstd, int64_t rows, int64_t cols, float eps) {
  MOE4J_STATIC_SHARED float scratch[32];
  constexpr int kGroups = kRmsThreads / TPR;
  const int t = threadIdx.x % TPR;
  /* r is uniform over the row group, so the reductions see all of its threads */
  for (int64_t r = (int64_t)blockIdx.x * kGroups + threadIdx.x / TPR; r < rows;
       r += (int64_t)gridDim.x * kGroups) {
    const T *xr = x + r * cols;
    float sum = 0.0f;
    for (int64_t c = (int64_t)t * V; c < cols; c += TPR * V) {
      Pack<T, V> xv = load_pack<T, V>(xr + c);
MOE4J_UNROLL
      for (int j = 0; j < V; j++) {
        float v = to_f32(xv.v[j]);
        sum += v * v;
      }
    }
    const float rs = rmsnorm_rstd(row_group_sum<TPR>(sum, scratch), cols, eps);
    if (rstd != nullptr && t == 0) rstd[r] = rs;
    T *yr = y + r * cols;
    for (int64_t c = (int64_t)t * V; c < cols; c += TPR * V) {
      Pack<T, V> xv = load_pack<T, V>(xr + c), wv = load_pack<T, V>(weight + c), out;
MOE4J_UNROLL
      for (int j = 0; j < V; j++) out.v[j] = from_f32<T>(rmsnorm_y(to_f32(xv.v[j]), rs, to_f32(wv.v[j])));
      store_pack<T, V>(yr + c, out);
    }
  }
}

template <typename T, int V, int TPR>
__global__ void __launch_bounds__(kRmsThreads)
rmsnorm_backward_dx_kernel(const T *__restrict__ dy, const T *__restrict__ x,
                           const T *__restrict__ weight, const float *__restrict__ rstd,
                           T *__restrict__ dx, int64_t rows, int64_t cols) {
  MOE4J_STATIC_SHARED float scratch[32];
  constexpr int kGroups = kRmsThreads / TPR;
  const int t = threadIdx.x % TPR;
  for (int64_t r = (int64_t)blockIdx.x * kGroups + threadIdx.x / TPR; r < rows;
       r += (int64_t)gridDim.x * kGroups) {
    const T *dyr = dy + r * cols, *xr = x + r * cols;
    float sum = 0.0f;
    for (int64_t c = (int64_t)t * V; c < cols; c += TPR * V) {
      Pack<T, V> dv = load_pack<T, V>(dyr + c), xv = load_pack<T, V>(xr + c),
                 wv = load_pack<T, V>(weight + c);
MOE4J_UNROLL
      for (int j = 0; j < V; j++) sum += rmsnorm_gx(to_f32(dv.v[j]), to_f32(xv.v[j]), to_f32(wv.v[j]));
    }
    const float rs = rstd[r];
    const float coef = rmsnorm_dx_coef(row_group_sum<TPR>(sum, scratch), cols, rs);
    T *dxr = dx + r * cols;
    for (int64_t c = (int64_t)t * V; c < cols; c += TPR * V) {
      Pack<T, V> dv = load_pack<T, V>(dyr + c), xv = load_pack<T, V>(xr + c),
                 wv = load_pack<T, V>(weight + c), out;
MOE4J_UNROLL
      for (int j = 0; j < V; j++)
        out.v[j] = from_f32<T>(rmsnorm_dx(to_f32(dv.v[j]), to_f32(xv.v[j]), to_f32(wv.v[j]), rs, coef));
      store_pack<T, V>(dxr + c, out);
    }
  }
}

/* blockDim (kDweightCols, kDweightRowGroups); grid-stride over 32-column tiles. */
template <typename T>
__global__ void __launch_bounds__(kDweightCols * kDweightRowGroups)
rmsnorm_dweight_kernel(const T *__restrict__ dy, const T *__restrict__ x,
                       const float *__restrict__ rstd, float *__restrict__ dweight, int64_t rows,
                       int64_t cols, int64_t block_rows, int64_t blocks, int32_t accumulate) {
  MOE4J_STATIC_SHARED float partial[kRmsMaxRowBlocks][kDweightCols];
  const int64_t tiles = (cols + kDweightCols - 1) / kDweightCols;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t c = tile * kDweightCols + threadIdx.x;
    if (c < cols) {
      for (int64_t b = threadIdx.y; b < blocks; b += kDweightRowGroups) {
        const int64_t r0 = b * block_rows, r1 = r0 + block_rows < rows ? r0 + block_rows : rows;
        float p = 0.0f;
MOE4J_UNROLL_N(4)
        for (int64_t r = r0; r < r1; r++)
          p = add_rn(p, rmsnorm_dweight_term(to_f32(dy[r * cols + c]), to_f32(x[r * cols + c]), rstd[r]));
        partial[b][threadIdx.x] = p;
      }
    }
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
      float total = 0.0f;
      for (int64_t b = 0; b < blocks; b++) total = add_rn(total, partial[b][threadIdx.x]);
      dweight[c] = accumulate ? add_rn(dweight[c], total) : total;
    }
    __syncthreads(); /* partial is reused by the next tile */
  }
}

/* ---- reference kernels: the CPU twin's code, one thread per row / column ---- */

template <typename T>
__global__ void rmsnorm_forward_ref(const T *x, const T *weight, T *y, float *rstd, int64_t rows,
                                    int64_t cols, float eps) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows;
       r += (int64_t)gridDim.x * blockDim.x) {
    float rs = rmsnorm_rstd(rmsnorm_row_sum_squares(x + r * cols, cols), cols, eps);
    if (rstd != nullptr) rstd[r] = rs;
    rmsnorm_row_forward(x + r * cols, weight, y + r * cols, cols, rs);
  }
}

template <typename T>
__global__ void rmsnorm_backward_ref(const T *dy, const T *x, const T *weight, const float *rstd,
                                     T *dx, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows;
       r += (int64_t)gridDim.x * blockDim.x) {
    const T *dyr = dy + r * cols, *xr = x + r * cols;
    float coef = rmsnorm_dx_coef(rmsnorm_row_sum_gx(dyr, xr, weight, cols), cols, rstd[r]);
    rmsnorm_row_dx(dyr, xr, weight, dx + r * cols, cols, rstd[r], coef);
  }
}

template <typename T>
__global__ void rmsnorm_dweight_ref(const T *dy, const T *x, const float *rstd, float *dweight,
                                    int64_t rows, int64_t cols, int64_t block_rows,
                                    int32_t accumulate) {
  for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < cols;
       c += (int64_t)gridDim.x * blockDim.x) {
    float total = 0.0f;
    for (int64_t r0 = 0; r0 < rows; r0 += block_rows) {
      float p = 0.0f;
      for (int64_t r = r0; r < r0 + block_rows && r < rows; r++)
        p = add_rn(p, rmsnorm_dweight_term(to_f32(dy[r * cols + c]), to_f32(x[r * cols + c]), rstd[r]));
      total = add_rn(total, p);
    }
    dweight[c] = accumulate ? add_rn(dweight[c], total) : total;
  }
}

}  // namespace

}  // namespace moe4j
