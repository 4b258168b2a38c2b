/*
 * KV-cache decode (CPU twin) against full attention on the concatenated cache
 * (moe4j_cpu_attention_forward, causal, same window, last new_tokens rows) and a fp64 reference
 * written here: contexts 0, 1, 3, 7, 150, 300 (two sequences of different lengths per case),
 * new_tokens 1 and 3, MHA and GQA, head_dim 64 and 6, windows 0 and 5, split_k 1, 3, 16 (more
 * splits than keys too) and 1024; the caches after the append (new rows exact, every other
 * element — guards past the new tokens included — unchanged); bf16 by the FlashAttention rule
 * (error vs fp64 at most 2x that of a naive bf16 implementation); large scores; bitwise
 * determinism across thread counts; the workspace size; bad arguments of both functions.
 *
 * Tolerance (f32): decode and the forward both accumulate in f32 but chunk the softmax sums
 * differently (tiles of 64 from key 0 vs split_k chunks from the window start, then an LSE merge),
 * so they differ by f32 rounding only: per output a convex combination of <= 303 values, each
 * sum's relative error <~ sqrt(n) * 2^-24 in practice (n * 2^-24 = 1.8e-5 worst case). We require
 * max |decode - reference| <= 1e-5 * max |reference| (observed ~1e-7..1e-6).
 */
#include <omp.h>
#include <string.h>

#include "check.h"
#include "cpu_common.h"
#include "decode_math.h"

using namespace moe4j;

