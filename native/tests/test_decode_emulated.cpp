/* The KV-cache decode CUDA kernels (kernels/decode_kernels.cuh, the very code decode.cu compiles
 * for the GPU) run on the CPU under the warp emulator (warp_emulator.h), launched as decode.cu's
 * decode_launch does (append, split kernel with the NJ and vector/element choice, merge), against
 * the CPU twin moe4j_cpu_attention_decode with the GPU test's bound (kernels/tests/test_decode.cpp:
 * 2e-4 * max|v| per f32 output, plus one bf16 ulp, doubled because both twins carry their own
 * rounding); the append bitwise. What this checks without a GPU: the block's head group and kv
 * head mapping (GQA, a second partial group), the 4 warps' key striding and warp-order merge
 * through shared memory, the vector and element load paths, the split ranges and the workspace
 * layout the merge kernel reads, windows, and the NaN rows of invalid lengths.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "check.h"
#include "emulated_compare.h"
#include "moe4j.h"
#include "numerics.h"
#include "warp_emulator.h"

/* the kernels under test */
#include "../../kernels/decode_kernels.cuh"

using namespace moe4j;
using namespace emulated_compare;

namespace {

struct Shape {
  int64_t batch, new_tokens, max_seq, q_heads, kv_heads, head_dim, window;
};

/* decode.cu's launch_split: grid (B * N, kv heads x head groups, split_k), vector path when the
 * row is 32 * NJ elements and the caches are aligned to a lane's vector. */
template <typename T, int NJ>
void emulated_split(const Shape &s, const T *q, const T *kc, const T *vc, const int32_t *len, T *out,
                    float *ws, float scale, int split_k) {
  const int hpk = (int)(s.q_heads / s.kv_heads), groups = (hpk + kGroup - 1) / kGroup;
  const dim3 grid{(unsigned)(s.batch * s.new_tokens), (unsigned)(s.kv_heads * groups), (unsigned)split_k};
  const uintptr_t unit = NJ * sizeof(T) < 16 ? NJ * sizeof(T) : 16;
  const bool vec = s.head_dim == 32 * NJ && (uintptr_t)kc % unit == 0 && (uintptr_t)vc % unit == 0;
  const int qh = (int)s.q_heads, kh = (int)s.kv_heads, hd = (int)s.head_dim;
  if (vec)
    emu::run_grid(grid, kDecodeThreads, [&] {
      decode_split_kernel<T, NJ, true>(q, kc, vc, len, out, ws, s.new_tokens, s.max_seq, qh, kh, hd, groups, s.window, scale);
    });
  else
    emu::run_grid(grid, kDecodeThreads, [&] {
      decode_split_kernel<T, NJ, false>(q, kc, vc, len, out, ws, s.new_tokens, s.max_seq, qh, kh, hd, groups, s.window, scale);
    });
}

/* decode.cu's decode_launch, fast path (reference: decode_ref_kernel after the append). */
template <typename T>
void emulated_decode(const Shape &s, const T *q, const T *kn, const T *vn, T *kc, T *vc, const int32_t *len, T *out,
                     float *ws, float scale, int split_k, bool ref) {
  const int64_t row = s.kv_heads * s.head_dim, rows = s.batch * s.new_tokens * s.q_heads;
  emu::run_grid(dim3{2, 1, 1}, kAppendThreads,
                [&] { decode_append_kernel<T>(kn, vn, kc, vc, len, s.batch, s.new_tokens, s.max_seq, row); });
  if (ref) {
    emu::run_grid(dim3{(unsigned)((rows + kRefThreads - 1) / kRefThreads), 1, 1}, kRefThreads, [&] {
      decode_ref_kernel<T>(q, kc, vc, len, out, s.batch, s.new_tokens, s.max_seq, (int)s.q_heads, (int)s.kv_heads,
                           (int)s.head_dim, s.window, scale);
    });
    return;
  }
  const int nj = (int)((s.head_dim + 31) / 32);
  if (nj <= 1) emulated_split<T, 1>(s, q, kc, vc, len, out, ws, scale, split_k);
  else if (nj <= 2) emulated_split<T, 2>(s, q, kc, vc, len, out, ws, scale, split_k);
  else if (nj <= 4) emulated_split<T, 4>(s, q, kc, vc, len, out, ws, scale, split_k);
  else emulated_split<T, 8>(s, q, kc, vc, len, out, ws, scale, split_k);
  if (split_k == 1) return;
  emu::run_grid(dim3{(unsigned)((rows + kMergeThreads / 32 - 1) / (kMergeThreads / 32)), 1, 1}, kMergeThreads,
                [&] { decode_merge_kernel<T>(ws, out, rows, (int)s.head_dim, split_k); });
}

/* One shape through the emulated kernels (fast at split_k 1 and 3, and the reference kernel)
 * against the CPU twin; `cache_offset` elements shift the caches off the vector alignment. */
template <typename S>
void compare(const Shape &s, const std::vector<int32_t> &len, size_t cache_offset = 0) {
  using T = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  const int32_t dtype = sizeof(S) == 2 ? MOE4J_DTYPE_BF16 : MOE4J_DTYPE_F32;
  const int64_t D = s.head_dim;
  const size_t nq = s.batch * s.new_tokens * s.q_heads * D, nkv = s.batch * s.new_tokens * s.kv_heads * D,
               nc = s.batch * s.max_seq * s.kv_heads * D;
  const uint64_t seed = 7 + D * 131 + s.q_heads * 17 + s.new_tokens * 3 + s.window;
  auto enc = [](float f) { return encode<S>({f})[0]; };
  const auto q = encode<S>(check::randn(nq, seed)), kn = encode<S>(check::randn(nkv, seed + 1)),
             vn = encode<S>(check::randn(nkv, seed + 2));
  /* cache: randn below L, huge values from L on (a key read past the visible range wrecks the output) */
  auto kc0 = encode<S>(check::randn(nc, seed + 3)), vc0 = encode<S>(check::randn(nc, seed + 4));
  for (int64_t b = 0; b < s.batch; b++)
    for (int64_t p = len[b] < 0 ? 0 : len[b]; p < s.max_seq; p++)
      for (int64_t c = 0; c < s.kv_heads * D; c++) {
        kc0[(b * s.max_seq + p) * s.kv_heads * D + c] = enc(3e4f);
        vc0[(b * s.max_seq + p) * s.kv_heads * D + c] = enc(-3e30f);
      }
  const float scale = 1.0f / sqrtf((float)D);
  double vmax = 0;
  for (size_t e = 0; e < nkv; e++) vmax = fmax(vmax, fabs(val(vn[e])));
  for (size_t e = 0; e < nc; e++)
    if (fabs(val(vc0[e])) < 1e4) vmax = fmax(vmax, fabs(val(vc0[e])));

  /* the CPU twin; sequences with an invalid length are the CUDA kernels' NaN rows instead */
  std::vector<int32_t> cpu_len = len;
  for (int64_t b = 0; b < s.batch; b++)
    if (len[b] < 0 || len[b] + s.new_tokens > s.max_seq) cpu_len[b] = 0;
  std::vector<S> kc = kc0, vc = vc0, cpu_out(nq);
  {
    int64_t bytes = 0;
    CHECK_STATUS(moe4j_cpu_attention_decode_workspace_bytes(s.batch, s.new_tokens, s.q_heads, D, 1, &bytes), MOE4J_OK);
    std::vector<float> ws(bytes / 4 + 1);
    CHECK_STATUS(moe4j_cpu_attention_decode(dtype, q.data(), kn.data(), vn.data(), kc.data(), vc.data(), cpu_len.data(),
                                            cpu_out.data(), s.batch, s.new_tokens, s.max_seq, s.q_heads, s.kv_heads, D,
                                            s.window, scale, 1, ws.data(), bytes), MOE4J_OK);
  }
  const size_t per_seq_cache = s.max_seq * s.kv_heads * D, per_seq_out = s.new_tokens * s.q_heads * D;
  for (int64_t b = 0; b < s.batch; b++) /* no append for an invalid length */
    if (cpu_len[b] != len[b]) {
      memcpy(&kc[b * per_seq_cache], &kc0[b * per_seq_cache], per_seq_cache * sizeof(S));
      memcpy(&vc[b * per_seq_cache], &vc0[b * per_seq_cache], per_seq_cache * sizeof(S));
    }

  for (int split_k : {1, 3, 0 /* reference */}) {
    std::vector<S> kcb(cache_offset + nc), vcb(cache_offset + nc), out(nq, enc(7.0f));
    memcpy(kcb.data() + cache_offset, kc0.data(), nc * sizeof(S));
    memcpy(vcb.data() + cache_offset, vc0.data(), nc * sizeof(S));
    std::vector<float> ws(nq * 3 + s.batch * s.new_tokens * s.q_heads * 3 * 2 + 1, NAN);
    emulated_decode<T>(s, (const T *)q.data(), (const T *)kn.data(), (const T *)vn.data(), (T *)(kcb.data() + cache_offset),
                       (T *)(vcb.data() + cache_offset), len.data(), (T *)out.data(), ws.data(), scale,
                       split_k == 0 ? 1 : split_k, split_k == 0);
    CHECK(memcmp(kcb.data() + cache_offset, kc.data(), nc * sizeof(S)) == 0); /* append: bitwise */
    CHECK(memcmp(vcb.data() + cache_offset, vc.data(), nc * sizeof(S)) == 0);
    int bad = 0;
    for (int64_t b = 0; b < s.batch; b++)
      for (size_t e = b * per_seq_out; e < (b + 1) * per_seq_out; e++) {
        const double g = val(out[e]), w = val(cpu_out[e]);
        const bool ok = cpu_len[b] != len[b] ? isnan(g)
                                             : fabs(g - w) <= 2 * (2e-4 * vmax + (sizeof(S) == 4 ? 0.0 : fabs(w) / 256));
        if (!ok && bad++ < 3) fprintf(stderr, "      [%zu] got %.8g want %.8g\n", e, g, w);
      }
    if (bad) {
      fprintf(stderr, "    %s B %lld N %lld Hq %lld Hkv %lld D %lld window %lld split_k %d offset %zu: %d bad\n",
              sizeof(S) == 4 ? "F32" : "BF16", (long long)s.batch, (long long)s.new_tokens, (long long)s.q_heads,
              (long long)s.kv_heads, (long long)D, (long long)s.window, split_k, cache_offset, bad);
      CHECK(bad == 0);
    }
  }
}

}  // namespace

