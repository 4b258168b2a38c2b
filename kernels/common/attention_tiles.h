/*
 * Tiling of flash attention (FlashAttention-2), shared by the CPU twin
 * (native/src/cpu_attention.cpp) and the CUDA kernels (kernels/flash_attention.cu), so both visit
 * the same tiles in the same order.
 *
 * Queries are cut into tiles of kAttnBlockQ rows (Br), keys into tiles of kAttnBlockK (Bc).
 * Query i may attend key j iff attn_allowed(i, j): (causal == 0 or j <= i) and (no window or
 * j > i - window). A window <= 0 or >= seq changes nothing (i - window < 0 <= j), so callers
 * normalize it once with attn_window(); after that w == 0 means "no window" and 0 < w < seq, so
 * the index math below never overflows.
 *
 * Tile skipping: attn_key_tiles(q_tile) is the half-open range of key tiles that hold at least one
 * key some query of the tile may attend (the others are entirely above the causal diagonal or
 * entirely left of the window) — the forward and the dQ pass loop over it in ascending order.
 * attn_query_tiles(k_tile) is the converse range, used by the dK/dV pass. Inside a visited tile the
 * element mask attn_allowed still applies (partial tiles on the diagonal / window edge).
 *
 * Sequences: every index above is a position inside one sequence of `len` tokens. A uniform batch
 * (cu_seqlens == NULL) is sequence b = tokens b*S .. b*S + S - 1 with lse rows at b*Hq*S; a packed
 * varlen batch is sequence b = tokens c[b] .. c[b+1] - 1 with lse rows at c[b] (lse [Hq, T]). In
 * both cases the lse row of (sequence, head h, position i) is lse_base + h * seq + i, where `seq`
 * is the ABI argument (S, or T), so one code path serves both (attn_sequence).
 */
#pragma once
#include <stdint.h>

#include "hd.h"