namespace {

template <typename T>
int32_t dtype_code();
template <>
int32_t dtype_code<float>() { return MOE4J_DTYPE_F32; }
template <>
int32_t dtype_code<bf16_t>() { return MOE4J_DTYPE_BF16; }

template <typename T>
std::vector<T> convert(const std::vector<float> &v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = from_f32<T>(v[i]);
  return out;
}

double rb(double x) { return (double)bf16_bits_to_f32(f32_to_bf16_bits((float)x)); }

struct Case {
  int64_t b, t, hq, hkv, d, window;
  int32_t split_k;
  std::vector<int32_t> lengths;
  int64_t max_seq;
  float scale;
  int64_t nq() const { return b * t * hq * d; }
  int64_t nnew() const { return b * t * hkv * d; }
  int64_t ncache() const { return b * max_seq * hkv * d; }
  int64_t qi(int64_t bb, int64_t i, int64_t h) const { return ((bb * t + i) * hq + h) * d; }
  int64_t ni(int64_t bb, int64_t i, int64_t h) const { return ((bb * t + i) * hkv + h) * d; }
  int64_t ci(int64_t bb, int64_t j, int64_t h) const { return ((bb * max_seq + j) * hkv + h) * d; }
  int64_t kvh(int64_t h) const { return h / (hq / hkv); }
};

Case make_case(int64_t ctx, int64_t t, int64_t hq, int64_t hkv, int64_t d, int64_t window,
               int32_t split_k) {
  Case c{2, t, hq, hkv, d, window, split_k, {(int32_t)ctx, (int32_t)(ctx / 2)}, 0,
         1.0f / sqrtf((float)d)};
  c.max_seq = ctx + t + 3; /* 3 guard positions past the new tokens of the longer sequence */
  return c;
}

/* Inputs of a case in storage type T, plus the caches as they were before the call. */
template <typename T>
struct Data {
  std::vector<T> q, kn, vn, kc0, vc0;
};

template <typename T>
Data<T> make_data(const Case &c, uint64_t seed, float q_mul = 1.0f) {
  Data<T> x;
  x.q = convert<T>(check::randn(c.nq(), seed + 1, q_mul));
  x.kn = convert<T>(check::randn(c.nnew(), seed + 2));
  x.vn = convert<T>(check::randn(c.nnew(), seed + 3));
  x.kc0 = convert<T>(check::randn(c.ncache(), seed + 4));
  x.vc0 = convert<T>(check::randn(c.ncache(), seed + 5));
  return x;
}

template <typename T>
struct Result {
  std::vector<T> out, kc, vc;
  int32_t status;
};

/* Runs the decode with a workspace of the reported size, pre-filled with NaN (every slot read
 * must have been written). */
template <typename T>
Result<T> run_decode(const Case &c, const Data<T> &x) {
  Result<T> r{std::vector<T>(c.nq(), from_f32<T>(777.0f)), x.kc0, x.vc0, -1};
  int64_t bytes = -1;
  CHECK_STATUS(moe4j_cpu_attention_decode_workspace_bytes(c.b, c.t, c.hq, c.d, c.split_k, &bytes),
               MOE4J_OK);
  std::vector<float> ws((size_t)(bytes / 4), NAN);
  r.status = moe4j_cpu_attention_decode(dtype_code<T>(), x.q.data(), x.kn.data(), x.vn.data(),
                                        r.kc.data(), r.vc.data(), c.lengths.data(), r.out.data(),
                                        c.b, c.t, c.max_seq, c.hq, c.hkv, c.d, c.window, c.scale,
                                        c.split_k, ws.data(), bytes);
  return r;
}

/* The caches after the call: rows [len, len + t) equal the new rows exactly, the rest unchanged. */
template <typename T>
bool caches_ok(const Case &c, const Data<T> &x, const Result<T> &r) {
  bool ok = true;
  const size_t row = (size_t)(c.hkv * c.d) * sizeof(T);
  for (int64_t b = 0; b < c.b; b++)
    for (int64_t j = 0; j < c.max_seq; j++) {
      const int64_t i = j - c.lengths[b];
      const T *ek = (i >= 0 && i < c.t) ? &x.kn[c.ni(b, i, 0)] : &x.kc0[c.ci(b, j, 0)];
      const T *ev = (i >= 0 && i < c.t) ? &x.vn[c.ni(b, i, 0)] : &x.vc0[c.ci(b, j, 0)];
      ok = ok && memcmp(&r.kc[c.ci(b, j, 0)], ek, row) == 0;
      ok = ok && memcmp(&r.vc[c.ci(b, j, 0)], ev, row) == 0;
    }
  return ok;
}

/* Key j of sequence b after the append (from the inputs), widened to double. */
template <typename T>
double key_at(const Case &c, const Data<T> &x, int64_t b, int64_t j, int64_t kvh, int64_t d,
              bool value) {
  const int64_t i = j - c.lengths[b];
  const std::vector<T> &nw = value ? x.vn : x.kn, &old = value ? x.vc0 : x.kc0;
  return (double)to_f32(i >= 0 ? nw[c.ni(b, i, kvh) + d] : old[c.ci(b, j, kvh) + d]);
}

/* fp64 reference (naive_bf16 = false) or the naive bf16 implementation (scores rounded to bf16,
 * softmax in f32, P rounded to bf16, P V in f32, out rounded to bf16). */
template <typename T>
std::vector<double> reference(const Case &c, const Data<T> &x, bool naive_bf16) {
  std::vector<double> out(c.nq(), 0.0);
  for (int64_t b = 0; b < c.b; b++)
    for (int64_t i = 0; i < c.t; i++)
      for (int64_t h = 0; h < c.hq; h++) {
        int64_t lo, hi;
        decode_key_range(c.lengths[b], i, c.window, &lo, &hi);
        const int64_t kvh = c.kvh(h);
        std::vector<double> sc(hi - lo);
        double mx = -INFINITY;
        for (int64_t j = lo; j < hi; j++) {
          double dot = 0;
          float dotf = 0;
          for (int64_t d = 0; d < c.d; d++) {
            const double qv = (double)to_f32(x.q[c.qi(b, i, h) + d]);
            dot += qv * key_at(c, x, b, j, kvh, d, false);
            dotf += (float)qv * (float)key_at(c, x, b, j, kvh, d, false);
          }
          sc[j - lo] = naive_bf16 ? rb(c.scale * dotf) : (double)c.scale * dot;
          mx = sc[j - lo] > mx ? sc[j - lo] : mx;
        }
        double sum = 0;
        float sumf = 0;
        for (double s : sc) {
          sum += exp(s - mx);
          sumf += expf((float)(s - mx));
        }
        for (int64_t d = 0; d < c.d; d++) {
          double acc = 0;
          float accf = 0;
          for (int64_t j = lo; j < hi; j++) {
            const double v = key_at(c, x, b, j, kvh, d, true);
            acc += exp(sc[j - lo] - mx) / sum * v;
            accf += (float)rb(expf((float)(sc[j - lo] - mx)) / sumf) * (float)v;
          }
          out[c.qi(b, i, h) + d] = naive_bf16 ? rb(accf) : acc;
        }
      }
  return out;
}

/* Full attention (moe4j_cpu_attention_forward, causal) of each sequence on its concatenated
 * cache; the last t rows, f32. */
std::vector<double> forward_reference(const Case &c, const Data<float> &x) {
  std::vector<double> out(c.nq(), 0.0);
  for (int64_t b = 0; b < c.b; b++) {
    const int64_t len = c.lengths[b], s = len + c.t;
    std::vector<float> q(s * c.hq * c.d, 0.25f), k(s * c.hkv * c.d), v(s * c.hkv * c.d),
        o(s * c.hq * c.d), lse(c.hq * s);
    for (int64_t i = 0; i < c.t; i++)
      memcpy(&q[(len + i) * c.hq * c.d], &x.q[c.qi(b, i, 0)], c.hq * c.d * 4);
    for (int64_t j = 0; j < s; j++)
      for (int64_t h = 0; h < c.hkv; h++)
        for (int64_t d = 0; d < c.d; d++) {
          k[(j * c.hkv + h) * c.d + d] = (float)key_at(c, x, b, j, h, d, false);
          v[(j * c.hkv + h) * c.d + d] = (float)key_at(c, x, b, j, h, d, true);
        }
    CHECK_STATUS(moe4j_cpu_attention_forward(MOE4J_DTYPE_F32, q.data(), k.data(), v.data(),
                                             o.data(), lse.data(), nullptr, 1, s, c.hq, c.hkv,
                                             c.d, 1, c.window, c.scale),
                 MOE4J_OK);
    for (int64_t i = 0; i < c.t; i++)
      for (int64_t e = 0; e < c.hq * c.d; e++)
        out[c.qi(b, i, 0) + e] = o[(len + i) * c.hq * c.d + e];
  }
  return out;
}

template <typename T>
double max_err(const std::vector<T> &a, const std::vector<double> &ref) {
  double m = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    const double e = fabs((double)to_f32(a[i]) - ref[i]);
    if (!(e <= m)) m = e;
  }
  return m;
}
double max_err(const std::vector<double> &a, const std::vector<double> &ref) {
  double m = 0;
  for (size_t i = 0; i < ref.size(); i++) m = fmax(m, fabs(a[i] - ref[i]));
  return m;
}
double max_abs(const std::vector<double> &x) {
  double m = 0;
  for (double e : x) m = fabs(e) > m ? fabs(e) : m;
  return m;
}

