/*
 * The device code of token-choice routing (see kernels/routing.cu for what, layouts and why):
 * router scores, top-k, the three dispatch-plan kernels, gather / combine and their backwards,
 * and the reference kernels, in a header so a CPU test can run the very same kernels under a warp
 * emulator (native/tests/test_routing_emulated.cpp). The includer provides the CUDA builtins:
 * routing.cu includes cuda_check.cuh, the emulation test native/tests/warp_emulator.h.
 * Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>

#include "hd.h"
#include "numerics.h"
#include "routing_math.h"
#include "warp_reduce.cuh"

namespace moe4j {

namespace {

constexpr int kScoresThreads = 256;     /* 8 warps, a row each */
constexpr int kRefThreads = 128;        /* reference kernels: a thread per row / token */
constexpr int kTopkThreads = 128;       /* a thread per token */
constexpr int kTopkLocal = 16;          /* largest k with the sorted list in a local array */
constexpr int kTopkBlocksPerSm = 8;     /* 64 registers allowed: the default 32 spilled */
constexpr int kCountThreads = 256;
constexpr int kScanThreads = 1024;
constexpr int kPlaceThreads = 1024;
constexpr int kGatherThreads = 256;     /* 8 warps, a row each */
constexpr int kRowThreads = 256;        /* block per token kernels */
constexpr int kRowBlocksPerSm = 4;      /* 64 registers allowed: the default 32 spilled */

/* ---- router scores ---- */

__global__ void __launch_bounds__(kScoresThreads)
router_softmax_kernel(const float *logits, float *scores, int64_t rows, int64_t E) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t t = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); t < rows;
       t += warps) {
    const float *x = logits + t * E;
    float m = -INFINITY;
    for (int64_t e = lane; e < E; e += 32) m = fmaxf(m, x[e]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int64_t e = lane; e < E; e += 32) sum = add_rn(sum, softmax_exp(x[e], m));
    sum = warp_sum(sum);
    for (int64_t e = lane; e < E; e += 32) scores[t * E + e] = softmax_exp(x[e], m) / sum;
  }
}

__global__ void __launch_bounds__(kScoresThreads)
router_softmax_backward_kernel(const float *__restrict__ s, const float *ds, float *dx,
                               int64_t rows, int64_t E) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t t = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); t < rows;
       t += warps) {
    const int64_t base = t * E;
    float dot = 0.0f;
    for (int64_t e = lane; e < E; e += 32) dot = add_rn(dot, mul_rn(s[base + e], ds[base + e]));
    dot = warp_sum(dot);
    for (int64_t e = lane; e < E; e += 32)
      dx[base + e] = mul_rn(s[base + e], sub_rn(ds[base + e], dot));
  }
}

__global__ void router_sigmoid_kernel(const float *logits, float *scores, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
    scores[i] = router_sigmoid(logits[i]);
}

__global__ void router_sigmoid_backward_kernel(const float *__restrict__ s, const float *ds,
                                               float *dx, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = router_sigmoid_backward(s[i], ds[i]);
}

/* Reference: a thread per row, the CPU twin's row functions. */
__global__ void router_scores_ref(const float *logits, float *scores, int64_t rows, int64_t E,
                                  int32_t score_fn) {
  const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (t < rows) router_scores_row(logits + t * E, scores + t * E, E, score_fn);
}

__global__ void router_scores_backward_ref(const float *s, const float *ds, float *dx,
                                           int64_t rows, int64_t E, int32_t score_fn) {
  const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (t < rows) router_scores_backward_row(s + t * E, ds + t * E, dx + t * E, E, score_fn);
}

/* ---- top-k ---- */

__global__ void __launch_bounds__(kTopkThreads, kTopkBlocksPerSm)
route_topk_kernel(const float *__restrict__ scores, const float *__restrict__ bias, int64_t tokens,
                  int64_t E, int k, int renormalize, int32_t *__restrict__ expert_ids,
                  float *__restrict__ weights) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < tokens; t += stride) {
    if (k <= kTopkLocal) {
      int32_t ids[kTopkLocal];
      float w[kTopkLocal];
      topk_row(scores + t * E, bias, E, k, ids, w, renormalize);
      for (int j = 0; j < k; j++) {
        expert_ids[t * k + j] = ids[j];
        weights[t * k + j] = w[j];
      }
    } else {
      topk_row(scores + t * E, bias, E, k, expert_ids + t * k, weights + t * k, renormalize);
    }
  }
}

