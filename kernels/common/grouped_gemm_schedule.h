/*
 * Tile schedule of the grouped-expert GEMM, shared by the CUDA kernel (kernels/grouped_gemm.cu)
 * and its CPU twin (native/src/cpu_gemm.cpp).
 *
 * Group e owns `rows_e` rows (rows_e >= 0). Its output [rows_e, n] is cut into
 * m_tiles_e = ceil(rows_e / tile_m) row tiles and n_tiles = ceil(n / tile_n) column tiles, so it
 * holds tiles_in_group(rows_e, tile_m, n_tiles) = m_tiles_e * n_tiles tiles (0 for an empty group).
 * A prefix sum over groups, tile_prefix[0] = 0, tile_prefix[e + 1] = tile_prefix[e] + tiles_e,
 * numbers all tiles 0 .. tile_prefix[num_groups] - 1. locate_tile() maps a linear tile index back
 * to (group, m_tile, n_tile); inside a group tiles are ordered m-major with n fastest
 * (tile = m_tile * n_tiles + n_tile), so consecutive tiles share the same rows of the input.
 */
#pragma once
#include <stdint.h>

#include "hd.h"

namespace moe4j {

struct GroupTile {
  int64_t group;   // group (expert) index
  int64_t m_tile;  // row tile inside the group: rows offsets[group] + m_tile * tile_m ...
  int64_t n_tile;  // column tile: columns n_tile * tile_n ...
};

// ceil(a / b) for a >= 0, b > 0.
MOE4J_HD int64_t ceil_div_i64(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Number of tiles of a group with `rows` rows (0 when rows <= 0).
MOE4J_HD int64_t tiles_in_group(int64_t rows, int64_t tile_m, int64_t n_tiles) {
  return rows <= 0 ? 0 : ceil_div_i64(rows, tile_m) * n_tiles;
}

// tile_prefix[0..num_groups] from offsets[0..num_groups] (rows of group e = offsets[e+1]-offsets[e]).
// Host helper (the CUDA kernel computes the same prefix on the device).
MOE4J_HD void build_tile_prefix(const int64_t* offsets, int64_t num_groups, int64_t tile_m,
                                int64_t n_tiles, int64_t* tile_prefix) {
  tile_prefix[0] = 0;
  for (int64_t e = 0; e < num_groups; ++e) {
    tile_prefix[e + 1] =
        tile_prefix[e] + tiles_in_group(offsets[e + 1] - offsets[e], tile_m, n_tiles);
  }
}

// Maps linear `tile` (0 <= tile < tile_prefix[num_groups]) to its group and tile coordinates by a
// binary search for the last e with tile_prefix[e] <= tile (empty groups, whose prefix entry
// repeats, are skipped because the search takes the last such e). Returns false (and leaves *out
// untouched) when tile is out of range.
MOE4J_HD bool locate_tile(const int64_t* tile_prefix, int64_t num_groups, int64_t tile,
                          int64_t n_tiles, GroupTile* out) {
  if (tile < 0 || num_groups <= 0 || n_tiles <= 0 || tile >= tile_prefix[num_groups]) return false;
  int64_t lo = 0, hi = num_groups - 1;  // invariant: tile_prefix[lo] <= tile < tile_prefix[hi+1]
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (tile_prefix[mid] <= tile) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int64_t local = tile - tile_prefix[lo];
  out->group = lo;
  out->m_tile = local / n_tiles;
  out->n_tile = local % n_tiles;
  return true;
}

}  // namespace moe4j
