/* CUDA KV-cache decode (flash-decoding) against a double-precision reference computed here and
 * the CPU twin moe4j_cpu_attention_decode (run at split_k 1 and 3, its caches checked too): F32 and
 * BF16, fast and reference kernels, head_dim 4/32/64/80/128/256 (NJ 1, 1, 2, 3->4, 4, 8;
 * 32/64/128/256 take the vector-load path, 4/80 and misaligned caches the element-load path), GQA
 * ratios 1, 4, 12 (two head groups of a block, the second partial) and Hq == Hkv, one and several new tokens, sliding window, several
 * split_k including more splits than keys; cache contents after the append bitwise equal to the
 * expected append (positions outside [L, L + N) untouched); a fixed split_k bitwise reproducible;
 * positions past the visible range filled with huge values (reading one would wreck the output);
 * lengths violating L + N <= max_seq give NaN rows and no append.
 *
 * Tolerance (f32): every input is exactly representable, so the reference differs only by the
 * kernel's f32 rounding. A score is a D-term dot product (D <= 256, |q|,|k| ~ N(0,1), scale
 * 1/sqrt(D)): its rounding error is <= D * 2^-24 * sum|q k| * scale ~ 2^-24 * 256 * 16 ~ 2.5e-4
 * at worst, typically ~1e-6; exp turns an absolute score error e into a relative weight error e,
 * and the output is a convex combination of values |v| <= vmax (~5 for randn), plus the
 * accumulation's own rounding (<= ctx * 2^-24 relative). Tested at 2e-4 * vmax (typical errors are
 * ~1e-6 * vmax; the bound leaves room for the worst case without hiding a wrong key or weight,
 * which moves outputs by ~1e-2 or more). BF16: the outputs are rounded once to bf16, half an ulp
 * = 2^-9 |w| (both twins may land on neighbouring values: one ulp, 2^-8 |w|), plus the f32 bound.
 * The CPU twin is compared at twice the bound (both sides carry their own error).
 */
#include <math.h>
#include <string.h>

#include "gpu_test.h"
#include "numerics.h"

using namespace moe4j;