/* d_scores is zero on entry; topk_backward_row adds the k selected entries of each row. */
__global__ void __launch_bounds__(kTopkThreads, kTopkBlocksPerSm)
route_topk_backward_kernel(const float *__restrict__ scores, const int32_t *__restrict__ expert_ids,
                           const float *__restrict__ d_weights, float *__restrict__ d_scores,
                           int64_t tokens, int64_t E, int k, int renormalize) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < tokens; t += stride)
    topk_backward_row(scores + t * E, expert_ids + t * k, d_weights + t * k, k, renormalize,
                      d_scores + t * E);
}

/* ---- dispatch plan ---- */

/* Priority key of assignment i with weight w: larger key = earlier in assignment_precedes. */
__device__ __forceinline__ uint64_t priority_key(float w, int64_t i) {
  uint32_t u;
  if (isnan(w)) {
    u = 0u;
  } else {
    const uint32_t b = w == 0.0f ? 0u : __float_as_uint(w);
    u = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  }
  return ((uint64_t)u << 32) | (uint64_t)(0xffffffffu - (uint32_t)i);
}

/* offsets[e + 1] += 1 for each assignment of expert e (offsets zeroed first). */
__global__ void __launch_bounds__(kCountThreads)
route_count_kernel(const int32_t *__restrict__ expert_ids, int64_t n, int64_t E,
                   int64_t *__restrict__ offsets) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    const int32_t e = expert_ids[i];
    if (e >= 0 && e < E) atomicAdd((unsigned long long *)&offsets[e + 1], 1ull);
  }
}

/* Exclusive prefix sum over the block of one int64 per thread; *total gets the block's sum. */
__device__ __forceinline__ int64_t block_exclusive_scan(int64_t v, int64_t *scratch,
                                                        int64_t *total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  int64_t inc = v;
  for (int o = 1; o < 32; o <<= 1) {
    const int64_t up = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += up;
  }
  __syncthreads(); /* scratch may still be read from a previous call */
  if (lane == 31) scratch[warp] = inc;
  __syncthreads();
  int64_t warp_base = 0, sum = 0;
  for (int w = 0; w < warps; w++) {
    if (w == warp) warp_base = sum;
    sum += scratch[w];
  }
  *total = sum;
  return warp_base + inc - v;
}

/* One block: offsets[1..E] hold the counts on entry; writes counts (may be NULL) and turns
 * offsets into the exclusive prefix of the kept counts. Each thread owns a contiguous run of
 * experts [e0, e1) and is the only one to read and write offsets[e0 + 1 .. e1] (the inclusive
 * prefix of expert e goes to offsets[e + 1]), so the update in place needs no second buffer. */
__global__ void __launch_bounds__(kScanThreads)
route_scan_kernel(int64_t *__restrict__ offsets, int64_t *__restrict__ counts, int64_t E,
                  int64_t capacity) {
  MOE4J_STATIC_SHARED int64_t scratch[32];
  const int64_t per = (E + blockDim.x - 1) / blockDim.x;
  const int64_t e0 = threadIdx.x * per;
  const int64_t e1 = e0 + per < E ? e0 + per : E;
  int64_t local = 0;
  for (int64_t e = e0; e < e1; e++) {
    const int64_t c = offsets[e + 1];
    local += capacity > 0 && c > capacity ? capacity : c;
  }
  int64_t total = 0;
  int64_t run = block_exclusive_scan(local, scratch, &total);
  for (int64_t e = e0; e < e1; e++) {
    const int64_t c = offsets[e + 1];
    if (counts != nullptr) counts[e] = c;
    run += capacity > 0 && c > capacity ? capacity : c;
    offsets[e + 1] = run;
  }
  if (threadIdx.x == 0) offsets[0] = 0;
}

/* Block e < E: places expert e's kept assignments (stable), -1 in slot_of for its dropped ones.
 * Block E: sorted_token[offsets[E]..n) = -1 and slot_of = -1 for out-of-range ids. */
