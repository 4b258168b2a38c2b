/*
 * KV-cache decode (flash-decoding): moe4j.h "KV-cache decode" — append the new keys/values to the
 * caches, then attend the new queries to the cache, the context cut into split_k chunks merged with
 * their log-sum-exps. CPU twin: native/src/cpu_decode.cpp (moe4j_cpu_attention_decode); index
 * math and merge: common/decode_math.h; argument rules: native/src/decode_args.h.
 *
 * Layouts: q, out [B, N, Hq, D]; k_new, v_new [B, N, Hkv, D]; k_cache, v_cache [B, max_seq, Hkv, D];
 * lengths I32 [B] on the device (read, never advanced). GQA: query head h reads kv head
 * h / (Hq / Hkv). New query i of sequence b (L = lengths[b]) sees key positions p with
 * p <= L + i (every cached key, the new keys <= i) and, when window > 0, p > L + i - window.
 *
 * Kernels (one stream, in order):
 *   1. decode_append_kernel: k_cache[b, L + i] = k_new[b, i], same for v (grid-stride, one element
 *      a thread; L read on the device).
 *   2. decode_split_kernel: one block per (b * N + i, kv head x head group, split). The visible
 *      keys [lo, hi) of the query are cut into split_k chunks (decode_math.h decode_chunk); a block
 *      handles chunk `split` for up to kGroup query heads of the GQA group at once, so each cached
 *      K/V row is read once per group (not once per query head). Its 4 warps stride over the
 *      chunk's keys; a lane holds NJ = ceil(D / 32) elements of q (all heads, pre-scaled), of the
 *      key and value rows and of the accumulators: when D == 32 NJ (32/64/128/256) and the caches
 *      are aligned, elements lane * NJ .. + NJ - 1 read with one vector load (16 bytes for bf16
 *      D 256 and f32 D >= 128, 8 bytes for bf16 D 128), else elements lane + 32 j (element loads,
 *      coalesced: one 64/128-byte transaction per warp per j); scores are warp reductions (every lane gets the sum), then each
 *      head updates an online softmax (m, l, acc). The 4 warps' partials are merged in warp order
 *      through shared memory, giving the chunk partial (m, l, acc[D]) of decode_math.h.
 *      split_k == 1: out = acc / l directly (exactly the one-chunk merge); split_k > 1: the partial
 *      goes to the workspace (decode_math.h layout: acc at p * D, m at N * D + p, l at
 *      N * D + N + p, p = decode_partial_index).
 *   3. decode_merge_kernel (split_k > 1): one warp per (b, i, q head) merges its split_k partials
 *      in ascending split (decode_merge_max / _denominator / _value) and writes out, rounded once.
 *
 * Why: decode is memory-bound (one query row per head against a long cache); reading each K/V
 * row once per GQA group and splitting long contexts over blocks keeps HBM busy when B * Hkv is
 * small. Deterministic: no atomics, fixed reduction orders (keys within a warp in order, warps in
 * order, splits in order), so a fixed split_k is bitwise reproducible; different split_k differ by
 * f32 rounding only. The summation order inside a chunk differs from the CPU twin's (4 interleaved
 * warp streams), so the twins agree to f32 rounding, not bitwise.
 *
 * Limits: head_dim even in [2, 256] (NJ <= 8), split_k <= 1024, B * N < 2^31, Hkv * ceil(Hq / Hkv
 * / 8) <= 65535 (decode_args.h rules plus the grid); the workspace is required by the shared rules
 * even for split_k == 1 (that path does not touch it). lengths are on the device and cannot be
 * validated before launch: a sequence with L < 0 or L + N > max_seq is not appended to and gets NaN
 * outputs (the CPU twin reports an error instead). A query sees at least its own key, so l > 0.
 * Reference kernel (moe4j_cuda_use_reference_kernels): one thread per (b, i, q head), a plain
 * two-pass softmax over the visible keys (max, then exp/sum/acc; acc[256] in local memory), split_k
 * and the workspace ignored.
 *
 * Not yet done: measuring against HBM bandwidth (compiled, not yet run on a GPU). Each warp has one
 * key row in flight and NJ = 8 needs ~190 registers (2 blocks, 8 warps an SM), which probably limits
 * the bytes in flight below what 80% of HBM needs; the next steps are two or more keys a warp per
 * iteration and q in shared memory instead of registers.
 * Device code: kernels/decode_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_decode_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cuda_check.cuh"
#include "decode_args.h"
#include "decode_kernels.cuh"

namespace moe4j {

namespace {

template <typename T, int NJ>
int32_t launch_split(const char *fn, const T *q, const T *kc, const T *vc, const int32_t *lengths,
                     T *out, float *ws, int64_t batch, int64_t new_tokens, int64_t max_seq,
                     int q_heads, int kv_heads, int head_dim, int64_t window, float scale,
                     int split_k, cudaStream_t st) {
  const int heads_per_kv = q_heads / kv_heads;
  const int groups = (heads_per_kv + kGroup - 1) / kGroup;
  const dim3 grid((unsigned)(batch * new_tokens), (unsigned)(kv_heads * groups),
                  (unsigned)split_k);
  /* vector path: whole rows of 32 * NJ elements, caches aligned to the lane's vector */
  const uintptr_t unit = NJ * sizeof(T) < 16 ? NJ * sizeof(T) : 16;
  const bool vec = head_dim == 32 * NJ && ((uintptr_t)kc % unit) == 0 && ((uintptr_t)vc % unit) == 0;
  if (vec)
    decode_split_kernel<T, NJ, true><<<grid, kDecodeThreads, 0, st>>>(
        q, kc, vc, lengths, out, ws, new_tokens, max_seq, q_heads, kv_heads, head_dim, groups,
        window, scale);
  else
    decode_split_kernel<T, NJ, false><<<grid, kDecodeThreads, 0, st>>>(
        q, kc, vc, lengths, out, ws, new_tokens, max_seq, q_heads, kv_heads, head_dim, groups,
        window, scale);
  return check_launch(fn, "decode_split_kernel");
}