/* head_dim 32 / 64 / 128 take the vector path (NJ 1, 2, 4), 4 and 80 the element path; GQA 4:1,
 * 12:1 (a block of 8 heads and a partial block of 4), 2:2; one and three new tokens; a window. */
TEST_CASE(split_merge_and_reference_match_cpu_twin) {
  compare<float>({2, 1, 24, 4, 1, 32, 0}, {0, 13});
  compare<uint16_t>({2, 3, 24, 12, 1, 64, 0}, {5, 20});
  compare<float>({1, 3, 30, 2, 2, 80, 5}, {17});
  compare<uint16_t>({2, 1, 20, 4, 2, 128, 0}, {19, 7});
  compare<float>({1, 2, 16, 2, 1, 4, 3}, {9});
}

TEST_CASE(misaligned_caches_take_the_element_path) {
  compare<uint16_t>({1, 2, 20, 4, 2, 128, 0}, {10}, 1); /* 2-byte offset: not 8-byte aligned */
  compare<float>({1, 1, 20, 2, 1, 64, 0}, {12}, 1);     /* 4-byte offset: not 8-byte aligned */
}

TEST_CASE(invalid_lengths_give_nan_rows_and_no_append) {
  compare<float>({3, 2, 12, 2, 1, 32, 0}, {11, 4, -1}); /* 11 + 2 > 12, and a negative length */
}

TEST_MAIN("decode_emulated")
