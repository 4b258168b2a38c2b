/*
 * CUDA embedding kernels (optimized and reference) against the CPU twin. Forward is a copy and
 * backward sums in id order in every implementation, so all comparisons are bitwise.
 */
#include <string.h>

#include "gpu_test.h"
#include "numerics.h"

using moe4j::bf16_t;

namespace {

std::vector<uint16_t> to_bf16_bits(const std::vector<float> &v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = moe4j::f32_to_bf16_bits(v[i]);
  return out;
}

/* ids with repetition: a hot id (like padding) a third of the time, the rest spread */
std::vector<int32_t> skewed_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> ids(n);
  for (auto &id : ids) id = g() % 3 == 0 ? (int32_t)(vocab / 2) : (int32_t)(g() % (uint64_t)vocab);
  return ids;
}

/* Raw-bytes forward comparison for one dtype; `offset` shifts out by elements to defeat 16-byte
 * alignment (exercises the narrower copy units). */
void forward_case(int32_t dtype, int64_t num_ids, int64_t vocab, int64_t dim, int64_t offset) {
  const int64_t es = dtype == MOE4J_DTYPE_BF16 ? 2 : 4;
  const auto t32 = check::randn(vocab * dim, 10 + dim);
  std::vector<uint8_t> table(vocab * dim * es);
  if (dtype == MOE4J_DTYPE_BF16) {
    const auto b = to_bf16_bits(t32);
    memcpy(table.data(), b.data(), table.size());
  } else {
    memcpy(table.data(), t32.data(), table.size());
  }
  const auto ids = skewed_ids(num_ids, vocab, 11 + num_ids);
  std::vector<uint8_t> cpu(num_ids * dim * es);
  CHECK_STATUS(moe4j_cpu_embedding_forward(dtype, table.data(), ids.data(), cpu.data(), num_ids, vocab, dim), MOE4J_OK);
  gpu::DeviceBuffer<uint8_t> dtable(table), dout((num_ids * dim + offset + 1) * es);
  gpu::DeviceBuffer<int32_t> dids(ids);
  CHECK(cudaMemset(dout.ptr, 0xab, dout.count) == cudaSuccess);
  CHECK_STATUS(moe4j_cuda_embedding_forward(dtype, dtable.ptr, dids.ptr, dout.ptr + offset * es, num_ids, vocab, dim, nullptr), MOE4J_OK);
  gpu::sync();
  const auto got = dout.download();
  CHECK(memcmp(got.data() + offset * es, cpu.data(), cpu.size()) == 0);
  for (int64_t b = 0; b < es; b++) CHECK(got[(offset + num_ids * dim) * es + b] == 0xab); /* past the end */
  if (offset > 0) CHECK(got[0] == 0xab);
}

}  // namespace

TEST_CASE(forward_matches_cpu_bitwise) {
  for (int32_t dtype : {MOE4J_DTYPE_F32, MOE4J_DTYPE_BF16})
    for (int64_t dim : {1, 7, 8, 64, 131, 2048})
      for (int64_t num_ids : {1, 17, 4097})
        for (int64_t offset : {0, 1}) forward_case(dtype, num_ids, 1031, dim, offset);
  forward_case(MOE4J_DTYPE_BF16, 333, 50257, 8, 0);
}

TEST_CASE(forward_writes_zero_rows_for_out_of_range_ids) {
  const int64_t vocab = 7, dim = 5;
  const auto table = check::randn(vocab * dim, 1);
  const std::vector<int32_t> ids = {-1, 3, 7, 1 << 30};
  gpu::DeviceBuffer<float> dtable(table), dout(std::vector<float>(ids.size() * dim, 5.0f));
  gpu::DeviceBuffer<int32_t> dids(ids);
  CHECK_STATUS(moe4j_cuda_embedding_forward(MOE4J_DTYPE_F32, dtable.ptr, dids.ptr, dout.ptr, (int64_t)ids.size(), vocab, dim, nullptr), MOE4J_OK);
  gpu::sync();
  const auto out = dout.download();
  for (int64_t c = 0; c < dim; c++) {
    CHECK(out[c] == 0.0f && out[2 * dim + c] == 0.0f && out[3 * dim + c] == 0.0f);
    CHECK(out[dim + c] == table[3 * dim + c]);
  }
}

