/*
 * Token-choice routing on the device: router scores, top-k selection, the dispatch plan that sorts
 * assignments by expert, and the gather / combine that move rows between token order and expert
 * order. All on one stream, no host synchronization, no scratch buffers beyond the outputs.
 *
 * Layouts (moe4j.h, "Routing (token choice)"): logits, scores F32 [T, E]; expert_ids I32 [T, k],
 * weights F32 [T, k] (assignment i = t * k + j, j = rank 0..k-1); offsets I64 [E + 1];
 * sorted_token I32 [T * k]; slot_of I32 [T, k]; counts I64 [E]; x [T, H], rows [R, H], y [T, H]
 * in F32 or BF16 (f32 arithmetic).
 *
 * The math and the tie rules live in common/routing_math.h, shared with the CPU twin
 * (native/src/cpu_routing.cpp); the argument rules in native/src/routing_args.cpp.
 *
 * router_scores: may run in place (scores == logits; d_logits == d_scores in the backward): each
 *   element is read by the lane that writes it, before it writes it, so those pointers carry no
 *   __restrict__. Softmax runs a warp per row (max, then sum of exp(x - max), warp butterflies);
 *   sigmoid is elementwise. The backward of softmax is a warp per row (dot = sum s * ds), sigmoid
 *   elementwise. Reference kernels: a thread per row calling router_scores_row /
 *   router_scores_backward_row (the CPU twin's own code).
 * route_topk: a thread per token calling topk_row. For k <= kTopkLocal the sorted list lives in a
 *   thread-local array (the selection loop indexes it dynamically, so it sits in the L1-cached
 *   stack frame, not in registers) and is copied out; for larger k topk_row works directly on the
 *   token's rows of expert_ids / weights in global memory (same code, slower, any k <= E).
 *   Backward: d_scores is zeroed with cudaMemsetAsync, then a thread per token runs
 *   topk_backward_row, which adds the k selected entries in j order. Both bitwise equal to the
 *   CPU twin (same code, add_rn / mul_rn, IEEE division).
 * route_plan: three kernels, deterministic.
 *   (1) count: a thread per assignment adds 1 to offsets[e + 1] (zeroed first) with an integer
 *       atomic: the value does not depend on the order. Out-of-range ids are not counted.
 *   (2) scan: one block turns offsets[1..E] (per-expert counts) into counts[e], the kept counts
 *       min(count, capacity) and their exclusive prefix (offsets). E <= 65536.
 *   (3) place: one block per expert scans all T * k assignments in index order, 1024 at a time,
 *       and gives each of its kept assignments the row offsets[e] + (kept ones before it), from a
 *       block-wide prefix of ballots: rows are in token order (stable). When an expert has more
 *       assignments than capacity, the block first finds the priority key of its capacity-th
 *       assignment by an 8-pass radix select (8-bit digits of a 64-bit key, shared-memory integer
 *       histograms); an assignment is kept iff its key is >= that threshold. The key encodes
 *       routing_math.h's assignment_precedes exactly: high 32 bits the weight mapped to an
 *       order-preserving unsigned (-0 as +0, NaN as 0 = below everything), low 32 bits
 *       0xffffffff - i (lower token, then lower rank, first). One extra block (index E) writes -1
 *       to sorted_token rows past offsets[E] and to slot_of of out-of-range ids.
 *   Cost: (1) O(T k), (2) O(E), (3) O(E T k) reads (L2-resident: T k int32) plus 8 more passes
 *   per expert that drops. Fine for E up to a few hundred; for thousands of experts the place
 *   kernel's per-expert scan becomes the cost (a later version would sort once instead).
 *   Reference: route_plan_ref, a single thread doing everything sequentially, the kept test by
 *   counting the assignments ahead in priority (O((T k)^2) with capacity: test sizes only).
 * route_gather: a warp per row copies x[sorted_token[r]] with the widest unit (16, 4 or 2 bytes)
 *   the row width and base addresses allow; rows whose token is -1 (or out of range) get zeros.
 * route_gather_backward / route_combine: a block per token, a thread per 16-byte packet (4 f32
 *   or 8 bf16 when the row width and base addresses allow, else one element), summing the k slots
 *   in j order in f32 (combine_term / add_rn: the CPU twin's operation sequence, bitwise equal).
 * route_combine_backward: d_rows zeroed with cudaMemsetAsync, then a block per token writes
 *   d_rows[slot] = w * dy for each kept slot (packets), and d_weights[t, j] = <dy[t], rows[slot]>
 *   is computed by a half-warp per j in route_dot's fixed 16-lane order (routing_math.h), so it
 *   is deterministic and bitwise equal to the CPU twin. No float atomics anywhere. The reference
 *   kernels: a thread per element for d_rows, a thread per (t, j) calling route_dot.
 * Bitwise vs the CPU twin: topk, topk backward, plan, gather, gather backward, combine, combine
 *   backward, sigmoid backward, and the reference softmax backward. Not bitwise: softmax and
 *   sigmoid forward (CUDA's expf differs from glibc's by up to 2 ulp) and the fast softmax
 *   backward (warp-order dot).
 *
 * Ids and slots cannot be reported from the device: out-of-range expert ids are dropped by the
 * plan, out-of-range tokens gather zeros, out-of-range slots are skipped. The CPU twin and the
 * Java layer validate them. Two exceptions trust their input: topk backward indexes the row by
 * expert_ids (pass the forward's), and combine backward needs distinct kept slots (a plan's
 * slot_of), else two blocks write the same d_rows row.
 */