namespace {

template <typename S> float val(S s);
template <> float val<float>(float s) { return s; }
template <> float val<uint16_t>(uint16_t s) { return bf16_bits_to_f32(s); }
template <typename S> S enc(float f);
template <> float enc<float>(float f) { return f; }
template <> uint16_t enc<uint16_t>(float f) { return f32_to_bf16_bits(f); }
template <typename S> int32_t dtype_of() { return sizeof(S) == 4 ? MOE4J_DTYPE_F32 : MOE4J_DTYPE_BF16; }

template <typename S>
std::vector<S> encode(const std::vector<float> &v) {
  std::vector<S> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = enc<S>(v[i]);
  return out;
}

struct Shape {
  int64_t batch, new_tokens, max_seq, q_heads, kv_heads, head_dim, window;
};

/* Double-precision decode over the already appended cache (host, S-decoded values). */
template <typename S>
std::vector<double> reference(const Shape &s, const std::vector<S> &q, const std::vector<S> &kc,
                              const std::vector<S> &vc, const std::vector<int32_t> &len,
                              float scale) {
  const int64_t D = s.head_dim, G = s.q_heads / s.kv_heads;
  std::vector<double> out(s.batch * s.new_tokens * s.q_heads * D, 0.0);
  for (int64_t b = 0; b < s.batch; b++)
    for (int64_t i = 0; i < s.new_tokens; i++)
      for (int64_t h = 0; h < s.q_heads; h++) {
        const int64_t L = len[b], hi = L + i + 1;
        const int64_t lo = s.window > 0 && hi - s.window > 0 ? hi - s.window : 0;
        const int64_t kvh = h / G, r = (b * s.new_tokens + i) * s.q_heads + h;
        std::vector<double> sc(hi - lo);
        double mx = -INFINITY;
        for (int64_t p = lo; p < hi; p++) {
          double dot = 0;
          for (int64_t d = 0; d < D; d++)
            dot += (double)val(q[r * D + d]) *
                   val(kc[((b * s.max_seq + p) * s.kv_heads + kvh) * D + d]);
          sc[p - lo] = dot * scale;
          mx = fmax(mx, sc[p - lo]);
        }
        double sum = 0;
        for (auto &x : sc) sum += (x = exp(x - mx));
        for (int64_t p = lo; p < hi; p++)
          for (int64_t d = 0; d < D; d++)
            out[r * D + d] +=
                sc[p - lo] / sum * val(vc[((b * s.max_seq + p) * s.kv_heads + kvh) * D + d]);
      }
  return out;
}

template <typename S>
int count_bad(const std::vector<S> &got, const std::vector<double> &want, double vmax,
              double factor) {
  int bad = 0;
  for (size_t e = 0; e < want.size(); e++) {
    const double g = val(got[e]), w = want[e];
    const double tol = factor * (2e-4 * vmax + (sizeof(S) == 4 ? 0.0 : fabs(w) / 256));
    if (!(fabs(g - w) <= tol)) {
      if (bad < 5) fprintf(stderr, "      [%zu] got %.8g want %.8g\n", e, g, w);
      bad++;
    }
  }
  return bad;
}

/* cache_offset > 0: the caches start cache_offset elements into their allocations (element-aligned
 * but not vector-aligned: the launcher must take the element-load path). */
template <typename S>
void compare(const Shape &s, std::vector<int32_t> len, bool use_ref, size_t cache_offset = 0) {
  const int64_t D = s.head_dim;
  const size_t nq = s.batch * s.new_tokens * s.q_heads * D;
  const size_t nkv = s.batch * s.new_tokens * s.kv_heads * D;
  const size_t nc = s.batch * s.max_seq * s.kv_heads * D;
  const uint64_t seed = 7 + D * 131 + s.q_heads * 17 + s.new_tokens * 3 + s.window;
  const auto q = encode<S>(check::randn(nq, seed));
  const auto kn = encode<S>(check::randn(nkv, seed + 1));
  const auto vn = encode<S>(check::randn(nkv, seed + 2));
  /* cache: randn below L, huge values at and past L (overwritten by the append where visible;
   * anything read beyond the visible range shows up as a wrong output) */
  auto kc0 = encode<S>(check::randn(nc, seed + 3)), vc0 = encode<S>(check::randn(nc, seed + 4));
  for (int64_t b = 0; b < s.batch; b++)
    for (int64_t p = len[b]; p < s.max_seq; p++)
      for (int64_t c = 0; c < s.kv_heads * D; c++) {
        const size_t e = (b * s.max_seq + p) * s.kv_heads * D + c;
        kc0[e] = enc<S>(3e4f);
        vc0[e] = enc<S>(-3e30f);
      }
  /* expected caches after the append */
  auto kc = kc0, vc = vc0;
  for (int64_t b = 0; b < s.batch; b++)
    for (int64_t i = 0; i < s.new_tokens; i++)
      for (int64_t c = 0; c < s.kv_heads * D; c++) {
        const size_t src = (b * s.new_tokens + i) * s.kv_heads * D + c;
        const size_t dst = (b * s.max_seq + len[b] + i) * s.kv_heads * D + c;
        kc[dst] = kn[src];
        vc[dst] = vn[src];
      }
  const float scale = 1.0f / sqrtf((float)D);
  const auto want = reference<S>(s, q, kc, vc, len, scale);
  double vmax = 0;
  for (auto x : vn) vmax = fmax(vmax, fabs(val(x)));
  for (int64_t b = 0; b < s.batch; b++)
    for (int64_t p = 0; p < len[b]; p++)
      for (int64_t c = 0; c < s.kv_heads * D; c++)
        vmax = fmax(vmax, fabs(val(vc[(b * s.max_seq + p) * s.kv_heads * D + c])));

  std::vector<S> cpu_out;
  {
    for (int32_t sk : {1, 3}) {
      int64_t bytes = 0;
      CHECK_STATUS(moe4j_cpu_attention_decode_workspace_bytes(s.batch, s.new_tokens, s.q_heads, D, sk, &bytes), MOE4J_OK);
      std::vector<float> ws(bytes / 4 + 1);
      auto ckc = kc0, cvc = vc0;
      cpu_out.assign(nq, enc<S>(0.0f));
      CHECK_STATUS(moe4j_cpu_attention_decode(dtype_of<S>(), q.data(), kn.data(), vn.data(), ckc.data(), cvc.data(), len.data(), cpu_out.data(), s.batch, s.new_tokens, s.max_seq, s.q_heads, s.kv_heads, D, s.window, scale, sk, ws.data(), bytes), MOE4J_OK);
      CHECK(memcmp(ckc.data(), kc.data(), nc * sizeof(S)) == 0);
      CHECK(memcmp(cvc.data(), vc.data(), nc * sizeof(S)) == 0);
    }
  }

  CHECK_STATUS(moe4j_cuda_use_reference_kernels(use_ref ? 1 : 0), MOE4J_OK);
  for (int32_t split_k : {1, 2, 7, 64}) {
    if (use_ref && split_k > 2) break; /* the reference kernel ignores split_k */
    int64_t bytes = -1;
    CHECK_STATUS(moe4j_cuda_attention_decode_workspace_bytes(s.batch, s.new_tokens, s.q_heads, D, split_k, &bytes), MOE4J_OK);
    auto padded = [&](const std::vector<S> &c) {
      std::vector<S> v(cache_offset, enc<S>(0.0f));
      v.insert(v.end(), c.begin(), c.end());
      return v;
    };
    gpu::DeviceBuffer<S> d_q(q), d_kn(kn), d_vn(vn), d_kcb(padded(kc0)), d_vcb(padded(vc0)), d_out(nq);
    S *const kc_ptr = d_kcb.ptr + cache_offset, *const vc_ptr = d_vcb.ptr + cache_offset;
    gpu::DeviceBuffer<int32_t> d_len(len);
    gpu::DeviceBuffer<float> d_ws(bytes / 4);
    auto call = [&]() {
      return moe4j_cuda_attention_decode(dtype_of<S>(), d_q.ptr, d_kn.ptr, d_vn.ptr, kc_ptr, vc_ptr, d_len.ptr, d_out.ptr, s.batch, s.new_tokens, s.max_seq, s.q_heads, s.kv_heads, D, s.window, scale, split_k, d_ws.ptr, bytes, nullptr);
    };
    CHECK_STATUS(call(), MOE4J_OK);
    gpu::sync();
    const auto got = d_out.download();
    CHECK(memcmp(d_kcb.download().data() + cache_offset, kc.data(), nc * sizeof(S)) == 0); /* append: bitwise */
    CHECK(memcmp(d_vcb.download().data() + cache_offset, vc.data(), nc * sizeof(S)) == 0);
    /* the same call again (the append is idempotent: lengths are not advanced): bitwise equal */
    CHECK_STATUS(call(), MOE4J_OK);
    gpu::sync();
    CHECK(memcmp(d_out.download().data(), got.data(), nq * sizeof(S)) == 0);
    const int bad = count_bad<S>(got, want, vmax, 1.0);
    int bad_cpu = 0;
    if (!cpu_out.empty()) {
      std::vector<double> cw(nq);
      for (size_t e = 0; e < nq; e++) cw[e] = val(cpu_out[e]);
      bad_cpu = count_bad<S>(got, cw, vmax, 2.0);
    }
    if (bad || bad_cpu) {
      fprintf(stderr, "    %s %s B %lld N %lld Hq %lld Hkv %lld D %lld window %lld split_k %d: %d vs reference, %d vs CPU twin\n",
              sizeof(S) == 4 ? "F32" : "BF16", use_ref ? "ref" : "fast", (long long)s.batch,
              (long long)s.new_tokens, (long long)s.q_heads, (long long)s.kv_heads, (long long)D,
              (long long)s.window, split_k, bad, bad_cpu);
      CHECK(bad == 0 && bad_cpu == 0);
    }
  }
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(0), MOE4J_OK);
}

}  // namespace