__global__ void __launch_bounds__(kPlaceThreads)
route_place_kernel(const int32_t *__restrict__ expert_ids, const float *__restrict__ weights,
                   int64_t n, int64_t E, int64_t capacity, const int64_t *__restrict__ offsets,
                   int32_t *__restrict__ sorted_token, int32_t *__restrict__ slot_of, int k) {
  MOE4J_STATIC_SHARED uint32_t hist[256];
  MOE4J_STATIC_SHARED int32_t warp_counts[32];
  MOE4J_STATIC_SHARED uint32_t chosen_digit, chosen_remaining;
  const int64_t e = blockIdx.x;
  if (e == E) {
    for (int64_t r = offsets[E] + threadIdx.x; r < n; r += blockDim.x) sorted_token[r] = -1;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const int32_t id = expert_ids[i];
      if (id < 0 || id >= E) slot_of[i] = -1;
    }
    return;
  }
  const int64_t base = offsets[e];
  const int64_t kept = offsets[e + 1] - base;

  /* Threshold: the key of the capacity-th assignment in priority order (0 = keep all). Only
   * needed when the expert is full; when count == capacity it selects the last one (all kept). */
  uint64_t threshold = 0;
  if (capacity > 0 && kept == capacity) {
    uint64_t prefix = 0, mask = 0;
    uint32_t remaining = (uint32_t)capacity; /* rank of the wanted key among those matching */
    for (int shift = 56; shift >= 0; shift -= 8) {
      for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[d] = 0u;
      __syncthreads();
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        if (expert_ids[i] != e) continue;
        const uint64_t key = priority_key(weights != nullptr ? weights[i] : 0.0f, i);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xffu], 1u);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        uint32_t rem = remaining;
        int d = 255;
        for (; d > 0 && hist[d] < rem; d--) rem -= hist[d];
        chosen_digit = (uint32_t)d;
        chosen_remaining = rem;
      }
      __syncthreads();
      prefix |= (uint64_t)chosen_digit << shift;
      mask |= (uint64_t)0xffu << shift;
      remaining = chosen_remaining;
    }
    threshold = prefix;
  }

  /* Stable placement: chunks of blockDim assignments in index order, block prefix of ballots. */
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  int64_t placed = 0;
  for (int64_t c0 = 0; c0 < n; c0 += blockDim.x) {
    const int64_t i = c0 + threadIdx.x;
    const bool mine = i < n && expert_ids[i] == e;
    const bool keep =
        mine && (threshold == 0 ||
                 priority_key(weights != nullptr ? weights[i] : 0.0f, i) >= threshold);
    const unsigned int ballot = __ballot_sync(0xffffffffu, keep);
    __syncthreads(); /* warp_counts of the previous chunk fully read */
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int64_t before = placed, chunk = 0;
    for (int w = 0; w < warps; w++) {
      if (w < warp) before += warp_counts[w];
      chunk += warp_counts[w];
    }
    before += __popc(ballot & ((1u << lane) - 1u));
    if (keep) {
      const int64_t row = base + before;
      sorted_token[row] = (int32_t)(i / k);
      slot_of[i] = (int32_t)row;
    } else if (mine) {
      slot_of[i] = -1;
    }
    placed += chunk;
  }
}

/* Reference: one thread, sequential, the kept test by counting assignments ahead in priority. */
__global__ void route_plan_ref(const int32_t *expert_ids, const float *weights, int64_t tokens,
                               int64_t E, int k, int64_t capacity, int64_t *offsets,
                               int32_t *sorted_token, int32_t *slot_of, int64_t *counts) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  const int64_t n = tokens * k;
  for (int64_t i = 0; i < n; i++) slot_of[i] = -1;
  int64_t row = 0;
  for (int64_t e = 0; e < E; e++) {
    offsets[e] = row;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
      if (expert_ids[i] != e) continue;
      count++;
      const float w = weights != nullptr ? weights[i] : 0.0f;
      int64_t ahead = 0;
      if (capacity > 0) {
        for (int64_t q = 0; q < n; q++) {
          if (q == i || expert_ids[q] != e) continue;
          const float wq = weights != nullptr ? weights[q] : 0.0f;
          if (assignment_precedes(wq, q / k, (int32_t)(q % k), w, i / k, (int32_t)(i % k)))
            ahead++;
        }
      }
      if (route_kept(ahead, capacity)) {
        sorted_token[row] = (int32_t)(i / k);
        slot_of[i] = (int32_t)row;
        row++;
      }
    }
    if (counts != nullptr) counts[e] = count;
  }
  offsets[E] = row;
  for (int64_t r = row; r < n; r++) sorted_token[r] = -1;
}

