/*
 * Embedding lookup (CPU twin): forward is an exact row copy; backward sums repeated ids in id
 * order (checked bitwise against a sequential f32 emulation and within fp32 rounding of an fp64
 * sum), is independent of the thread count, matches fp64 central differences of a random linear
 * functional, and rejects bad arguments (including out-of-range ids) before writing anything.
 */
#include <omp.h>
#include <string.h>

#include "check.h"
#include "cpu_common.h"

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

/* ids in [0, range) (range <= vocab): a small range forces many repeats */
std::vector<int32_t> random_ids(int64_t n, int64_t range, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> ids(n);
  for (auto &id : ids) id = (int32_t)(g() % (uint64_t)range);
  return ids;
}

template <typename T>
void forward_case(int64_t num_ids, int64_t vocab, int64_t dim) {
  const int32_t dt = dtype_code<T>();
  const auto table = convert<T>(check::randn(vocab * dim, 1 + vocab * dim));
  auto ids = random_ids(num_ids, vocab, 2 + num_ids);
  if (num_ids > 0) ids[num_ids - 1] = (int32_t)(vocab - 1); /* the last row of the table */
  std::vector<T> out(num_ids * dim + 1, from_f32<T>(-7.0f));
  CHECK_STATUS(moe4j_cpu_embedding_forward(dt, table.data(), ids.data(), out.data(), num_ids, vocab, dim), MOE4J_OK);
  bool same = true;
  for (int64_t i = 0; i < num_ids; i++)
    same = same && memcmp(&out[i * dim], &table[ids[i] * dim], dim * sizeof(T)) == 0;
  CHECK(same);
  CHECK(to_f32(out[num_ids * dim]) == -7.0f); /* nothing written past the end */
}

/* backward against (a) a sequential f32 emulation of "dtable[ids[i]] += dout[i] for i = 0..n-1"
 * (must be bitwise equal: that is the contract), (b) an fp64 sum (fp32 rule: error of a sequential
 * f32 sum of m terms is <= (m - 1) 2^-24 Σ|terms|, m <= 1 + num_ids). */