template <typename T>
int32_t decode_launch(const char *fn, const T *q, const T *k_new, const T *v_new, T *kc, T *vc,
                      const int32_t *lengths, T *out, int64_t batch, int64_t new_tokens,
                      int64_t max_seq, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                      int64_t window, float scale, int32_t split_k, float *ws, cudaStream_t st) {
  const int64_t row = kv_heads * head_dim;
  decode_append_kernel<T><<<blocks_for(batch * new_tokens * row, kAppendThreads), kAppendThreads,
                            0, st>>>(k_new, v_new, kc, vc, lengths, batch, new_tokens, max_seq,
                                     row);
  int32_t s = check_launch(fn, "decode_append_kernel");
  if (s != MOE4J_OK) return s;
  const int64_t rows = batch * new_tokens * q_heads;
  if (reference_kernels_enabled()) {
    decode_ref_kernel<T><<<blocks_for(rows, kRefThreads, INT32_MAX), kRefThreads, 0, st>>>(
        q, kc, vc, lengths, out, batch, new_tokens, max_seq, (int)q_heads, (int)kv_heads,
        (int)head_dim, window, scale);
    return check_launch(fn, "decode_ref_kernel");
  }
  const int nj = (int)((head_dim + 31) / 32);
  const int qh = (int)q_heads, kh = (int)kv_heads, hd = (int)head_dim;
  if (nj <= 1)
    s = launch_split<T, 1>(fn, q, kc, vc, lengths, out, ws, batch, new_tokens, max_seq, qh, kh,
                           hd, window, scale, split_k, st);
  else if (nj <= 2)
    s = launch_split<T, 2>(fn, q, kc, vc, lengths, out, ws, batch, new_tokens, max_seq, qh, kh,
                           hd, window, scale, split_k, st);
  else if (nj <= 4)
    s = launch_split<T, 4>(fn, q, kc, vc, lengths, out, ws, batch, new_tokens, max_seq, qh, kh,
                           hd, window, scale, split_k, st);
  else
    s = launch_split<T, 8>(fn, q, kc, vc, lengths, out, ws, batch, new_tokens, max_seq, qh, kh,
                           hd, window, scale, split_k, st);
  if (s != MOE4J_OK || split_k == 1) return s;
  decode_merge_kernel<T><<<blocks_for(rows, kMergeThreads / 32, INT32_MAX), kMergeThreads, 0,
                           st>>>(ws, out, rows, hd, split_k);
  return check_launch(fn, "decode_merge_kernel");
}

}  // namespace

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_attention_decode_workspace_bytes(int64_t batch, int64_t new_tokens,
                                                    int64_t q_heads, int64_t head_dim,
                                                    int32_t split_k, int64_t *out_bytes) {
  const char *fn = "moe4j_cuda_attention_decode_workspace_bytes";
  ArgCheck chk(fn);
  check_attention_decode_workspace_bytes(chk, batch, new_tokens, q_heads, head_dim, split_k,
                                         out_bytes);
  if (chk.failed()) return chk.status();
  *out_bytes = attention_decode_workspace_bytes(batch, new_tokens, q_heads, head_dim, split_k);
  return MOE4J_OK;
}

int32_t moe4j_cuda_attention_decode(int32_t dtype, const void *q, const void *k_new,
                                    const void *v_new, void *k_cache, void *v_cache,
                                    const int32_t *lengths, void *out, int64_t batch,
                                    int64_t new_tokens, int64_t max_seq, int64_t q_heads,
                                    int64_t kv_heads, int64_t head_dim, int64_t window,
                                    float scale, int32_t split_k, void *workspace,
                                    int64_t workspace_bytes, void *stream) {
  const char *fn = "moe4j_cuda_attention_decode";
  ArgCheck chk(fn);
  check_attention_decode(chk, dtype, q, k_new, v_new, k_cache, v_cache, lengths, out, batch,
                         new_tokens, max_seq, q_heads, kv_heads, head_dim, window, scale, split_k,
                         workspace, workspace_bytes);
  if (chk.failed()) return chk.status();
  if (batch == 0 || new_tokens == 0) return MOE4J_OK;
  chk.require(batch * new_tokens <= INT32_MAX && kv_heads * ((q_heads / kv_heads + kGroup - 1) /
                                                             kGroup) <= 65535 && split_k <= 65535,
              "grid too large: batch * new_tokens %lld, kv head groups %lld, split_k %d",
              (long long)(batch * new_tokens),
              (long long)(kv_heads * ((q_heads / kv_heads + kGroup - 1) / kGroup)), (int)split_k);
  if (chk.failed()) return chk.status();
  cudaStream_t st = as_stream(stream);
  if (dtype == MOE4J_DTYPE_BF16)
    return decode_launch<bf16_t>(fn, (const bf16_t *)q, (const bf16_t *)k_new,
                                 (const bf16_t *)v_new, (bf16_t *)k_cache, (bf16_t *)v_cache,
                                 lengths, (bf16_t *)out, batch, new_tokens, max_seq, q_heads,
                                 kv_heads, head_dim, window, scale, split_k, (float *)workspace,
                                 st);
  return decode_launch<float>(fn, (const float *)q, (const float *)k_new, (const float *)v_new,
                              (float *)k_cache, (float *)v_cache, lengths, (float *)out, batch,
                              new_tokens, max_seq, q_heads, kv_heads, head_dim, window, scale,
                              split_k, (float *)workspace, st);
}

}  // extern "C"