#define EXPECT_ERR(what, err, bound)                                                          \
  do {                                                                                        \
    if (!((err) <= (bound))) {                                                                \
      char b_[300];                                                                           \
      snprintf(b_, sizeof b_, "%s: ctx %d t %lld hq %lld hkv %lld d %lld w %lld split %d: %.3g > %.3g", \
               what, (int)c.lengths[0], (long long)c.t, (long long)c.hq, (long long)c.hkv,   \
               (long long)c.d, (long long)c.window, (int)c.split_k, (double)(err),           \
               (double)(bound));                                                              \
      check::report(__FILE__, __LINE__, b_);                                                  \
    }                                                                                         \
  } while (0)

double g_worst_f32 = 0; /* worst normalized f32 error seen, printed for the record */

void f32_case(const Case &c, uint64_t seed, float q_mul = 1.0f) {
  const Data<float> x = make_data<float>(c, seed, q_mul);
  const Result<float> r = run_decode(c, x);
  CHECK_STATUS(r.status, MOE4J_OK);
  CHECK(caches_ok(c, x, r));
  const std::vector<double> fwd = forward_reference(c, x), ref = reference(c, x, false);
  const double scale = fmax(max_abs(ref), 1e-3);
  const double e_fwd = max_err(r.out, fwd) / scale, e_ref = max_err(r.out, ref) / scale;
  g_worst_f32 = fmax(g_worst_f32, fmax(e_fwd, e_ref));
  EXPECT_ERR("f32 decode vs attention_forward", e_fwd, 1e-5);
  EXPECT_ERR("f32 decode vs fp64", e_ref, 1e-5);
}