/* ---- gather / combine ---- */

/* A warp per row; U: copy unit, units = row width in units. */
template <typename U>
__global__ void __launch_bounds__(kGatherThreads)
route_gather_kernel(const U *__restrict__ x, const int32_t *__restrict__ sorted_token,
                    U *__restrict__ rows, int64_t num_rows, int64_t tokens, int64_t units) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t r = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); r < num_rows;
       r += warps) {
    const int64_t t = sorted_token[r];
    U *dst = rows + r * units;
    if (t >= 0 && t < tokens) {
      const U *src = x + t * units;
      for (int64_t c = lane; c < units; c += 32) dst[c] = src[c];
    } else {
      for (int64_t c = lane; c < units; c += 32) dst[c] = U{};
    }
  }
}

/* V elements of type T, loaded / stored as one unit (16 bytes when V * sizeof(T) == 16). */
template <typename T, int V>
struct alignas(sizeof(T) * V) Packet {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ void load_packet(const T *p, float (&f)[V]) {
  const Packet<T, V> pk = *reinterpret_cast<const Packet<T, V> *>(p);
MOE4J_UNROLL
  for (int q = 0; q < V; q++) f[q] = to_f32(pk.v[q]);
}

template <typename T, int V>
__device__ __forceinline__ void store_packet(T *p, const float (&f)[V]) {
  Packet<T, V> pk;
MOE4J_UNROLL
  for (int q = 0; q < V; q++) pk.v[q] = from_f32<T>(f[q]);
  *reinterpret_cast<Packet<T, V> *>(p) = pk;
}

/* dx[t] (=|+=) sum over j of d_rows[slot_of[t, j]]; a block per token, a packet per thread. */
template <typename T, int V>
__global__ void __launch_bounds__(kRowThreads, kRowBlocksPerSm)
route_gather_backward_kernel(const T *__restrict__ d_rows, const int32_t *__restrict__ slot_of,
                             T *__restrict__ dx, int64_t tokens, int k, int64_t num_rows,
                             int64_t H, int accumulate) {
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    for (int64_t c = (int64_t)threadIdx.x * V; c < H; c += (int64_t)blockDim.x * V) {
      float acc[V];
MOE4J_UNROLL
      for (int q = 0; q < V; q++) acc[q] = 0.0f;
      for (int j = 0; j < k; j++) {
        const int64_t s = slot_of[t * k + j];
        if (s < 0 || s >= num_rows) continue;
        float v[V];
        load_packet<T, V>(d_rows + s * H + c, v);
MOE4J_UNROLL
        for (int q = 0; q < V; q++) acc[q] = add_rn(acc[q], v[q]);
      }
      if (accumulate) {
        float old[V];
        load_packet<T, V>(dx + t * H + c, old);
MOE4J_UNROLL
        for (int q = 0; q < V; q++) acc[q] = add_rn(old[q], acc[q]);
      }
      store_packet<T, V>(dx + t * H + c, acc);
    }
  }
}

/* y[t] = sum over j of w[t, j] * rows[slot_of[t, j]] (w NULL = 1). */
template <typename T, int V>
__global__ void __launch_bounds__(kRowThreads, kRowBlocksPerSm)
route_combine_kernel(const T *__restrict__ rows, const int32_t *__restrict__ slot_of,
                     const float *__restrict__ weights, T *__restrict__ y, int64_t tokens, int k,
                     int64_t num_rows, int64_t H) {
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    for (int64_t c = (int64_t)threadIdx.x * V; c < H; c += (int64_t)blockDim.x * V) {
      float acc[V];
MOE4J_UNROLL
      for (int q = 0; q < V; q++) acc[q] = 0.0f;
      for (int j = 0; j < k; j++) {
        const int64_t s = slot_of[t * k + j];
        if (s < 0 || s >= num_rows) continue;
        float v[V];
        load_packet<T, V>(rows + s * H + c, v);
        const float *w = weights != nullptr ? weights + t * k : nullptr;
MOE4J_UNROLL
        for (int q = 0; q < V; q++) acc[q] = combine_term(acc[q], w, j, v[q]);
      }
      store_packet<T, V>(y + t * H + c, acc);
    }
  }
}