TEST_CASE(kernels_match_reference_and_cpu_twin) {
  const int64_t heads[][2] = {{1, 1}, {4, 1}, {12, 1}, {3, 3}, {8, 2}};
  for (int64_t d : {4, 32, 64, 80, 128, 256})
    for (auto &h : heads)
      for (int64_t n : {1, 3})
        for (int64_t window : {0, 5}) {
          const Shape s{3, n, 120, h[0], h[1], d, window};
          const std::vector<int32_t> len{0, 37, 117 - (int32_t)n};
          compare<float>(s, len, false);
          compare<uint16_t>(s, len, false);
          if (d == 64 || d == 80) {
            compare<float>(s, len, true);
            compare<uint16_t>(s, len, true);
          }
        }
}

TEST_CASE(misaligned_caches_take_the_element_path) {
  const Shape s{2, 2, 40, 4, 2, 128, 0};
  compare<uint16_t>(s, {10, 30}, false, 1); /* 2-byte offset: not 8-byte aligned */
  compare<float>(s, {10, 30}, false, 2);    /* 8-byte offset: not 16-byte aligned */
  const Shape t{2, 1, 40, 8, 8, 256, 7};
  compare<uint16_t>(t, {39, 0}, false, 4);  /* 8-byte offset: not 16-byte aligned */
}