static void backward_case(int32_t dtype, int64_t num_ids, int64_t vocab, int64_t dim, int32_t accumulate) {
  const auto g32 = check::randn(num_ids * dim, 20 + dim);
  std::vector<uint8_t> dout_bytes;
  if (dtype == MOE4J_DTYPE_BF16) {
    const auto b = to_bf16_bits(g32);
    dout_bytes.assign((const uint8_t *)b.data(), (const uint8_t *)b.data() + b.size() * 2);
  } else {
    dout_bytes.assign((const uint8_t *)g32.data(), (const uint8_t *)g32.data() + g32.size() * 4);
  }
  const auto ids = skewed_ids(num_ids, vocab, 21 + vocab);
  const auto init = check::randn(vocab * dim, 22, 0.5f);
  std::vector<float> cpu = init;
  cpu.push_back(-1.0f);
  CHECK_STATUS(moe4j_cpu_embedding_backward(dtype, dout_bytes.data(), ids.data(), cpu.data(), num_ids, vocab, dim, accumulate), MOE4J_OK);
  gpu::DeviceBuffer<uint8_t> ddout(dout_bytes);
  gpu::DeviceBuffer<int32_t> dids(ids);
  for (int ref : {0, 1}) {
    moe4j_cuda_use_reference_kernels(ref);
    std::vector<float> start = init;
    start.push_back(-1.0f);
    gpu::DeviceBuffer<float> dtable(start);
    CHECK_STATUS(moe4j_cuda_embedding_backward(dtype, ddout.ptr, dids.ptr, dtable.ptr, num_ids, vocab, dim, accumulate, nullptr), MOE4J_OK);
    gpu::sync();
    const auto got = dtable.download();
    if (memcmp(got.data(), cpu.data(), cpu.size() * 4) != 0) {
      char msg[200];
      snprintf(msg, sizeof msg, "backward %s dtype=%d ids=%lld vocab=%lld dim=%lld acc=%d differs from CPU",
               ref ? "ref" : "fast", dtype, (long long)num_ids, (long long)vocab, (long long)dim, accumulate);
      check::report(__FILE__, __LINE__, msg);
    }
  }
  moe4j_cuda_use_reference_kernels(0);
}

TEST_CASE(backward_fast_and_reference_match_cpu_bitwise) {
  for (int32_t acc : {0, 1}) {
    for (int32_t dtype : {MOE4J_DTYPE_F32, MOE4J_DTYPE_BF16}) {
      backward_case(dtype, 1, 1, 1, acc);
      backward_case(dtype, 17, 7, 13, acc);
      backward_case(dtype, 1000, 7, 1, acc);
      backward_case(dtype, 4099, 1031, 517, acc);
      backward_case(dtype, 8192, 50257, 256, acc);
    }
  }
}

TEST_CASE(backward_skips_out_of_range_ids_and_is_deterministic) {
  const int64_t vocab = 1031, dim = 300, n = 2000;
  auto ids = skewed_ids(n, vocab, 30);
  const auto g = check::randn(n * dim, 31);
  std::vector<int32_t> valid_ids;
  std::vector<float> valid_g;
  for (int64_t i = 0; i < n; i++) {
    if (i % 97 == 5) ids[i] = i % 2 ? -3 : (int32_t)vocab; /* skipped on the GPU */
    if (ids[i] >= 0 && ids[i] < vocab) {
      valid_ids.push_back(ids[i]);
      valid_g.insert(valid_g.end(), g.begin() + i * dim, g.begin() + (i + 1) * dim);
    }
  }
  std::vector<float> cpu(vocab * dim);
  CHECK_STATUS(moe4j_cpu_embedding_backward(MOE4J_DTYPE_F32, valid_g.data(), valid_ids.data(), cpu.data(), (int64_t)valid_ids.size(), vocab, dim, 0), MOE4J_OK);
  gpu::DeviceBuffer<float> dg(g), dtable(vocab * dim);
  gpu::DeviceBuffer<int32_t> dids(ids);
  std::vector<float> first;
  for (int run = 0; run < 2; run++) {
    CHECK_STATUS(moe4j_cuda_embedding_backward(MOE4J_DTYPE_F32, dg.ptr, dids.ptr, dtable.ptr, n, vocab, dim, 0, nullptr), MOE4J_OK);
    gpu::sync();
    const auto got = dtable.download();
    CHECK(memcmp(got.data(), cpu.data(), cpu.size() * 4) == 0);
    if (run == 0) first = got;
    else CHECK(memcmp(got.data(), first.data(), first.size() * 4) == 0);
  }
  /* no ids at all: overwrite still zeroes the table */
  CHECK_STATUS(moe4j_cuda_embedding_backward(MOE4J_DTYPE_F32, nullptr, nullptr, dtable.ptr, 0, vocab, dim, 0, nullptr), MOE4J_OK);
  gpu::sync();
  const auto zeroed = dtable.download();
  bool all_zero = true;
  for (float v : zeroed) all_zero = all_zero && v == 0.0f;
  CHECK(all_zero);
}