/* d_rows zero on entry. d_rows[slot] = w * dy[t] (all threads, packets); d_weights[t, j] =
 * <dy[t], rows[slot]> by a half-warp per j in route_dot's order: lane l of the half takes columns
 * l, l + 16, ... in order, then the 16 lane sums are added 0..15 in order (bitwise equal to the
 * CPU twin). The j loop of the dot runs the same rounds in both halves of a warp, so the shuffles
 * always see all 32 lanes. */
template <typename T, int V>
__global__ void __launch_bounds__(kRowThreads, kRowBlocksPerSm)
route_combine_backward_kernel(const T *__restrict__ dy, const T *__restrict__ rows,
                              const int32_t *__restrict__ slot_of,
                              const float *__restrict__ weights, T *__restrict__ d_rows,
                              float *__restrict__ d_weights, int64_t tokens, int k,
                              int64_t num_rows, int64_t H) {
  const int half = threadIdx.x >> 4, halves = blockDim.x >> 4;
  const int lane16 = threadIdx.x & 15, half_base = threadIdx.x & 16;
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const T *g_row = dy + t * H;
    for (int j = 0; j < k; j++) {
      const int64_t s = slot_of[t * k + j];
      if (s < 0 || s >= num_rows) continue;
      const float w = weights != nullptr ? weights[t * k + j] : 1.0f;
      T *d_row = d_rows + s * H;
      for (int64_t c = (int64_t)threadIdx.x * V; c < H; c += (int64_t)blockDim.x * V) {
        float g[V], out[V];
        load_packet<T, V>(g_row + c, g);
MOE4J_UNROLL
        for (int q = 0; q < V; q++) out[q] = mul_rn(w, g[q]);
        store_packet<T, V>(d_row + c, out);
      }
    }
    if (d_weights == nullptr) continue;
    for (int j0 = 0; j0 < k; j0 += halves) {
      const int j = j0 + half;
      const int64_t s = j < k ? slot_of[t * k + j] : -1;
      const bool kept = s >= 0 && s < num_rows;
      float lane_sum = 0.0f;
      if (kept) {
        const T *r_row = rows + s * H;
        for (int64_t c = lane16; c < H; c += kRouteLanes)
          lane_sum = add_rn(lane_sum, mul_rn(to_f32(g_row[c]), to_f32(r_row[c])));
      }
      float dot = __shfl_sync(0xffffffffu, lane_sum, half_base);
      for (int l = 1; l < kRouteLanes; l++)
        dot = add_rn(dot, __shfl_sync(0xffffffffu, lane_sum, half_base + l));
      if (j < k && lane16 == 0) d_weights[t * k + j] = kept ? dot : 0.0f;
    }
  }
}

/* Reference d_weights: a thread per (t, j), route_dot itself. */
template <typename T>
__global__ void route_combine_dweights_ref(const T *dy, const T *rows, const int32_t *slot_of,
                                           float *d_weights, int64_t tokens, int k,
                                           int64_t num_rows, int64_t H) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= tokens * k) return;
  const int64_t t = i / k, s = slot_of[i];
  d_weights[i] = s >= 0 && s < num_rows ? route_dot(dy + t * H, rows + s * H, H) : 0.0f;
}

/* Reference d_rows: a thread per (t, j, column), plain loop. */
template <typename T>
__global__ void route_combine_drows_ref(const T *dy, const int32_t *slot_of,
                                        const float *weights, T *d_rows, int64_t tokens, int k,
                                        int64_t num_rows, int64_t H) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= tokens * k * H) return;
  const int64_t a = i / H, c = i % H, t = a / k, s = slot_of[a];
  if (s < 0 || s >= num_rows) return;
  const float w = weights != nullptr ? weights[a] : 1.0f;
  d_rows[s * H + c] = from_f32<T>(mul_rn(w, to_f32(dy[t * H + c])));
}

}  // namespace

}  // namespace moe4j
