/*
 * The device code of the router losses (balance loss, z-loss, bias update) (see
 * kernels/router_losses.cu for what, layouts and why), in a header so a CPU test can run the very
 * same kernels under a warp emulator (native/tests/test_router_losses_emulated.cpp). The includer
 * provides the CUDA builtins: router_losses.cu includes cuda_check.cuh, the emulation test
 * native/tests/warp_emulator.h.
 * Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "hd.h"
#include "router_loss_math.h"
#include "warp_reduce.cuh"

namespace moe4j {

namespace {

constexpr int kLossThreads = 1024;   /* 32 token lanes x 32 experts; 32 warps */
constexpr int kCountChunk = 2048;    /* experts counted per pass: 16 KiB of u64 counters */
constexpr int kGradThreads = 256;
constexpr int64_t kGradElems = 65536; /* d_scores elements per gradient block, at least */
constexpr int kZThreads = 256;       /* z-loss gradient: 8 warps, a row each */

static_assert(kLossThreads == 32 * kBalanceLanes, "a warp per token lane");

__device__ __forceinline__ int64_t chunk_size(int64_t c0, int64_t E) {
  return E - c0 < kCountChunk ? E - c0 : kCountChunk;
}

/* cnt[0..cn) = assignments to experts c0 .. c0 + cn - 1 (the whole block takes part). */
__device__ __forceinline__ void count_chunk(const int32_t *__restrict__ ids, int64_t nk,
                                            int64_t c0, int64_t cn, unsigned long long *cnt) {
  for (int64_t i = threadIdx.x; i < cn; i += blockDim.x) cnt[i] = 0ull;
  __syncthreads();
  for (int64_t a = threadIdx.x; a < nk; a += blockDim.x) {
    const int64_t e = (int64_t)ids[a] - c0;
    if (e >= 0 && e < cn) atomicAdd(&cnt[e], 1ull);
  }
  __syncthreads();
}

/* ---- balance loss ---- */

__global__ void __launch_bounds__(kLossThreads)
balance_loss_kernel(const float *__restrict__ scores, const int32_t *__restrict__ ids,
                    int64_t T, int64_t E, int k, float coef, float *__restrict__ out) {
  MOE4J_STATIC_SHARED unsigned long long cnt[kCountChunk];
  MOE4J_STATIC_SHARED double part[32][kBalanceLanes + 1]; /* [expert in tile][lane] */
  MOE4J_STATIC_SHARED double col[32];
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  double weighted = 0.0; /* thread 0 */
  for (int64_t c0 = 0; c0 < E; c0 += kCountChunk) {
    const int64_t cn = chunk_size(c0, E);
    count_chunk(ids, T * k, c0, cn, cnt);
    for (int64_t e0 = 0; e0 < cn; e0 += 32) {
      double acc = 0.0;
      if (e0 + tx < cn) {
        const float *p = scores + c0 + e0 + tx;
MOE4J_UNROLL_N(4)
        for (int64_t t = ty; t < T; t += kBalanceLanes) acc = dadd_rn(acc, (double)p[t * E]);
      }
      part[tx][ty] = acc;
      __syncthreads();
      if (ty == 0) col[tx] = balance_combine_lanes(part[tx], kBalanceLanes);
      __syncthreads();
      if (threadIdx.x == 0)
        for (int j = 0; j < 32 && e0 + j < cn; j++)
          weighted = balance_term(weighted, (int64_t)cnt[e0 + j], col[j]);
      __syncthreads(); /* part and col are rewritten by the next tile */
    }
  }
  if (threadIdx.x == 0) out[0] = balance_loss_value(weighted, T, E, k, coef);
}

/* Block (x, y): rows [x * rows_per_block, ...) of the experts of chunk y. */
__global__ void __launch_bounds__(kGradThreads)
balance_grad_kernel(const int32_t *__restrict__ ids, int64_t T, int64_t E, int k, float coef,
                    float *__restrict__ d_scores, int64_t rows_per_block) {
  MOE4J_STATIC_SHARED unsigned long long cnt[kCountChunk];
  MOE4J_STATIC_SHARED float g[kCountChunk];
  const int64_t c0 = (int64_t)blockIdx.y * kCountChunk, cn = chunk_size(c0, E);
  count_chunk(ids, T * k, c0, cn, cnt);
  for (int64_t i = threadIdx.x; i < cn; i += blockDim.x)
    g[i] = balance_grad((int64_t)cnt[i], T, E, k, coef);
  __syncthreads();
  const int64_t t0 = (int64_t)blockIdx.x * rows_per_block;
  const int64_t t1 = t0 + rows_per_block < T ? t0 + rows_per_block : T;
  const int64_t n = (t1 - t0) * cn;
  if (n < (int64_t(1) << 31)) { /* the usual case: 32-bit index math */
    const uint32_t n32 = (uint32_t)n, cn32 = (uint32_t)cn;
    for (uint32_t i = threadIdx.x; i < n32; i += blockDim.x) {
      const uint32_t r = i / cn32, e = i - r * cn32;
      float *d = d_scores + (t0 + r) * E + c0 + e;
      *d = add_rn(*d, g[e]);
    }
    return;
  }
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const int64_t t = t0 + i / cn, e = i % cn;
    float *d = d_scores + t * E + c0 + e;
    *d = add_rn(*d, g[e]);
  }
}