void bf16_case(const Case &c, uint64_t seed) {
  const Data<bf16_t> x = make_data<bf16_t>(c, seed);
  const Result<bf16_t> r = run_decode(c, x);
  CHECK_STATUS(r.status, MOE4J_OK);
  CHECK(caches_ok(c, x, r));
  const std::vector<double> ref = reference(c, x, false), naive = reference(c, x, true);
  const double mx = max_abs(ref);
  /* the floor (f32 noise) only matters where the naive version happens to be exact */
  EXPECT_ERR("bf16 decode vs 2x naive bf16", max_err(r.out, ref),
             2 * max_err(naive, ref) + 1e-6 * mx);
}

}  // namespace

TEST_CASE(f32_matches_full_attention_all_shapes) {
  uint64_t seed = 100;
  for (int64_t ctx : {1, 7, 300})
    for (int64_t t : {1, 3})
      for (auto heads : {std::pair<int64_t, int64_t>{4, 2}, {2, 2}})
        for (int64_t d : {64, 6})
          for (int64_t w : {0, 5})
            for (int32_t split : {1, 3, 16})
              f32_case(make_case(ctx, t, heads.first, heads.second, d, w, split), seed += 10);
  printf("  worst f32 error / max|ref|: %.3g\n", g_worst_f32);
}

TEST_CASE(f32_extra_splits_windows_and_mqa) {
  f32_case(make_case(0, 1, 4, 4, 6, 0, 16), 7001);    /* empty cache, one key, 15 empty chunks */
  f32_case(make_case(0, 3, 4, 1, 8, 2, 5), 7002);     /* MQA, window 2 */
  f32_case(make_case(300, 3, 8, 2, 64, 0, 1024), 7003); /* the largest split_k */
  f32_case(make_case(150, 2, 4, 2, 128, 100, 7), 7004);
  f32_case(make_case(3, 3, 2, 1, 2, 1, 2), 7005);     /* window 1: only the token itself */
  f32_case(make_case(300, 1, 4, 2, 256, 0, 4), 7006); /* head_dim 256 */
}

TEST_CASE(large_scores_stay_finite_and_accurate) {
  /* scores of +-~100: the chunk maxima differ by a lot, so the merge weights underflow */
  f32_case(make_case(300, 3, 4, 2, 64, 0, 16), 8001, 12.0f);
  f32_case(make_case(300, 1, 2, 2, 64, 5, 3), 8002, 12.0f);
}

TEST_CASE(bf16_within_twice_naive_bf16_error) {
  uint64_t seed = 5000;
  for (int64_t ctx : {1, 7, 300})
    for (int64_t t : {1, 3})
      for (int64_t w : {0, 5})
        for (int32_t split : {1, 3, 16}) {
          bf16_case(make_case(ctx, t, 4, 2, 64, w, split), seed += 10);
          bf16_case(make_case(ctx, t, 2, 2, 6, w, split), seed += 10);
        }
}

TEST_CASE(split_k_changes_only_rounding) {
  const Case base = make_case(300, 3, 4, 2, 64, 0, 1);
  const Data<float> x = make_data<float>(base, 9001);
  const Result<float> r1 = run_decode(base, x);
  const double mx = max_abs(reference(base, x, false));
  for (int32_t split : {2, 3, 16, 300, 1024}) {
    Case c = base;
    c.split_k = split;
    const Result<float> r = run_decode(c, x);
    CHECK_STATUS(r.status, MOE4J_OK);
    std::vector<double> a(r1.out.begin(), r1.out.end());
    EXPECT_ERR("split_k vs split_k 1", max_err(r.out, a), 1e-5 * mx);
  }
}