TEST_CASE(bad_arguments_fail_without_launch) {
  gpu::DeviceBuffer<float> table(64), out(64);
  gpu::DeviceBuffer<int32_t> ids(8);
  const int32_t F32 = MOE4J_DTYPE_F32;
  CHECK_FAILS(moe4j_cuda_embedding_forward(MOE4J_DTYPE_U8, table.ptr, ids.ptr, out.ptr, 8, 8, 8, nullptr), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cuda_embedding_forward(F32, table.ptr, ids.ptr, out.ptr, -1, 8, 8, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "num_ids must be >= 0");
  CHECK_FAILS(moe4j_cuda_embedding_forward(F32, table.ptr, ids.ptr, out.ptr, 8, -1, 8, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "vocab must be >= 0");
  CHECK_FAILS(moe4j_cuda_embedding_forward(F32, table.ptr, ids.ptr, out.ptr, 8, 8, -1, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "dim must be >= 0");
  CHECK_FAILS(moe4j_cuda_embedding_forward(F32, table.ptr, ids.ptr, out.ptr, INT64_MAX / 4, 8, 8, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "overflows");
  CHECK_FAILS(moe4j_cuda_embedding_forward(F32, nullptr, ids.ptr, out.ptr, 8, 8, 8, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "table is NULL");
  CHECK_FAILS(moe4j_cuda_embedding_forward(F32, table.ptr, nullptr, out.ptr, 8, 8, 8, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "ids is NULL");
  CHECK_FAILS(moe4j_cuda_embedding_forward(F32, table.ptr, ids.ptr, nullptr, 8, 8, 8, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "out is NULL");
  CHECK_FAILS(moe4j_cuda_embedding_forward(F32, table.ptr, ids.ptr, (char *)out.ptr + 2, 8, 8, 4, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "aligned");
  CHECK_FAILS(moe4j_cuda_embedding_forward(F32, table.ptr, ids.ptr, table.ptr + 8, 4, 8, 8, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "out and table overlap");
  CHECK_FAILS(moe4j_cuda_embedding_backward(MOE4J_DTYPE_I64, out.ptr, ids.ptr, table.ptr, 8, 8, 8, 0, nullptr), MOE4J_ERR_UNSUPPORTED, "dtype");
  CHECK_FAILS(moe4j_cuda_embedding_backward(F32, nullptr, ids.ptr, table.ptr, 8, 8, 8, 0, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "dout is NULL");
  CHECK_FAILS(moe4j_cuda_embedding_backward(F32, out.ptr, nullptr, table.ptr, 8, 8, 8, 0, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "ids is NULL");
  CHECK_FAILS(moe4j_cuda_embedding_backward(F32, out.ptr, ids.ptr, nullptr, 8, 8, 8, 0, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "dtable is NULL");
  CHECK_FAILS(moe4j_cuda_embedding_backward(F32, out.ptr, ids.ptr, table.ptr, 8, -8, 8, 0, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "vocab must be >= 0");
  CHECK_FAILS(moe4j_cuda_embedding_backward(F32, table.ptr + 4, ids.ptr, table.ptr, 4, 8, 8, 0, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "dtable and dout overlap");
  CHECK_STATUS(moe4j_cuda_embedding_forward(F32, nullptr, nullptr, nullptr, 0, 0, 8, nullptr), MOE4J_OK);
}

GPU_TEST_MAIN("gpu_embedding")