/* One thread: counts by scanning the ids per expert, the same lane sums and order as the CPU. */
__global__ void balance_loss_ref(const float *scores, const int32_t *ids, int64_t T, int64_t E,
                                 int k, float coef, float *out, float *d_scores) {
  double weighted = 0.0;
  for (int64_t e = 0; e < E; e++) {
    int64_t count = 0;
    for (int64_t a = 0; a < T * k; a++) count += ids[a] == e ? 1 : 0;
    double lane[kBalanceLanes];
    for (int l = 0; l < kBalanceLanes; l++) lane[l] = 0.0;
    for (int64_t t = 0; t < T; t++)
      lane[t % kBalanceLanes] = dadd_rn(lane[t % kBalanceLanes], (double)scores[t * E + e]);
    weighted = balance_term(weighted, count, balance_combine_lanes(lane, kBalanceLanes));
    if (d_scores != nullptr && T > 0) {
      const float g = balance_grad(count, T, E, k, coef);
      for (int64_t t = 0; t < T; t++) d_scores[t * E + e] = add_rn(d_scores[t * E + e], g);
    }
  }
  out[0] = balance_loss_value(weighted, T, E, k, coef);
}

/* ---- z-loss ---- */

/* lse of row x by one warp; every lane gets it. */
__device__ __forceinline__ float warp_lse(const float *x, int64_t E, int lane) {
  float m = -INFINITY;
  for (int64_t e = lane; e < E; e += 32) m = fmaxf(m, x[e]);
  m = warp_max(m);
  float sum = 0.0f;
  for (int64_t e = lane; e < E; e += 32) sum = add_rn(sum, softmax_exp(x[e], m));
  sum = warp_sum(sum);
  return m + logf(sum);
}

__global__ void __launch_bounds__(kZThreads)
z_loss_grad_kernel(const float *__restrict__ logits, int64_t T, int64_t E, float coef,
                   float *__restrict__ d_logits) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t t = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); t < T;
       t += warps) {
    const float *x = logits + t * E;
    const float lse = warp_lse(x, E, lane);
    const float scale = z_loss_grad_scale(lse, T, coef);
    float *d = d_logits + t * E;
    for (int64_t e = lane; e < E; e += 32) d[e] = z_loss_grad(d[e], x[e], lse, scale);
  }
}

__global__ void __launch_bounds__(kLossThreads)
z_loss_kernel(const float *__restrict__ logits, int64_t T, int64_t E, float coef,
              float *__restrict__ out) {
  MOE4J_STATIC_SHARED double warp_total[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  double acc = 0.0; /* lane 0 */
  for (int64_t t = warp; t < T; t += warps) {
    const float lse = warp_lse(logits + t * E, E, lane);
    acc = dadd_rn(acc, lse_square(lse));
  }
  if (lane == 0) warp_total[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double sum = 0.0;
    for (int w = 0; w < warps; w++) sum = dadd_rn(sum, warp_total[w]);
    out[0] = z_loss_value(sum, T, coef);
  }
}

/* One thread: the CPU twin's loops. */
__global__ void z_loss_ref(const float *logits, int64_t T, int64_t E, float coef, float *out,
                           float *d_logits) {
  double sum = 0.0;
  for (int64_t t = 0; t < T; t++) {
    const float *x = logits + t * E;
    const float lse = router_lse_row(x, E);
    sum = dadd_rn(sum, lse_square(lse));
    if (d_logits == nullptr) continue;
    const float scale = z_loss_grad_scale(lse, T, coef);
    for (int64_t e = 0; e < E; e++) d_logits[t * E + e] = z_loss_grad(d_logits[t * E + e], x[e], lse, scale);
  }
  out[0] = z_loss_value(sum, T, coef);
}

/* ---- bias update ---- */

__global__ void __launch_bounds__(kLossThreads)
bias_update_kernel(float *__restrict__ bias, const int64_t *__restrict__ counts, int64_t E,
                   float rate) {
  MOE4J_STATIC_SHARED unsigned long long total;
  if (threadIdx.x == 0) total = 0ull;
  __syncthreads();
  unsigned long long local = 0ull;
  for (int64_t e = threadIdx.x; e < E; e += blockDim.x) local += (unsigned long long)counts[e];
  atomicAdd(&total, local); /* integers: exact in any order */
  __syncthreads();
  const double mean = bias_mean((int64_t)total, E);
  for (int64_t e = threadIdx.x; e < E; e += blockDim.x)
    bias[e] = bias_updated(bias[e], counts[e], mean, rate);
}

__global__ void bias_update_ref(float *bias, const int64_t *counts, int64_t E, float rate) {
  int64_t total = 0;
  for (int64_t e = 0; e < E; e++) total += counts[e];
  const double mean = bias_mean(total, E);
  for (int64_t e = 0; e < E; e++) bias[e] = bias_updated(bias[e], counts[e], mean, rate);
}

}  // namespace

}  // namespace moe4j