TEST_CASE(long_context_many_splits) {
  const Shape s{2, 2, 4096, 8, 1, 128, 0};
  compare<uint16_t>(s, {4000, 1234}, false);
  const Shape w{2, 1, 4096, 8, 2, 128, 300};
  compare<float>(w, {4095, 2000}, false);
}

TEST_CASE(bad_lengths_give_nan_rows_and_no_append) {
  const int64_t B = 2, N = 2, MS = 4, H = 2, D = 32;
  std::vector<int32_t> len{3, 1}; /* sequence 0: 3 + 2 > 4 */
  const auto q = check::randn(B * N * H * D, 1), kn = check::randn(B * N * H * D, 2);
  const auto kc0 = check::randn(B * MS * H * D, 3);
  gpu::DeviceBuffer<float> d_q(q), d_kn(kn), d_kc(kc0), d_vc(kc0), d_out(q.size());
  gpu::DeviceBuffer<int32_t> d_len(len);
  gpu::DeviceBuffer<float> d_ws(B * N * H * 2 * (D + 2));
  for (int32_t split_k : {1, 2}) {
    CHECK_STATUS(moe4j_cuda_attention_decode(MOE4J_DTYPE_F32, d_q.ptr, d_kn.ptr, d_kn.ptr, d_kc.ptr, d_vc.ptr, d_len.ptr, d_out.ptr, B, N, MS, H, H, D, 0, 0.25f, split_k, d_ws.ptr, (int64_t)d_ws.count * 4, nullptr), MOE4J_OK);
    gpu::sync();
    const auto out = d_out.download(), kc = d_kc.download();
    for (int64_t e = 0; e < N * H * D; e++) CHECK(isnan(out[e]));                 /* sequence 0 */
    for (int64_t e = N * H * D; e < 2 * N * H * D; e++) CHECK(!isnan(out[e]));     /* sequence 1 */
    CHECK(memcmp(kc.data(), kc0.data(), MS * H * D * sizeof(float)) == 0);       /* no append */
  }
}

TEST_CASE(bad_arguments_fail_without_launch) {
  gpu::DeviceBuffer<float> b(512);
  gpu::DeviceBuffer<int32_t> l(2);
  const int32_t F = MOE4J_DTYPE_F32, E = MOE4J_ERR_INVALID_ARGUMENT;
  CHECK_FAILS(moe4j_cuda_attention_decode(F, b.ptr, b.ptr + 64, b.ptr + 96, b.ptr + 128, b.ptr + 192, l.ptr, b.ptr + 256, 2, 2, 4, 4, 3, 4, 0, 0.5f, 1, nullptr, 0, nullptr), E, "must be a multiple of kv_heads");
  CHECK_FAILS(moe4j_cuda_attention_decode(F, b.ptr, b.ptr + 64, b.ptr + 96, b.ptr + 128, b.ptr + 192, l.ptr, b.ptr + 256, 2, 2, 4, 4, 2, 4, 0, 0.5f, 2, nullptr, 0, nullptr), E, "is smaller than the required");
  CHECK_STATUS(moe4j_cuda_attention_decode(F, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 1, 4, 4, 2, 4, 0, 0.5f, 1, nullptr, 0, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_attention_decode(F, nullptr, nullptr, nullptr, b.ptr, b.ptr + 64, l.ptr, nullptr, 2, 0, 4, 4, 2, 4, 0, 0.5f, 1, nullptr, 0, nullptr), MOE4J_OK);
  gpu::sync();
}

GPU_TEST_MAIN("gpu_decode")
