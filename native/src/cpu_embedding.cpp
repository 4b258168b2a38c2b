/*
 * CPU twin of the embedding kernels (kernels/embedding.cu).
 *
 * Forward: out[i, :] = table[ids[i], :], a row copy per id (the dtype only sets the row width).
 * Every id is checked against [0, vocab) before anything is written; the first bad one is named
 * in the error ("ids[3] = 70000 is out of range [0, 32000)").
 *
 * Backward: dtable[ids[i], :] += dout[i, :] with every element summed in increasing i, so the
 * result is bitwise reproducible and independent of the thread count. Like the CUDA kernel, the
 * work is split into (column tile, vocab partition) items; an item scans all ids in order and
 * adds the rows whose id falls into its partition. Items own disjoint parts of dtable: no locks,
 * no atomics, and the per-element summation order is the id order. The CUDA kernel uses the same
 * split (a warp per item), so both produce identical bits.
 */
#include <omp.h>
#include <string.h>

#include "cpu_common.h"
#include "op_args.h"

using namespace moe4j;

namespace {

/* Columns per backward work item (1 KiB of f32 per dtable row segment). */
constexpr int64_t kEmbeddingTile = 256;
/* Below this many dout elements the backward runs on one thread (OpenMP start-up dominates). */
constexpr int64_t kEmbeddingParallelMin = 1 << 15;

/* Fails `chk` naming the first id outside [0, vocab). */
void check_ids(ArgCheck &chk, const int32_t *ids, int64_t num_ids, int64_t vocab) {
  if (chk.failed()) return;
  for (int64_t i = 0; i < num_ids; i++) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      chk.require(false, "ids[%lld] = %d is out of range [0, %lld)", (long long)i, ids[i],
                  (long long)vocab);
      return;
    }
  }
}

template <typename T>
MOE4J_SIMD_CLONES void accumulate_span(float *__restrict__ dst, const T *__restrict__ src,
                                       int64_t n) {
  for (int64_t c = 0; c < n; c++) dst[c] += to_f32(src[c]);
}

template <typename T>
void embedding_backward(const T *dout, const int32_t *ids, float *dtable, int64_t num_ids,
                        int64_t vocab, int64_t dim) {
  const int64_t col_tiles = (dim + kEmbeddingTile - 1) / kEmbeddingTile;
  const int64_t threads = omp_get_max_threads();
  /* enough items for load balance when ids cluster in part of the vocabulary */
  int64_t parts = (4 * threads + col_tiles - 1) / col_tiles;
  if (parts > vocab) parts = vocab;
  if (parts < 1) parts = 1;
  const int64_t rows_per_part = (vocab + parts - 1) / parts;
  parts = (vocab + rows_per_part - 1) / rows_per_part;
  const int64_t items = col_tiles * parts;
#pragma omp parallel for schedule(dynamic, 1) if (items > 1 && num_ids * dim >= kEmbeddingParallelMin)
  for (int64_t item = 0; item < items; item++) {
    const int64_t tile = item % col_tiles, part = item / col_tiles;
    const int64_t c0 = tile * kEmbeddingTile;
    const int64_t width = dim - c0 < kEmbeddingTile ? dim - c0 : kEmbeddingTile;
    const int64_t v0 = part * rows_per_part;
    const int64_t v1 = v0 + rows_per_part < vocab ? v0 + rows_per_part : vocab;
    for (int64_t i = 0; i < num_ids; i++) {
      const int64_t id = ids[i];
      if (id >= v0 && id < v1) accumulate_span(dtable + id * dim + c0, dout + i * dim + c0, width);
    }
  }
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_embedding_forward(int32_t dtype, const void *table, const int32_t *ids,
                                    void *out, int64_t num_ids, int64_t vocab, int64_t dim) {
  ArgCheck chk("moe4j_cpu_embedding_forward");
  check_embedding_forward(chk, dtype, table, ids, out, num_ids, vocab, dim);
  check_ids(chk, ids, num_ids, vocab); /* CPU only: the launcher cannot read device ids */
  if (chk.failed()) return chk.status();
  const int64_t es = dtype_size(dtype), out_bytes = num_ids * dim * es;
  if (out_bytes == 0) return MOE4J_OK;
  const size_t row_bytes = (size_t)(dim * es);
  const char *src = (const char *)table;
  char *dst = (char *)out;
#pragma omp parallel for schedule(static) if (out_bytes >= 4 * kChunk)
  for (int64_t i = 0; i < num_ids; i++)
    memcpy(dst + (size_t)i * row_bytes, src + (size_t)ids[i] * row_bytes, row_bytes);
  return MOE4J_OK;
}

int32_t moe4j_cpu_embedding_backward(int32_t dtype, const void *dout, const int32_t *ids,
                                     float *dtable, int64_t num_ids, int64_t vocab, int64_t dim,
                                     int32_t accumulate) {
  ArgCheck chk("moe4j_cpu_embedding_backward");
  check_embedding_backward(chk, dtype, dout, ids, dtable, num_ids, vocab, dim, accumulate);
  check_ids(chk, ids, num_ids, vocab); /* CPU only: the launcher cannot read device ids */
  if (chk.failed()) return chk.status();
  const int64_t n = vocab * dim;
  if (n == 0) return MOE4J_OK;
  if (!accumulate) {
    const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 4)
    for (int64_t c = 0; c < chunks; c++) {
      const int64_t start = c * kChunk;
      memset(dtable + start, 0, (size_t)(n - start < kChunk ? n - start : kChunk) * 4);
    }
  }
  if (num_ids == 0) return MOE4J_OK;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    embedding_backward((const T *)dout, ids, dtable, num_ids, vocab, dim);
  });
  return MOE4J_OK;
}

}  // extern "C"