namespace moe4j {

constexpr int kAttnBlockQ = 64; /* Br: query rows per tile */
constexpr int kAttnBlockK = 64; /* Bc: keys per tile */

/* Half-open index range [begin, end); empty when end <= begin. */
struct AttnRange {
  int64_t begin, end;
};

/* The effective window: 0 (none) when window <= 0 or window >= seq, else window. */
MOE4J_HD int64_t attn_window(int64_t window, int64_t seq) {
  return (window <= 0 || window >= seq) ? 0 : window;
}

/* May query i attend key j? w from attn_window. */
MOE4J_HD bool attn_allowed(int64_t i, int64_t j, bool causal, int64_t w) {
  return (!causal || j <= i) && (w == 0 || j > i - w);
}

MOE4J_HD int64_t attn_tile_count(int64_t n, int64_t block) { return (n + block - 1) / block; }

/* Keys that some query in [q0, q1) may attend (q0 < q1 <= seq). */
MOE4J_HD AttnRange attn_key_range(int64_t q0, int64_t q1, int64_t seq, bool causal, int64_t w) {
  int64_t lo = 0, hi = seq;
  if (causal && q1 < hi) hi = q1;              /* j <= q1 - 1 */
  if (w > 0 && q0 - w + 1 > lo) lo = q0 - w + 1; /* j >= i - w + 1 >= q0 - w + 1 */
  return AttnRange{lo, hi > lo ? hi : lo};
}

/* Queries that may attend some key in [k0, k1) (k0 < k1 <= seq). */
MOE4J_HD AttnRange attn_query_range(int64_t k0, int64_t k1, int64_t seq, bool causal, int64_t w) {
  int64_t lo = 0, hi = seq;
  if (causal) lo = k0;                       /* i >= j >= k0 */
  if (w > 0 && k1 - 1 + w < hi) hi = k1 - 1 + w; /* i < j + w <= k1 - 1 + w */
  return AttnRange{lo, hi > lo ? hi : lo};
}

/* Key tiles visited by query tile q_tile (tiles of kAttnBlockQ rows over seq). */
MOE4J_HD AttnRange attn_key_tiles(int64_t q_tile, int64_t seq, bool causal, int64_t w) {
  const int64_t q0 = q_tile * kAttnBlockQ;
  const int64_t q1 = q0 + kAttnBlockQ < seq ? q0 + kAttnBlockQ : seq;
  const AttnRange r = attn_key_range(q0, q1, seq, causal, w);
  if (r.end <= r.begin) return AttnRange{0, 0};
  return AttnRange{r.begin / kAttnBlockK, attn_tile_count(r.end, kAttnBlockK)};
}

/* Query tiles that visit key tile k_tile (the converse of attn_key_tiles). */
MOE4J_HD AttnRange attn_query_tiles(int64_t k_tile, int64_t seq, bool causal, int64_t w) {
  const int64_t k0 = k_tile * kAttnBlockK;
  const int64_t k1 = k0 + kAttnBlockK < seq ? k0 + kAttnBlockK : seq;
  const AttnRange r = attn_query_range(k0, k1, seq, causal, w);
  if (r.end <= r.begin) return AttnRange{0, 0};
  return AttnRange{r.begin / kAttnBlockQ, attn_tile_count(r.end, kAttnBlockQ)};
}

/* Sequence b of a batch: its first token (row of the [tokens, H, D] view), its length and the lse
 * row of its position 0 for head 0. */
struct AttnSeq {
  int64_t start, len, lse_base;
};

/* Offset c[b] clamped to [lo, seq]: the CUDA kernels cannot validate cu_seqlens on the host, so a
 * bad value must still stay inside the buffers (a reversed range becomes empty). */
MOE4J_HD int64_t attn_clamped_offset(const int32_t *cu, int64_t b, int64_t lo, int64_t seq) {
  const int64_t c = cu[b];
  return c < lo ? lo : (c > seq ? seq : c);
}

/* Sequence b (< batch) of a uniform (cu == nullptr: `seq` tokens each) or varlen (cu != nullptr:
 * `seq` = T packed tokens) batch with q_heads query heads. */
MOE4J_HD AttnSeq attn_sequence(const int32_t *cu, int64_t b, int64_t seq, int64_t q_heads) {
  if (cu == nullptr) return AttnSeq{b * seq, seq, b * q_heads * seq};
  const int64_t start = attn_clamped_offset(cu, b, 0, seq);
  const int64_t end = attn_clamped_offset(cu, b + 1, start, seq);
  return AttnSeq{start, end - start, start};
}

/* The varlen sequence holding packed token t (< seq): the last b < batch whose clamped start is
 * <= t (binary search: O(log batch) reads, all in [0, batch]), or -1 when t lies in no sequence
 * (only possible for an invalid cu_seqlens, or t < cu[0]). For a valid cu_seqlens this is the
 * unique b with c[b] <= t < c[b+1] (empty sequences share a start with the next one and are
 * skipped because the search takes the last). */
MOE4J_HD int64_t attn_find_sequence(const int32_t *cu, int64_t batch, int64_t seq, int64_t t) {
  int64_t lo = 0, hi = batch; /* invariant: answer in [lo - 1, hi) */
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (attn_clamped_offset(cu, mid, 0, seq) <= t) lo = mid + 1;
    else hi = mid;
  }
  const int64_t b = lo - 1;
  if (b < 0) return -1;
  const AttnSeq s = attn_sequence(cu, b, seq, 1);
  return (t >= s.start && t < s.start + s.len) ? b : -1;
}

/* Does every (i, j) with q0 <= i < q1, k0 <= j < k1 pass attn_allowed? Then a kernel may skip the
 * element mask for the tile (the common case off the diagonal / window edge). The extreme pairs
 * decide it: the causal test is hardest at (q0, k1 - 1), the window test at (q1 - 1, k0). An
 * empty rectangle is vacuously unmasked. w from attn_window. */