template <typename T>
static void determinism_case(int64_t window, int32_t split) {
  const Case c = make_case(300, 3, 4, 2, 64, window, split);
  const Data<T> x = make_data<T>(c, 31 + split);
  auto run = [&](int threads) {
    const int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
    Result<T> r = run_decode(c, x);
    omp_set_num_threads(keep);
    CHECK_STATUS(r.status, MOE4J_OK);
    return r;
  };
  const Result<T> a = run(1), b = run(2), d = run(omp_get_max_threads() > 3 ? 3 : 2);
  for (const Result<T> *o : {&b, &d}) {
    CHECK(memcmp(a.out.data(), o->out.data(), c.nq() * sizeof(T)) == 0);
    CHECK(memcmp(a.kc.data(), o->kc.data(), c.ncache() * sizeof(T)) == 0);
    CHECK(memcmp(a.vc.data(), o->vc.data(), c.ncache() * sizeof(T)) == 0);
  }
}

TEST_CASE(results_are_bitwise_identical_for_any_thread_count) {
  determinism_case<float>(0, 3);
  determinism_case<float>(0, 16);
  determinism_case<float>(5, 1);
  determinism_case<bf16_t>(0, 16);
}

TEST_CASE(shared_index_math) {
  int64_t lo, hi, b0, e0;
  decode_key_range(10, 2, 0, &lo, &hi);
  CHECK(lo == 0 && hi == 13);
  decode_key_range(10, 2, 5, &lo, &hi);
  CHECK(lo == 8 && hi == 13);
  decode_key_range(0, 0, 5, &lo, &hi);
  CHECK(lo == 0 && hi == 1);
  /* chunks tile [lo, hi) in order, equal size ceil(n / split), empty ones at the end */
  for (int64_t n : {1, 2, 7, 64, 300})
    for (int32_t split : {1, 3, 16, 1024}) {
      int64_t next = 5;
      const int64_t size = (n + split - 1) / split;
      for (int32_t s = 0; s < split; s++) {
        decode_chunk(5, 5 + n, split, s, &b0, &e0);
        CHECK(b0 == next && e0 >= b0 && e0 - b0 <= size && e0 <= 5 + n);
        CHECK(e0 - b0 == size || e0 == 5 + n);
        next = e0;
      }
      CHECK(next == 5 + n);
    }
  CHECK(decode_partial_index(1, 2, 3, 4, 3, 5, 7) == ((1 * 3 + 2) * 5 + 3) * 7 + 4);
  CHECK(decode_workspace_floats(2, 3, 4, 6, 5) == 2 * 3 * 4 * 5 * 8);
  CHECK(decode_ws_m_offset(3, 10, 6) == 63 && decode_ws_l_offset(3, 10, 6) == 73);
  CHECK(decode_merge_weight(-INFINITY, 1.0f) == 0.0f && decode_merge_weight(2.0f, 2.0f) == 1.0f);
}

TEST_CASE(workspace_bytes) {
  int64_t bytes = -1;
  CHECK_STATUS(moe4j_cpu_attention_decode_workspace_bytes(2, 3, 8, 64, 16, &bytes), MOE4J_OK);
  CHECK(bytes == int64_t(2) * 3 * 8 * 16 * 66 * 4);
  CHECK_STATUS(moe4j_cpu_attention_decode_workspace_bytes(1, 1, 1, 2, 1, &bytes), MOE4J_OK);
  CHECK(bytes == 16);
  CHECK_STATUS(moe4j_cpu_attention_decode_workspace_bytes(0, 1, 4, 64, 8, &bytes), MOE4J_OK);
  CHECK(bytes == 0);
  CHECK_STATUS(moe4j_cpu_attention_decode_workspace_bytes(4, 0, 4, 64, 8, &bytes), MOE4J_OK);
  CHECK(bytes == 0);
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  CHECK_FAILS(moe4j_cpu_attention_decode_workspace_bytes(1, 1, 1, 2, 1, nullptr), INV, "out_bytes is NULL");
  CHECK_FAILS(moe4j_cpu_attention_decode_workspace_bytes(-1, 1, 1, 2, 1, &bytes), INV, "batch must be >= 0, got -1");
  CHECK_FAILS(moe4j_cpu_attention_decode_workspace_bytes(1, -2, 1, 2, 1, &bytes), INV, "new_tokens must be >= 0, got -2");
  CHECK_FAILS(moe4j_cpu_attention_decode_workspace_bytes(1, 1, 0, 2, 1, &bytes), INV, "q_heads must be >= 1, got 0");
  CHECK_FAILS(moe4j_cpu_attention_decode_workspace_bytes(1, 1, 1, 5, 1, &bytes), INV, "head_dim must be even and in [2, 256], got 5");
  CHECK_FAILS(moe4j_cpu_attention_decode_workspace_bytes(1, 1, 1, 258, 1, &bytes), INV, "got 258");
  CHECK_FAILS(moe4j_cpu_attention_decode_workspace_bytes(1, 1, 1, 2, 0, &bytes), INV, "split_k must be in [1, 1024], got 0");
  CHECK_FAILS(moe4j_cpu_attention_decode_workspace_bytes(1, 1, 1, 2, 1025, &bytes), INV, "got 1025");
  CHECK_FAILS(moe4j_cpu_attention_decode_workspace_bytes(int64_t(1) << 40, int64_t(1) << 14, 64, 2, 1, &bytes), INV, "overflows int64");
  CHECK_FAILS(moe4j_cpu_attention_decode_workspace_bytes(int64_t(1) << 30, 1024, 64, 256, 1024, &bytes), INV, "overflows int64");
  CHECK(strstr(moe4j_last_error(), "moe4j_cpu_attention_decode_workspace_bytes") != nullptr);
}

