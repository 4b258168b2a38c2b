/*
 * RMSNorm over the last dim, forward and backward. Storage F32 or BF16, math in f32, one rounding
 * on store. CPU twin: native/src/cpu_rmsnorm.cpp; shared row math: common/rmsnorm_math.h.
 *
 * Layout: x, y, dy, dx [rows, cols] row-major in dtype; weight [cols] in dtype; rstd [rows] F32;
 * dweight [cols] F32.
 *
 * Forward and dx (optimized): a row group of TPR threads per row — one warp when cols <= 1024,
 * the whole 256-thread block above that, so the rows being worked on stay in L1 between the two
 * passes. Pass 1 sums x^2 (or (w*dy)*x) with 16-byte vector loads when every row is 16-byte
 * aligned (scalar loads otherwise) and reduces with warp_sum / block_sum; pass 2 re-reads the row
 * and writes y (or dx). The reduction order differs from the CPU twin's lane order: results agree
 * to f32 rounding, not bitwise.
 * dweight: deterministic without float atomics or scratch memory. A block owns 32 columns; its 16
 * thread rows take the row blocks of rmsnorm_dweight_block_rows(rows) round robin, each summing its
 * block's rows in order into shared memory; then one thread per column adds the block sums in block
 * order. That is the CPU twin's schedule, so dweight is bitwise equal to it.
 * Reference kernels (*_ref, see moe4j_cuda_use_reference_kernels): one thread per row (per column
 * for dweight) running the CPU twin's row code from rmsnorm_math.h: bitwise equal to the CPU.
 */
#include "cuda_check.cuh"
#include "numerics.h"
#include "op_args.h"
#include "rmsnorm_math.h"

