/*
 * Embedding lookup forward and backward.
 *
 * Layout: table [vocab, dim] (F32|BF16), ids I32 [num_ids], out [num_ids, dim] (table's dtype);
 * backward: dout [num_ids, dim] (F32|BF16), dtable F32 [vocab, dim].
 *
 * Forward: a warp per id copies the row with the widest unit the row width and both base
 * addresses allow (16, 4 or 2 bytes): a pure memory copy, dtype-agnostic. An id outside
 * [0, vocab) cannot be reported from the device, so its row is written as zeros (moe4j.h); the
 * Java layer and the CPU twin validate ids.
 *
 * Backward: dtable[ids[i], :] += dout[i, :], every element summed in increasing i (deterministic,
 * no float atomics, no scratch: the ABI has no workspace pointer). The work is split into items
 * (column tile of 32 lanes x kBackwardCols columns, vocab partition [v0, v1)); a warp per item
 * scans the ids 32 at a time, ballots the ones in its partition and walks them in order. The
 * dtable row segment being updated stays in registers while consecutive matches hit the same row
 * (a hot id such as padding costs a load per run, not per occurrence); the sum it stores is the
 * same sequence of f32 additions as the plain loop, so the result is bitwise equal to the
 * reference kernel (a thread per column looping over all ids) and to the CPU twin
 * (native/src/cpu_embedding.cpp). Out-of-range ids fall in no partition and are skipped.
 * dtable is zeroed first with cudaMemsetAsync unless accumulate != 0.
 * Device code: kernels/embedding_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_embedding_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cuda_check.cuh"
#include "embedding_kernels.cuh"
#include "op_args.h"

namespace moe4j {

template <typename U>
static void launch_embedding_forward(const void *table, const int32_t *ids, void *out,
                                     int64_t num_ids, int64_t vocab, int64_t row_bytes,
                                     cudaStream_t stream) {
  const unsigned int blocks = blocks_for(num_ids, kForwardThreads / 32);
  embedding_forward_kernel<<<blocks, kForwardThreads, 0, stream>>>(
      (const U *)table, ids, (U *)out, num_ids, vocab, row_bytes / (int64_t)sizeof(U));
}

static bool aligned_to(const void *p, uintptr_t bytes) { return ((uintptr_t)p % bytes) == 0; }

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_embedding_forward(int32_t dtype, const void *table, const int32_t *ids,
                                     void *out, int64_t num_ids, int64_t vocab, int64_t dim,
                                     void *stream) {
  const char *fn = "moe4j_cuda_embedding_forward";
  ArgCheck chk(fn);
  check_embedding_forward(chk, dtype, table, ids, out, num_ids, vocab, dim);
  if (chk.failed()) return chk.status();
  const int64_t row_bytes = dim * dtype_size(dtype);
  if (num_ids * row_bytes == 0) return MOE4J_OK;
  /* table may be NULL (vocab == 0): every row is then out of range and written as zeros */
  const bool table_ok16 = table == nullptr || aligned_to(table, 16);
  const bool table_ok4 = table == nullptr || aligned_to(table, 4);
  if (row_bytes % 16 == 0 && table_ok16 && aligned_to(out, 16))
    launch_embedding_forward<uint4>(table, ids, out, num_ids, vocab, row_bytes, as_stream(stream));
  else if (row_bytes % 4 == 0 && table_ok4 && aligned_to(out, 4))
    launch_embedding_forward<uint32_t>(table, ids, out, num_ids, vocab, row_bytes, as_stream(stream));
  else
    launch_embedding_forward<uint16_t>(table, ids, out, num_ids, vocab, row_bytes, as_stream(stream));
  return check_launch(fn, "embedding_forward_kernel");
}

int32_t moe4j_cuda_embedding_backward(int32_t dtype, const void *dout, const int32_t *ids,
                                      float *dtable, int64_t num_ids, int64_t vocab, int64_t dim,
                                      int32_t accumulate, void *stream) {
  const char *fn = "moe4j_cuda_embedding_backward";
  ArgCheck chk(fn);
  check_embedding_backward(chk, dtype, dout, ids, dtable, num_ids, vocab, dim, accumulate);
  if (chk.failed()) return chk.status();
  const int64_t dtable_bytes = vocab * dim * 4;
  if (dtable_bytes == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  if (!accumulate) {
    int32_t st = cuda_status(cudaMemsetAsync(dtable, 0, (size_t)dtable_bytes, s), fn,
                             "cudaMemsetAsync");
    if (st != MOE4J_OK) return st;
  }
  if (num_ids == 0) return MOE4J_OK;

  if (reference_kernels_enabled()) {
    const unsigned int blocks = blocks_for(dim, kBackwardThreads, INT32_MAX);
    if (dtype == MOE4J_DTYPE_BF16)
      embedding_backward_ref<<<blocks, kBackwardThreads, 0, s>>>((const bf16_t *)dout, ids,
                                                                  dtable, num_ids, dim, vocab);
    else
      embedding_backward_ref<<<blocks, kBackwardThreads, 0, s>>>((const float *)dout, ids,
                                                                  dtable, num_ids, dim, vocab);
    return check_launch(fn, "embedding_backward_ref");
  }

  int device = 0, sms = 0;
  int32_t st = cuda_status(cudaGetDevice(&device), fn, "cudaGetDevice");
  if (st == MOE4J_OK)
    st = cuda_status(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), fn,
                     "cudaDeviceGetAttribute");
  if (st != MOE4J_OK) return st;
  /* Enough (column tile, vocab partition) items to fill the GPU; more partitions mean more id
   * scanning per column but shorter serial chains per warp. */
  const int64_t col_tiles = (dim + kBackwardTile - 1) / kBackwardTile;
  int64_t parts = ((int64_t)sms * kBackwardWarpsPerSm + col_tiles - 1) / col_tiles;
  if (parts > vocab) parts = vocab;
  if (parts < 1) parts = 1;
  const int64_t rows_per_part = (vocab + parts - 1) / parts;
  parts = (vocab + rows_per_part - 1) / rows_per_part;
  const int64_t items = col_tiles * parts;
  const unsigned int blocks = blocks_for(items, kBackwardThreads / 32);
  if (dtype == MOE4J_DTYPE_BF16)
    embedding_backward_kernel<<<blocks, kBackwardThreads, 0, s>>>(
        (const bf16_t *)dout, ids, dtable, num_ids, dim, vocab, col_tiles, rows_per_part, items);
  else
    embedding_backward_kernel<<<blocks, kBackwardThreads, 0, s>>>(
        (const float *)dout, ids, dtable, num_ids, dim, vocab, col_tiles, rows_per_part, items);
  return check_launch(fn, "embedding_backward_kernel");
}

}  // extern "C"