TEST_CASE(empty_calls_succeed_without_buffers_or_writes) {
  std::vector<float> kc(2 * 4 * 2 * 4, 3.0f), vc(kc.size(), 4.0f);
  const std::vector<float> kc0 = kc, vc0 = vc;
  const int32_t lengths[2] = {4, 0};
  CHECK_STATUS(moe4j_cpu_attention_decode(MOE4J_DTYPE_F32, nullptr, nullptr, nullptr, nullptr,
                                          nullptr, nullptr, nullptr, 0, 3, 5, 4, 2, 4, 0, 0.5f, 4,
                                          nullptr, 0),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_attention_decode(MOE4J_DTYPE_F32, nullptr, nullptr, nullptr, kc.data(),
                                          vc.data(), lengths, nullptr, 2, 0, 4, 4, 2, 4, 0, 0.5f,
                                          4, nullptr, 0),
               MOE4J_OK);
  CHECK(kc == kc0 && vc == vc0);
  /* new_tokens 0 still validates the lengths: 5 > max_seq - 0 */
  const int32_t bad[2] = {5, 0};
  CHECK_FAILS(moe4j_cpu_attention_decode(MOE4J_DTYPE_F32, nullptr, nullptr, nullptr, kc.data(),
                                         vc.data(), bad, nullptr, 2, 0, 4, 4, 2, 4, 0, 0.5f, 4,
                                         nullptr, 0),
              MOE4J_ERR_INVALID_ARGUMENT, "lengths[0] = 5 is out of range [0, 4]");
}