namespace moe4j {

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
  __shared__ float scratch[32];
  constexpr int kGroups = kRmsThreads / TPR;
  const int t = threadIdx.x % TPR;
  /* r is uniform over the row group, so the reductions see all of its threads */
  for (int64_t r = (int64_t)blockIdx.x * kGroups + threadIdx.x / TPR; r < rows;
       r += (int64_t)gridDim.x * kGroups) {
    const T *xr = x + r * cols;
    float sum = 0.0f;
    for (int64_t c = (int64_t)t * V; c < cols; c += TPR * V) {
      Pack<T, V> xv = load_pack<T, V>(xr + c);
#pragma unroll
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
#pragma unroll
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
  __shared__ float scratch[32];
  constexpr int kGroups = kRmsThreads / TPR;
  const int t = threadIdx.x % TPR;
  for (int64_t r = (int64_t)blockIdx.x * kGroups + threadIdx.x / TPR; r < rows;
       r += (int64_t)gridDim.x * kGroups) {
    const T *dyr = dy + r * cols, *xr = x + r * cols;
    float sum = 0.0f;
    for (int64_t c = (int64_t)t * V; c < cols; c += TPR * V) {
      Pack<T, V> dv = load_pack<T, V>(dyr + c), xv = load_pack<T, V>(xr + c),
                 wv = load_pack<T, V>(weight + c);
#pragma unroll
      for (int j = 0; j < V; j++) sum += rmsnorm_gx(to_f32(dv.v[j]), to_f32(xv.v[j]), to_f32(wv.v[j]));
    }
    const float rs = rstd[r];
    const float coef = rmsnorm_dx_coef(row_group_sum<TPR>(sum, scratch), cols, rs);
    T *dxr = dx + r * cols;
    for (int64_t c = (int64_t)t * V; c < cols; c += TPR * V) {
      Pack<T, V> dv = load_pack<T, V>(dyr + c), xv = load_pack<T, V>(xr + c),
                 wv = load_pack<T, V>(weight + c), out;
#pragma unroll
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
  __shared__ float partial[kRmsMaxRowBlocks][kDweightCols];
  const int64_t tiles = (cols + kDweightCols - 1) / kDweightCols;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t c = tile * kDweightCols + threadIdx.x;
    if (c < cols) {
      for (int64_t b = threadIdx.y; b < blocks; b += kDweightRowGroups) {
        const int64_t r0 = b * block_rows, r1 = r0 + block_rows < rows ? r0 + block_rows : rows;
        float p = 0.0f;
#pragma unroll 4
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

/* ---- launch helpers ---- */

inline bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

template <typename T, int V, int TPR>
void launch_forward(const T *x, const T *w, T *y, float *rstd, int64_t rows, int64_t cols,
                    float eps, cudaStream_t stream) {
  rmsnorm_forward_kernel<T, V, TPR><<<blocks_for(rows, kRmsThreads / TPR), kRmsThreads, 0, stream>>>(
      x, w, y, rstd, rows, cols, eps);
}

template <typename T>
int32_t launch_forward(const char *fn, const T *x, const T *w, T *y, float *rstd, int64_t rows,
                       int64_t cols, float eps, cudaStream_t stream) {
  constexpr int V = 16 / sizeof(T);
  if (reference_kernels_enabled()) {
    rmsnorm_forward_ref<T><<<blocks_for(rows, kRefThreads), kRefThreads, 0, stream>>>(x, w, y, rstd, rows, cols, eps);
    return check_launch(fn, "rmsnorm_forward_ref");
  }
  const bool vec = cols % V == 0 && aligned16(x) && aligned16(w) && aligned16(y);
  const bool warp_rows = cols <= kRmsWarpRowMaxCols;
  if (vec && warp_rows) launch_forward<T, V, 32>(x, w, y, rstd, rows, cols, eps, stream);
  else if (vec) launch_forward<T, V, kRmsThreads>(x, w, y, rstd, rows, cols, eps, stream);
  else if (warp_rows) launch_forward<T, 1, 32>(x, w, y, rstd, rows, cols, eps, stream);
  else launch_forward<T, 1, kRmsThreads>(x, w, y, rstd, rows, cols, eps, stream);
  return check_launch(fn, "rmsnorm_forward_kernel");
}

template <typename T, int V, int TPR>
void launch_backward_dx(const T *dy, const T *x, const T *w, const float *rstd, T *dx,
                        int64_t rows, int64_t cols, cudaStream_t stream) {
  rmsnorm_backward_dx_kernel<T, V, TPR><<<blocks_for(rows, kRmsThreads / TPR), kRmsThreads, 0, stream>>>(
      dy, x, w, rstd, dx, rows, cols);
}

/* dx (when rows > 0), then dweight (always: zeros or unchanged when rows == 0). */
template <typename T>
int32_t launch_backward(const char *fn, const T *dy, const T *x, const T *w, const float *rstd,
                        T *dx, float *dw, int64_t rows, int64_t cols, int32_t accumulate,
                        cudaStream_t stream) {
  constexpr int V = 16 / sizeof(T);
  const int64_t block_rows = rmsnorm_dweight_block_rows(rows);
  const int64_t blocks = (rows + block_rows - 1) / block_rows;
  int32_t status = MOE4J_OK;
  if (reference_kernels_enabled()) {
    if (rows > 0) {
      rmsnorm_backward_ref<T><<<blocks_for(rows, kRefThreads), kRefThreads, 0, stream>>>(dy, x, w, rstd, dx, rows, cols);
      if ((status = check_launch(fn, "rmsnorm_backward_ref")) != MOE4J_OK) return status;
    }
    rmsnorm_dweight_ref<T><<<blocks_for(cols, kRefThreads), kRefThreads, 0, stream>>>(dy, x, rstd, dw, rows, cols, block_rows, accumulate);
    return check_launch(fn, "rmsnorm_dweight_ref");
  }
  if (rows > 0) {
    const bool vec = cols % V == 0 && aligned16(dy) && aligned16(x) && aligned16(w) && aligned16(dx);
    const bool warp_rows = cols <= kRmsWarpRowMaxCols;
    if (vec && warp_rows) launch_backward_dx<T, V, 32>(dy, x, w, rstd, dx, rows, cols, stream);
    else if (vec) launch_backward_dx<T, V, kRmsThreads>(dy, x, w, rstd, dx, rows, cols, stream);
    else if (warp_rows) launch_backward_dx<T, 1, 32>(dy, x, w, rstd, dx, rows, cols, stream);
    else launch_backward_dx<T, 1, kRmsThreads>(dy, x, w, rstd, dx, rows, cols, stream);
    if ((status = check_launch(fn, "rmsnorm_backward_dx_kernel")) != MOE4J_OK) return status;
  }
  rmsnorm_dweight_kernel<T><<<blocks_for(cols, kDweightCols), dim3(kDweightCols, kDweightRowGroups), 0, stream>>>(
      dy, x, rstd, dw, rows, cols, block_rows, blocks, accumulate);
  return check_launch(fn, "rmsnorm_dweight_kernel");
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_rmsnorm_forward(int32_t dtype, const void *x, const void *weight, void *y,
                                   float *rstd, int64_t rows, int64_t cols, float eps,
                                   void *stream) {
  const char *fn = "moe4j_cuda_rmsnorm_forward";
  ArgCheck chk(fn);
  check_rmsnorm_forward(chk, dtype, x, weight, y, rstd, rows, cols, eps);
  if (chk.failed()) return chk.status();
  if (rows == 0) return MOE4J_OK;
  if (dtype == MOE4J_DTYPE_BF16)
    return launch_forward(fn, (const bf16_t *)x, (const bf16_t *)weight, (bf16_t *)y, rstd, rows,
                          cols, eps, as_stream(stream));
  return launch_forward(fn, (const float *)x, (const float *)weight, (float *)y, rstd, rows, cols,
                        eps, as_stream(stream));
}

int32_t moe4j_cuda_rmsnorm_backward(int32_t dtype, const void *dy, const void *x,
                                    const void *weight, const float *rstd, void *dx,
                                    float *dweight, int64_t rows, int64_t cols,
                                    int32_t accumulate, void *stream) {
  const char *fn = "moe4j_cuda_rmsnorm_backward";
  ArgCheck chk(fn);
  check_rmsnorm_backward(chk, dtype, dy, x, weight, rstd, dx, dweight, rows, cols, accumulate);
  if (chk.failed()) return chk.status();
  if (cols == 0) return MOE4J_OK; /* then rows == 0 too: nothing to write */
  if (dtype == MOE4J_DTYPE_BF16)
    return launch_backward(fn, (const bf16_t *)dy, (const bf16_t *)x, (const bf16_t *)weight, rstd,
                           (bf16_t *)dx, dweight, rows, cols, accumulate, as_stream(stream));
  return launch_backward(fn, (const float *)dy, (const float *)x, (const float *)weight, rstd,
                         (float *)dx, dweight, rows, cols, accumulate, as_stream(stream));
}

}  // extern "C"
