/* The embedding (16/4/2-byte row units forward, partitioned deterministic backward) CUDA kernels (kernels/embedding_kernels.cuh, the very code kernels/embedding.cu compiles for
 * the GPU) run on the CPU under the warp emulator (warp_emulator.h), launched as the .cu entry
 * points launch them, against the CPU twin with the GPU test's rules
 * (kernels/tests/test_embedding.cpp): bitwise (copies, and sums in id order). Grids of grid-stride kernels are kept small so
 * every block loops.
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
#include "../../kernels/embedding_kernels.cuh"

using namespace moe4j;
using namespace emulated_compare;

namespace {

/* ---- embedding: embedding.cu's launchers (the backward's partition for 132 SMs) ---- */

template <typename S>
void embedding_case(int64_t n, int64_t vocab, int64_t dim, size_t offset) {
  using T = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  const int32_t dt = sizeof(S) == 2 ? BF16 : F32;
  const auto table = encode<S>(check::randn(vocab * dim, 51 + dim));
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)((i * i * 31 + 7) % vocab); /* repeats */
  const auto dout = encode<S>(check::randn(n * dim, 52));
  std::vector<S> out(n * dim), gbuf(n * dim + offset);
  std::vector<float> dt_cpu(vocab * dim, 0.5f), dt_got(vocab * dim, 0.5f);
  CHECK_STATUS(moe4j_cpu_embedding_forward(dt, table.data(), ids.data(), out.data(), n, vocab, dim), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_embedding_backward(dt, dout.data(), ids.data(), dt_cpu.data(), n, vocab, dim, 1), MOE4J_OK);
  S *g = gbuf.data() + offset;
  const int64_t row_bytes = dim * (int64_t)sizeof(S);
  auto forward = [&](auto unit) {
    using U = decltype(unit);
    emu::run_grid(dim3{2, 1, 1}, kForwardThreads, [&] {
      embedding_forward_kernel<U>((const U *)table.data(), ids.data(), (U *)g, n, vocab, row_bytes / (int64_t)sizeof(U));
    });
  };
  if (row_bytes % 16 == 0 && (uintptr_t)g % 16 == 0) forward(uint4{});
  else if (row_bytes % 4 == 0 && (uintptr_t)g % 4 == 0) forward(uint32_t{});
  else forward(uint16_t{});
  const int64_t col_tiles = (dim + kBackwardTile - 1) / kBackwardTile;
  int64_t parts = (132 * kBackwardWarpsPerSm + col_tiles - 1) / col_tiles;
  if (parts > vocab) parts = vocab;
  const int64_t rows_per_part = (vocab + parts - 1) / parts;
  parts = (vocab + rows_per_part - 1) / rows_per_part;
  const int64_t items = col_tiles * parts;
  emu::run_grid(dim3{3, 1, 1}, kBackwardThreads, [&] {
    embedding_backward_kernel<T>((const T *)dout.data(), ids.data(), dt_got.data(), n, dim, vocab, col_tiles, rows_per_part, items);
  });
  EXPECT(memcmp(g, out.data(), out.size() * sizeof(S)) == 0, "embedding forward (bitwise)", n, dim);
  EXPECT(same_bytes(dt_got, dt_cpu), "embedding backward (bitwise)", n, dim);
  std::vector<float> dt_ref(vocab * dim, 0.5f);
  emu::run_grid(dim3{(unsigned)((dim + kBackwardThreads - 1) / kBackwardThreads), 1, 1}, kBackwardThreads,
                [&] { embedding_backward_ref<T>((const T *)dout.data(), ids.data(), dt_ref.data(), n, dim, vocab); });
  EXPECT(same_bytes(dt_ref, dt_cpu), "embedding backward reference (bitwise)", n, dim);
}

}  // namespace

TEST_CASE(embedding) {
  embedding_case<float>(50, 40, 64, 0);    /* 16-byte units */
  embedding_case<uint16_t>(50, 40, 66, 0); /* 4-byte units */
  embedding_case<uint16_t>(30, 20, 33, 1); /* 2-byte units */
  embedding_case<float>(40, 3, 300, 0);    /* a few rows, several column tiles */
}

TEST_MAIN("embedding_emulated")