MOE4J_HD bool attn_tile_unmasked(int64_t q0, int64_t q1, int64_t k0, int64_t k1, bool causal,
                                 int64_t w) {
  if (q1 <= q0 || k1 <= k0) return true;
  if (causal && k1 - 1 > q0) return false;
  if (w > 0 && k0 <= q1 - 1 - w) return false;
  return true;
}

/* Tile slots of a packed varlen batch: a CUDA grid over (sequence, 64-row tile) pairs that the host
 * can size without reading cu_seqlens. Sequence b owns slots [base(b), base(b + 1)) with
 * base(b) = c[b] / 64 + b (c[b] clamped as in attn_sequence). That is at least ceil(len_b / 64)
 * slots (with r = c[b] % 64: (r + len_b) / 64 + 1 >= ceil(len_b / 64)), so
 * attn_varlen_slot_count = T / 64 + batch slots hold every tile of every sequence, with at most one
 * spare slot per sequence (instead of a grid sized for the longest possible sequence per sequence).
 * kAttnBlockQ == kAttnBlockK, so the same slots serve query and key tiles. */
MOE4J_HD int64_t attn_varlen_slot_count(int64_t batch, int64_t seq) {
  return seq / kAttnBlockQ + batch;
}

MOE4J_HD int64_t attn_varlen_slot_base(const int32_t *cu, int64_t b, int64_t seq) {
  return attn_clamped_offset(cu, b, 0, seq) / kAttnBlockQ + b;
}

struct AttnSlot {
  int64_t seq, tile; /* seq = -1: the slot lies before every sequence (invalid cu_seqlens only) */
};

/* Slot u -> (sequence, tile): the last b < batch with base(b) <= u (binary search, O(log batch)
 * reads), tile u - base(b). The caller skips tiles at or past the sequence's length (spare slots).
 * For a valid cu_seqlens base() strictly increases, so every (b, tile < ceil(len_b / 64)) is the
 * image of exactly one slot. */
MOE4J_HD AttnSlot attn_varlen_slot(const int32_t *cu, int64_t batch, int64_t seq, int64_t u) {
  int64_t lo = 0, hi = batch; /* answer in [lo - 1, hi) */
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (attn_varlen_slot_base(cu, mid, seq) <= u) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0) return AttnSlot{-1, 0};
  return AttnSlot{lo - 1, u - attn_varlen_slot_base(cu, lo - 1, seq)};
}

/* Shared-memory layout of the CUDA kernels' [64 rows][d] bf16 tiles (kernels/flash_attention.cu),
 * kept here so the CPU tests can check it: 16-byte chunk c (8 elements) of row r is stored at chunk
 * c ^ s(r), s(r) = r & 7 for d >= 64 (8 or more chunks a row) and (r / 2) & 3 for d = 32 (4 chunks,
 * 64-byte rows: two rows share a 128-byte line), so 8 consecutive rows at the same chunk (one
 * ldmatrix phase) land in 8 different 16-byte bank groups. Element offset of (row, chunk): */
MOE4J_HD int attn_smem_row_xor(int row, int d) { return d >= 64 ? (row & 7) : ((row >> 1) & 3); }

MOE4J_HD int attn_smem_swizzle(int row, int chunk, int d) {
  return row * d + ((chunk ^ attn_smem_row_xor(row, d)) << 3);
}

/* The lane-dependent part of attn_smem_swizzle(R + lr, C + lc, d) for R % 8 == 0, C even and lc
 * in {0, 1} (every ldmatrix address of the kernels): s(R + lr) == s(lr) and s < 8, so
 * (C + lc) ^ s == (C & ~7) + ((C & 7) ^ lc ^ s), and the offset equals
 * R * d + (C & ~7) * 8 + attn_smem_lane_part(lr, lc, (C & 7) / 2, d): a lane needs only 4 such
 * parts (c4 = 0..3) for all (R, C). */
MOE4J_HD int attn_smem_lane_part(int lr, int lc, int c4, int d) {
  return lr * d + (((2 * c4) ^ lc ^ attn_smem_row_xor(lr, d)) << 3);
}

}  // namespace moe4j