#include "cuda_check.cuh"
#include "numerics.h"
#include "routing_args.h"
#include "routing_math.h"

namespace moe4j {

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
  __shared__ int64_t scratch[32];
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
  __shared__ uint32_t hist[256];
  __shared__ int32_t warp_counts[32];
  __shared__ uint32_t chosen_digit, chosen_remaining;
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
#pragma unroll
  for (int q = 0; q < V; q++) f[q] = to_f32(pk.v[q]);
}

template <typename T, int V>
__device__ __forceinline__ void store_packet(T *p, const float (&f)[V]) {
  Packet<T, V> pk;
#pragma unroll
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
#pragma unroll
      for (int q = 0; q < V; q++) acc[q] = 0.0f;
      for (int j = 0; j < k; j++) {
        const int64_t s = slot_of[t * k + j];
        if (s < 0 || s >= num_rows) continue;
        float v[V];
        load_packet<T, V>(d_rows + s * H + c, v);
#pragma unroll
        for (int q = 0; q < V; q++) acc[q] = add_rn(acc[q], v[q]);
      }
      if (accumulate) {
        float old[V];
        load_packet<T, V>(dx + t * H + c, old);
#pragma unroll
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
#pragma unroll
      for (int q = 0; q < V; q++) acc[q] = 0.0f;
      for (int j = 0; j < k; j++) {
        const int64_t s = slot_of[t * k + j];
        if (s < 0 || s >= num_rows) continue;
        float v[V];
        load_packet<T, V>(rows + s * H + c, v);
        const float *w = weights != nullptr ? weights + t * k : nullptr;
#pragma unroll
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
#pragma unroll
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

static bool aligned_to(const void *p, uintptr_t bytes) { return ((uintptr_t)p % bytes) == 0; }

static unsigned int row_blocks(int64_t tokens) { return blocks_for(tokens, 1, 65535LL * 16); }

/* Packets of 16 bytes when the row width and every base address allow, else one element. */
static bool packed_ok(int64_t H, int64_t es, const void *a, const void *b, const void *c) {
  const int64_t per = 16 / es;
  return H % per == 0 && (a == nullptr || aligned_to(a, 16)) &&
         (b == nullptr || aligned_to(b, 16)) && (c == nullptr || aligned_to(c, 16));
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_router_scores(const float *logits, float *scores, int64_t tokens,
                                 int64_t experts, int32_t score_fn, void *stream) {
  const char *fn = "moe4j_cuda_router_scores";
  ArgCheck chk(fn);
  check_router_scores(chk, logits, scores, tokens, experts, score_fn);
  if (chk.failed()) return chk.status();
  if (tokens * experts == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  if (reference_kernels_enabled()) {
    router_scores_ref<<<blocks_for(tokens, kRefThreads, INT32_MAX), kRefThreads, 0, s>>>(
        logits, scores, tokens, experts, score_fn);
    return check_launch(fn, "router_scores_ref");
  }
  if (score_fn == kRouteScoreSigmoid) {
    router_sigmoid_kernel<<<blocks_for(tokens * experts, kScoresThreads), kScoresThreads, 0, s>>>(
        logits, scores, tokens * experts);
    return check_launch(fn, "router_sigmoid_kernel");
  }
  router_softmax_kernel<<<blocks_for(tokens, kScoresThreads / 32), kScoresThreads, 0, s>>>(
      logits, scores, tokens, experts);
  return check_launch(fn, "router_softmax_kernel");
}

int32_t moe4j_cuda_router_scores_backward(const float *scores, const float *d_scores,
                                          float *d_logits, int64_t tokens, int64_t experts,
                                          int32_t score_fn, void *stream) {
  const char *fn = "moe4j_cuda_router_scores_backward";
  ArgCheck chk(fn);
  check_router_scores_backward(chk, scores, d_scores, d_logits, tokens, experts, score_fn);
  if (chk.failed()) return chk.status();
  if (tokens * experts == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  if (reference_kernels_enabled()) {
    router_scores_backward_ref<<<blocks_for(tokens, kRefThreads, INT32_MAX), kRefThreads, 0, s>>>(
        scores, d_scores, d_logits, tokens, experts, score_fn);
    return check_launch(fn, "router_scores_backward_ref");
  }
  if (score_fn == kRouteScoreSigmoid) {
    router_sigmoid_backward_kernel<<<blocks_for(tokens * experts, kScoresThreads), kScoresThreads,
                                     0, s>>>(scores, d_scores, d_logits, tokens * experts);
    return check_launch(fn, "router_sigmoid_backward_kernel");
  }
  router_softmax_backward_kernel<<<blocks_for(tokens, kScoresThreads / 32), kScoresThreads, 0,
                                   s>>>(scores, d_scores, d_logits, tokens, experts);
  return check_launch(fn, "router_softmax_backward_kernel");
}

int32_t moe4j_cuda_route_topk(const float *scores, const float *bias, int64_t tokens,
                              int64_t experts, int32_t k, int32_t renormalize,
                              int32_t *expert_ids, float *weights, void *stream) {
  const char *fn = "moe4j_cuda_route_topk";
  ArgCheck chk(fn);
  check_route_topk(chk, scores, bias, tokens, experts, k, renormalize, expert_ids, weights);
  if (chk.failed()) return chk.status();
  if (tokens == 0) return MOE4J_OK;
  route_topk_kernel<<<blocks_for(tokens, kTopkThreads), kTopkThreads, 0, as_stream(stream)>>>(
      scores, bias, tokens, experts, k, renormalize, expert_ids, weights);
  return check_launch(fn, "route_topk_kernel");
}

int32_t moe4j_cuda_route_topk_backward(const float *scores, const int32_t *expert_ids,
                                       const float *d_weights, float *d_scores, int64_t tokens,
                                       int64_t experts, int32_t k, int32_t renormalize,
                                       void *stream) {
  const char *fn = "moe4j_cuda_route_topk_backward";
  ArgCheck chk(fn);
  check_route_topk_backward(chk, scores, expert_ids, d_weights, d_scores, tokens, experts, k,
                            renormalize);
  if (chk.failed()) return chk.status();
  if (tokens * experts == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  int32_t st = cuda_status(
      cudaMemsetAsync(d_scores, 0, (size_t)(tokens * experts) * sizeof(float), s), fn,
      "cudaMemsetAsync");
  if (st != MOE4J_OK) return st;
  route_topk_backward_kernel<<<blocks_for(tokens, kTopkThreads), kTopkThreads, 0, s>>>(
      scores, expert_ids, d_weights, d_scores, tokens, experts, k, renormalize);
  return check_launch(fn, "route_topk_backward_kernel");
}

int32_t moe4j_cuda_route_plan(const int32_t *expert_ids, const float *weights, int64_t tokens,
                              int64_t experts, int32_t k, int64_t capacity, int64_t *offsets,
                              int32_t *sorted_token, int32_t *slot_of, int64_t *counts,
                              void *stream) {
  const char *fn = "moe4j_cuda_route_plan";
  ArgCheck chk(fn);
  check_route_plan(chk, expert_ids, weights, tokens, experts, k, capacity, offsets, sorted_token,
                   slot_of, counts);
  if (chk.failed()) return chk.status();
  cudaStream_t s = as_stream(stream);
  const int64_t n = tokens * k;
  if (reference_kernels_enabled()) {
    route_plan_ref<<<1, 1, 0, s>>>(expert_ids, weights, tokens, experts, k, capacity, offsets,
                                   sorted_token, slot_of, counts);
    return check_launch(fn, "route_plan_ref");
  }
  int32_t st = cuda_status(
      cudaMemsetAsync(offsets, 0, (size_t)(experts + 1) * sizeof(int64_t), s), fn,
      "cudaMemsetAsync");
  if (st != MOE4J_OK) return st;
  if (n > 0) {
    route_count_kernel<<<blocks_for(n, kCountThreads), kCountThreads, 0, s>>>(expert_ids, n,
                                                                              experts, offsets);
    st = check_launch(fn, "route_count_kernel");
    if (st != MOE4J_OK) return st;
  }
  route_scan_kernel<<<1, kScanThreads, 0, s>>>(offsets, counts, experts, capacity);
  st = check_launch(fn, "route_scan_kernel");
  if (st != MOE4J_OK || n == 0) return st;
  route_place_kernel<<<(unsigned int)(experts + 1), kPlaceThreads, 0, s>>>(
      expert_ids, weights, n, experts, capacity, offsets, sorted_token, slot_of, k);
  return check_launch(fn, "route_place_kernel");
}

int32_t moe4j_cuda_route_gather(int32_t dtype, const void *x, const int32_t *sorted_token,
                                void *rows, int64_t num_rows, int64_t tokens, int64_t hidden,
                                void *stream) {
  const char *fn = "moe4j_cuda_route_gather";
  ArgCheck chk(fn);
  check_route_gather(chk, dtype, x, sorted_token, rows, num_rows, tokens, hidden);
  if (chk.failed()) return chk.status();
  const int64_t row_bytes = hidden * dtype_size(dtype);
  if (num_rows * row_bytes == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  const unsigned int blocks = blocks_for(num_rows, kGatherThreads / 32);
  const bool x16 = x == nullptr || aligned_to(x, 16), x4 = x == nullptr || aligned_to(x, 4);
  if (row_bytes % 16 == 0 && x16 && aligned_to(rows, 16))
    route_gather_kernel<<<blocks, kGatherThreads, 0, s>>>((const uint4 *)x, sorted_token,
                                                          (uint4 *)rows, num_rows, tokens,
                                                          row_bytes / 16);
  else if (row_bytes % 4 == 0 && x4 && aligned_to(rows, 4))
    route_gather_kernel<<<blocks, kGatherThreads, 0, s>>>((const uint32_t *)x, sorted_token,
                                                          (uint32_t *)rows, num_rows, tokens,
                                                          row_bytes / 4);
  else
    route_gather_kernel<<<blocks, kGatherThreads, 0, s>>>((const uint16_t *)x, sorted_token,
                                                          (uint16_t *)rows, num_rows, tokens,
                                                          row_bytes / 2);
  return check_launch(fn, "route_gather_kernel");
}

int32_t moe4j_cuda_route_gather_backward(int32_t dtype, const void *d_rows,
                                         const int32_t *slot_of, void *dx, int64_t tokens,
                                         int32_t k, int64_t num_rows, int64_t hidden,
                                         int32_t accumulate, void *stream) {
  const char *fn = "moe4j_cuda_route_gather_backward";
  ArgCheck chk(fn);
  check_route_gather_backward(chk, dtype, d_rows, slot_of, dx, tokens, k, num_rows, hidden,
                              accumulate);
  if (chk.failed()) return chk.status();
  if (tokens * hidden == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  const unsigned int blocks = row_blocks(tokens);
  const bool packed = packed_ok(hidden, dtype_size(dtype), d_rows, dx, nullptr);
  if (dtype == MOE4J_DTYPE_BF16) {
    if (packed)
      route_gather_backward_kernel<bf16_t, 8><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)d_rows, slot_of, (bf16_t *)dx, tokens, k, num_rows, hidden, accumulate);
    else
      route_gather_backward_kernel<bf16_t, 1><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)d_rows, slot_of, (bf16_t *)dx, tokens, k, num_rows, hidden, accumulate);
  } else {
    if (packed)
      route_gather_backward_kernel<float, 4><<<blocks, kRowThreads, 0, s>>>(
          (const float *)d_rows, slot_of, (float *)dx, tokens, k, num_rows, hidden, accumulate);
    else
      route_gather_backward_kernel<float, 1><<<blocks, kRowThreads, 0, s>>>(
          (const float *)d_rows, slot_of, (float *)dx, tokens, k, num_rows, hidden, accumulate);
  }
  return check_launch(fn, "route_gather_backward_kernel");
}

int32_t moe4j_cuda_route_combine(int32_t dtype, const void *rows, const int32_t *slot_of,
                                 const float *weights, void *y, int64_t tokens, int32_t k,
                                 int64_t num_rows, int64_t hidden, void *stream) {
  const char *fn = "moe4j_cuda_route_combine";
  ArgCheck chk(fn);
  check_route_combine(chk, dtype, rows, slot_of, weights, y, tokens, k, num_rows, hidden);
  if (chk.failed()) return chk.status();
  if (tokens * hidden == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  const unsigned int blocks = row_blocks(tokens);
  const bool packed = packed_ok(hidden, dtype_size(dtype), rows, y, nullptr);
  if (dtype == MOE4J_DTYPE_BF16) {
    if (packed)
      route_combine_kernel<bf16_t, 8><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)rows, slot_of, weights, (bf16_t *)y, tokens, k, num_rows, hidden);
    else
      route_combine_kernel<bf16_t, 1><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)rows, slot_of, weights, (bf16_t *)y, tokens, k, num_rows, hidden);
  } else {
    if (packed)
      route_combine_kernel<float, 4><<<blocks, kRowThreads, 0, s>>>(
          (const float *)rows, slot_of, weights, (float *)y, tokens, k, num_rows, hidden);
    else
      route_combine_kernel<float, 1><<<blocks, kRowThreads, 0, s>>>(
          (const float *)rows, slot_of, weights, (float *)y, tokens, k, num_rows, hidden);
  }
  return check_launch(fn, "route_combine_kernel");
}

int32_t moe4j_cuda_route_combine_backward(int32_t dtype, const void *dy, const void *rows,
                                          const int32_t *slot_of, const float *weights,
                                          void *d_rows, float *d_weights, int64_t tokens,
                                          int32_t k, int64_t num_rows, int64_t hidden,
                                          void *stream) {
  const char *fn = "moe4j_cuda_route_combine_backward";
  ArgCheck chk(fn);
  check_route_combine_backward(chk, dtype, dy, rows, slot_of, weights, d_rows, d_weights, tokens,
                               k, num_rows, hidden);
  if (chk.failed()) return chk.status();
  cudaStream_t s = as_stream(stream);
  const int64_t es = dtype_size(dtype);
  if (num_rows * hidden > 0) {
    int32_t st = cuda_status(cudaMemsetAsync(d_rows, 0, (size_t)(num_rows * hidden * es), s), fn,
                             "cudaMemsetAsync");
    if (st != MOE4J_OK) return st;
  }
  if (tokens * k == 0) return MOE4J_OK;
  if (reference_kernels_enabled()) {
    const int64_t elems = tokens * k * hidden;
    if (dtype == MOE4J_DTYPE_BF16) {
      if (elems > 0)
        route_combine_drows_ref<bf16_t><<<blocks_for(elems, kRefThreads, INT32_MAX), kRefThreads,
                                          0, s>>>((const bf16_t *)dy, slot_of, weights,
                                                  (bf16_t *)d_rows, tokens, k, num_rows, hidden);
      if (d_weights != nullptr)
        route_combine_dweights_ref<bf16_t><<<blocks_for(tokens * k, kRefThreads, INT32_MAX),
                                             kRefThreads, 0, s>>>(
            (const bf16_t *)dy, (const bf16_t *)rows, slot_of, d_weights, tokens, k, num_rows,
            hidden);
    } else {
      if (elems > 0)
        route_combine_drows_ref<float><<<blocks_for(elems, kRefThreads, INT32_MAX), kRefThreads, 0,
                                         s>>>((const float *)dy, slot_of, weights,
                                              (float *)d_rows, tokens, k, num_rows, hidden);
      if (d_weights != nullptr)
        route_combine_dweights_ref<float><<<blocks_for(tokens * k, kRefThreads, INT32_MAX),
                                            kRefThreads, 0, s>>>(
            (const float *)dy, (const float *)rows, slot_of, d_weights, tokens, k, num_rows,
            hidden);
    }
    return check_launch(fn, "route_combine_backward_ref");
  }
  const unsigned int blocks = row_blocks(tokens);
  const bool packed = packed_ok(hidden, es, dy, rows, d_rows);
  if (dtype == MOE4J_DTYPE_BF16) {
    if (packed)
      route_combine_backward_kernel<bf16_t, 8><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)dy, (const bf16_t *)rows, slot_of, weights, (bf16_t *)d_rows, d_weights,
          tokens, k, num_rows, hidden);
    else
      route_combine_backward_kernel<bf16_t, 1><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)dy, (const bf16_t *)rows, slot_of, weights, (bf16_t *)d_rows, d_weights,
          tokens, k, num_rows, hidden);
  } else {
    if (packed)
      route_combine_backward_kernel<float, 4><<<blocks, kRowThreads, 0, s>>>(
          (const float *)dy, (const float *)rows, slot_of, weights, (float *)d_rows, d_weights,
          tokens, k, num_rows, hidden);
    else
      route_combine_backward_kernel<float, 1><<<blocks, kRowThreads, 0, s>>>(
          (const float *)dy, (const float *)rows, slot_of, weights, (float *)d_rows, d_weights,
          tokens, k, num_rows, hidden);
  }
  return check_launch(fn, "route_combine_backward_kernel");
}

}  // extern "C"