TEST_CASE(bad_arguments_are_reported_before_any_write) {
  const int64_t B = 2, T = 2, MS = 6, Hq = 4, Hkv = 2, D = 4;
  const int32_t SK = 3;
  const int64_t nq = B * T * Hq * D, nn = B * T * Hkv * D, nc = B * MS * Hkv * D;
  int64_t wsb = 0;
  CHECK_STATUS(moe4j_cpu_attention_decode_workspace_bytes(B, T, Hq, D, SK, &wsb), MOE4J_OK);
  std::vector<float> q(nq, 0.5f), kn(nn, 0.5f), vn(nn, 0.5f), kc(nc, 7.0f), vc(nc, 8.0f),
      out(nq, 9.0f), ws(wsb / 4 + 64, 1.0f);
  std::vector<int32_t> lengths = {1, 4};
  const std::vector<float> kc0 = kc, vc0 = vc, out0 = out;
  const int32_t F32 = MOE4J_DTYPE_F32, INV = MOE4J_ERR_INVALID_ARGUMENT;
  const float *Q = q.data(), *KN = kn.data(), *VN = vn.data();
  float *KC = kc.data(), *VC = vc.data(), *O = out.data(), *W = ws.data();
  const int32_t *L = lengths.data();
  auto dec = [&](int32_t dtype, const void *qp, const void *knp, const void *vnp, void *kcp,
                 void *vcp, const int32_t *lp, void *op, int64_t b, int64_t t, int64_t ms,
                 int64_t hq, int64_t hkv, int64_t d, float scale, int32_t sk, void *wp,
                 int64_t wb) {
    return moe4j_cpu_attention_decode(dtype, qp, knp, vnp, kcp, vcp, lp, op, b, t, ms, hq, hkv, d,
                                      0, scale, sk, wp, wb);
  };
  /* sanity: the good call passes (run last, below) */
  CHECK_FAILS(dec(MOE4J_DTYPE_F16, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got F16");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, -1, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "batch must be >= 0, got -1");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, -1, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "new_tokens must be >= 0, got -1");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, 1, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "max_seq (1) must be >= new_tokens (2)");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, 0, Hkv, D, 0.5f, SK, W, wsb), INV, "q_heads must be >= 1, got 0");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, 0, D, 0.5f, SK, W, wsb), INV, "kv_heads must be >= 1, got 0");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, 6, 4, D, 0.5f, SK, W, wsb), INV, "q_heads (6) must be a multiple of kv_heads (4)");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, 3, 0.5f, SK, W, wsb), INV, "head_dim must be even and in [2, 256], got 3");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, 258, 0.5f, SK, W, wsb), INV, "got 258");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.0f, SK, W, wsb), INV, "scale must be finite and > 0");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, INFINITY, SK, W, wsb), INV, "scale must be finite and > 0");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, 0, W, wsb), INV, "split_k must be in [1, 1024], got 0");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, 2000, W, wsb), INV, "got 2000");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, int64_t(1) << 40, T, int64_t(1) << 20, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "overflows int64");
  CHECK_FAILS(dec(F32, nullptr, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "q is NULL");
  CHECK_FAILS(dec(F32, Q, nullptr, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "k_new is NULL");
  CHECK_FAILS(dec(F32, Q, KN, nullptr, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "v_new is NULL");
  CHECK_FAILS(dec(F32, Q, KN, VN, nullptr, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "k_cache is NULL");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, nullptr, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "v_cache is NULL");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, nullptr, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "lengths is NULL");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, nullptr, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "out is NULL");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, nullptr, wsb), INV, "workspace is NULL");
  char msg[160];
  snprintf(msg, sizeof msg, "workspace_bytes (%lld) is smaller than the required %lld bytes",
           (long long)(wsb - 4), (long long)wsb);
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb - 4), INV, msg);
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, nullptr, 0), INV, "workspace_bytes (0) is smaller");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, (char *)W + 2, wsb), INV, "workspace (address");
  CHECK_FAILS(dec(MOE4J_DTYPE_BF16, (const char *)Q + 1, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "q (address");
  CHECK_FAILS(dec(F32, Q, KN, VN, (float *)KN, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "k_cache and k_new overlap");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, KC + 8, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "k_cache and v_cache overlap");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, (float *)Q + 4, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "out and q overlap");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, (const int32_t *)(O + 3), O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "out and lengths overlap");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, O + 2, wsb), INV, "out and workspace overlap");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, (float *)VN, wsb), INV, "workspace and v_new overlap");
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, L, O, B, T, MS, Hq, Hkv, D, 0.5f, SK, VC + 4, wsb), INV, "v_cache and workspace overlap");
  lengths = {1, 5}; /* 5 > max_seq - new_tokens = 4 */
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, lengths.data(), O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "lengths[1] = 5 is out of range [0, 4]");
  lengths = {-1, 0};
  CHECK_FAILS(dec(F32, Q, KN, VN, KC, VC, lengths.data(), O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), INV, "lengths[0] = -1 is out of range");
  CHECK(strstr(moe4j_last_error(), "moe4j_cpu_attention_decode") != nullptr);
  CHECK(kc == kc0 && vc == vc0 && out == out0);
  lengths = {0, 4};
  CHECK_STATUS(dec(F32, Q, KN, VN, KC, VC, lengths.data(), O, B, T, MS, Hq, Hkv, D, 0.5f, SK, W, wsb), MOE4J_OK);
  CHECK(out != out0);
}

TEST_MAIN("decode")