template <typename T>
void backward_case(int64_t num_ids, int64_t vocab, int64_t dim, int64_t id_range, bool accumulate) {
  const int32_t dt = dtype_code<T>();
  const auto dout = convert<T>(check::randn(num_ids * dim, 3 + num_ids * dim));
  const auto ids = random_ids(num_ids, id_range, 4 + vocab);
  const auto init = check::randn(vocab * dim, 5, 0.5f);
  std::vector<float> dtable(vocab * dim + 1, 99.0f);
  if (accumulate) memcpy(dtable.data(), init.data(), init.size() * 4);
  CHECK_STATUS(moe4j_cpu_embedding_backward(dt, dout.data(), ids.data(), dtable.data(), num_ids, vocab, dim, accumulate), MOE4J_OK);
  CHECK(dtable[vocab * dim] == 99.0f);
  std::vector<float> seq(vocab * dim, 0.0f);
  std::vector<double> exact(vocab * dim, 0.0), mass(vocab * dim, 0.0);
  std::vector<int64_t> terms(vocab * dim, 1);
  if (accumulate) {
    for (int64_t e = 0; e < vocab * dim; e++) {
      seq[e] = init[e];
      exact[e] = init[e];
      mass[e] = fabs(init[e]);
    }
  }
  for (int64_t i = 0; i < num_ids; i++)
    for (int64_t c = 0; c < dim; c++) {
      const int64_t e = ids[i] * dim + c;
      const float g = to_f32(dout[i * dim + c]);
      seq[e] += g;
      exact[e] += g;
      mass[e] += fabs(g);
      terms[e]++;
    }
  CHECK(memcmp(seq.data(), dtable.data(), seq.size() * 4) == 0);
  int bad = 0;
  for (int64_t e = 0; e < vocab * dim; e++)
    if (!(fabs(dtable[e] - exact[e]) <= ldexp(mass[e], -24) * (double)(terms[e] - 1))) bad++;
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE(forward_copies_rows_exactly) {
  for (int64_t vocab : {1, 2, 7, 1031})
    for (int64_t num_ids : {0, 1, 3, 17})
      for (int64_t dim : {1, 7, 13, 131}) {
        forward_case<float>(num_ids, vocab, dim);
        forward_case<bf16_t>(num_ids, vocab, dim);
      }
  for (int64_t dim : {1, 13}) { /* a GPT-2 sized vocabulary */
    forward_case<float>(17, 50257, dim);
    forward_case<bf16_t>(17, 50257, dim);
  }
}

TEST_CASE(backward_sums_repeated_ids_in_id_order) {
  for (bool accumulate : {false, true}) {
    for (int64_t vocab : {1, 2, 7, 1031})
      for (int64_t num_ids : {0, 1, 3, 17})
        for (int64_t dim : {1, 7, 13, 131}) {
          const int64_t range = vocab < 3 ? vocab : 3; /* heavy repetition */
          backward_case<float>(num_ids, vocab, dim, range, accumulate);
          backward_case<bf16_t>(num_ids, vocab, dim, vocab, accumulate);
        }
    backward_case<float>(17, 50257, 13, 50257, accumulate);
    backward_case<bf16_t>(1000, 50257, 7, 5, accumulate);
    backward_case<float>(3001, 1031, 517, 1031, accumulate); /* many work items, several threads */
  }
}

TEST_CASE(backward_is_deterministic_and_thread_count_independent) {
  const int64_t vocab = 1031, dim = 517, num_ids = 4099;
  /* Zipf-like ids: a hot id (like padding) plus a long tail */
  std::mt19937_64 g(6);
  std::vector<int32_t> ids(num_ids);
  for (auto &id : ids) id = (g() % 3 == 0) ? 0 : (int32_t)(g() % (uint64_t)(1 + g() % vocab));
  const auto dout = convert<bf16_t>(check::randn(num_ids * dim, 7));
  auto run = [&]() {
    std::vector<float> dtable(vocab * dim);
    CHECK_STATUS(moe4j_cpu_embedding_backward(MOE4J_DTYPE_BF16, dout.data(), ids.data(), dtable.data(), num_ids, vocab, dim, 0), MOE4J_OK);
    return dtable;
  };
  const auto a = run(), b = run();
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto c = run();
  omp_set_num_threads(threads + 3); /* a different partitioning */
  const auto d = run();
  omp_set_num_threads(threads);
  CHECK(memcmp(a.data(), b.data(), a.size() * 4) == 0);
  CHECK(memcmp(a.data(), c.data(), a.size() * 4) == 0);
  CHECK(memcmp(a.data(), d.data(), a.size() * 4) == 0);
}

TEST_CASE(backward_matches_fp64_central_differences) {
  /* L(table) = Σ w ⊙ forward(table, ids) for a random w; dL/dtable = backward(dout = w). */
  const int64_t vocab = 5, dim = 3, num_ids = 7;
  const std::vector<int32_t> ids = {4, 1, 4, 0, 1, 4, 2}; /* 3 unused, 4 three times */
  auto table = check::randn(vocab * dim, 8);
  const auto w = check::randn(num_ids * dim, 9);
  std::vector<float> grad(vocab * dim, 5.0f), out(num_ids * dim);
  CHECK_STATUS(moe4j_cpu_embedding_backward(MOE4J_DTYPE_F32, w.data(), ids.data(), grad.data(), num_ids, vocab, dim, 0), MOE4J_OK);
  auto loss = [&]() {
    CHECK_STATUS(moe4j_cpu_embedding_forward(MOE4J_DTYPE_F32, table.data(), ids.data(), out.data(), num_ids, vocab, dim), MOE4J_OK);
    double l = 0;
    for (int64_t e = 0; e < num_ids * dim; e++) l += (double)w[e] * (double)out[e];
    return l;
  };
  for (int64_t e = 0; e < vocab * dim; e++) {
    const float keep = table[e];
    table[e] = keep + 0.25f; /* L is linear: any step is exact up to fp64 rounding */
    const float up_value = table[e];
    const double up = loss();
    table[e] = keep - 0.25f;
    const float down_value = table[e];
    const double down = loss();
    table[e] = keep;
    const double fd = (up - down) / ((double)up_value - (double)down_value);
    /* grad is an f32 sum of <= 3 terms: relative error <= 2^-23 of their magnitude */
    CHECK_CLOSE(grad[e], fd, 1e-5 * (fabs(fd) + 1));
  }
  for (int64_t c = 0; c < dim; c++) CHECK(grad[3 * dim + c] == 0.0f); /* unused row zeroed */
}

TEST_CASE(bad_arguments_are_reported_before_any_write) {
  const int64_t vocab = 32000, dim = 1, n = 4;
  std::vector<float> table(vocab * dim, 1.0f), out(n * dim, 9.0f), dtable(vocab * dim, 9.0f);
  std::vector<float> dout(n * dim, 1.0f);
  std::vector<int32_t> ids = {0, 5, 31999, 70000};
  const int32_t F32 = MOE4J_DTYPE_F32;
  CHECK_FAILS(moe4j_cpu_embedding_forward(F32, table.data(), ids.data(), out.data(), n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "moe4j_cpu_embedding_forward: ids[3] = 70000 is out of range [0, 32000)");
  ids[3] = 1;
  ids[1] = -1;
  CHECK_FAILS(moe4j_cpu_embedding_forward(F32, table.data(), ids.data(), out.data(), n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "ids[1] = -1 is out of range [0, 32000)");
  for (float v : out) CHECK(v == 9.0f); /* nothing written */
  CHECK_FAILS(moe4j_cpu_embedding_backward(F32, dout.data(), ids.data(), dtable.data(), n, vocab, dim, 0), MOE4J_ERR_INVALID_ARGUMENT, "moe4j_cpu_embedding_backward: ids[1] = -1 is out of range");
  CHECK(dtable[0] == 9.0f && dtable[vocab - 1] == 9.0f); /* not even zeroed */
  ids[1] = 5;

  auto fwd = [&](int32_t dt, const void *t, const int32_t *i, void *o, int64_t num, int64_t v, int64_t d) {
    return moe4j_cpu_embedding_forward(dt, t, i, o, num, v, d);
  };
  CHECK_FAILS(fwd(MOE4J_DTYPE_I32, table.data(), ids.data(), out.data(), n, vocab, dim), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got I32");
  CHECK_FAILS(fwd(F32, table.data(), ids.data(), out.data(), -1, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "num_ids must be >= 0, got -1");
  CHECK_FAILS(fwd(F32, table.data(), ids.data(), out.data(), n, -5, dim), MOE4J_ERR_INVALID_ARGUMENT, "vocab must be >= 0, got -5");
  CHECK_FAILS(fwd(F32, table.data(), ids.data(), out.data(), n, vocab, -1), MOE4J_ERR_INVALID_ARGUMENT, "dim must be >= 0, got -1");
  CHECK_FAILS(fwd(F32, table.data(), ids.data(), out.data(), INT64_MAX / 4, vocab, 2), MOE4J_ERR_INVALID_ARGUMENT, "num_ids * dim");
  CHECK_FAILS(fwd(F32, table.data(), ids.data(), out.data(), n, INT64_MAX / 4, 2), MOE4J_ERR_INVALID_ARGUMENT, "vocab * dim");
  CHECK_FAILS(fwd(F32, nullptr, ids.data(), out.data(), n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "table is NULL");
  CHECK_FAILS(fwd(F32, table.data(), nullptr, out.data(), n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "ids is NULL");
  CHECK_FAILS(fwd(F32, table.data(), ids.data(), nullptr, n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "out is NULL");
  CHECK_FAILS(fwd(F32, table.data(), ids.data(), (char *)out.data() + 2, n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "out (address");
  CHECK_FAILS(fwd(F32, table.data(), (const int32_t *)((char *)ids.data() + 1), out.data(), n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "ids (address");
  CHECK_FAILS(fwd(F32, table.data(), ids.data(), table.data() + 10, n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "out and table overlap");
  CHECK_FAILS(fwd(F32, table.data(), ids.data(), (float *)ids.data(), n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "out and ids overlap");

  auto bwd = [&](int32_t dt, const void *g, const int32_t *i, float *dt_, int64_t num, int64_t v, int64_t d) {
    return moe4j_cpu_embedding_backward(dt, g, i, dt_, num, v, d, 1);
  };
  CHECK_FAILS(bwd(MOE4J_DTYPE_F16, dout.data(), ids.data(), dtable.data(), n, vocab, dim), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got F16");
  CHECK_FAILS(bwd(F32, dout.data(), ids.data(), dtable.data(), -3, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "num_ids must be >= 0");
  CHECK_FAILS(bwd(F32, dout.data(), ids.data(), dtable.data(), n, -1, dim), MOE4J_ERR_INVALID_ARGUMENT, "vocab must be >= 0");
  CHECK_FAILS(bwd(F32, dout.data(), ids.data(), dtable.data(), n, vocab, -2), MOE4J_ERR_INVALID_ARGUMENT, "dim must be >= 0");
  CHECK_FAILS(bwd(F32, dout.data(), ids.data(), dtable.data(), n, INT64_MAX / 2, INT64_MAX / 2), MOE4J_ERR_INVALID_ARGUMENT, "overflows");
  CHECK_FAILS(bwd(F32, nullptr, ids.data(), dtable.data(), n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "dout is NULL");
  CHECK_FAILS(bwd(F32, dout.data(), nullptr, dtable.data(), n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "ids is NULL");
  CHECK_FAILS(bwd(F32, dout.data(), ids.data(), nullptr, n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "dtable is NULL");
  CHECK_FAILS(bwd(MOE4J_DTYPE_BF16, dout.data(), ids.data(), (float *)((char *)dtable.data() + 2), n, vocab - 1, dim), MOE4J_ERR_INVALID_ARGUMENT, "dtable (address");
  CHECK_FAILS(bwd(F32, dtable.data() + 3, ids.data(), dtable.data(), n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "dtable and dout overlap");
  CHECK_FAILS(bwd(F32, dout.data(), (const int32_t *)dtable.data(), dtable.data(), n, vocab, dim), MOE4J_ERR_INVALID_ARGUMENT, "dtable and ids overlap");
  /* vocab 0 with ids: every id is out of range */
  CHECK_FAILS(fwd(F32, nullptr, ids.data(), out.data(), n, 0, dim), MOE4J_ERR_INVALID_ARGUMENT, "ids[0] = 0 is out of range [0, 0)");
  /* empty calls with NULL buffers succeed and clear the message */
  CHECK_STATUS(fwd(F32, nullptr, nullptr, nullptr, 0, 0, dim), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_embedding_backward(F32, nullptr, nullptr, nullptr, 0, 0, 0, 0), MOE4J_OK);
  CHECK(moe4j_last_error()[0] == '\0');
}

TEST_MAIN("embedding")
