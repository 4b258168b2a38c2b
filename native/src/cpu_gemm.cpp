/*
 * CPU twin of kernels/grouped_gemm.cu: grouped-expert GEMM (forward, dgrad, wgrad, and forward
 * with a fused SwiGLU epilogue). Dense GEMM is the one-group case (offsets == NULL).
 *
 * Every case is C[M, N] = A[M, Kr] . B[Kr, N] per group with strided operands:
 *   forward  C = y_e  [rows, n],  A = x_e (row-major),  B(p, j) = w_e[j, p] (w_e^T)
 *   dgrad    C = dx_e [rows, k],  A = dy_e (row-major), B(p, j) = w_e[p, j]
 *   wgrad    C = dw_e [n, k],     A(i, p) = dy_e[p, i], B(p, j) = x_e[p, j]; Kr = rows of group e
 *   swiglu   forward with the columns of a tile taken half from the gate rows and half from the
 *            matching up rows of w13, so the epilogue sees g and u of the same output column.
 *
 * Structure (BLIS): work items are (group, m-tile, n-tile) triples numbered by the shared tile
 * schedule (kernels/common/grouped_gemm_schedule.h) and handed out through an atomic counter, so a
 * skewed routing keeps every thread busy. A thread owning an item loops over KC blocks of the
 * reduction (pc); for each it packs the KC x NT block of B (NR-wide micro-panels; bf16 widened
 * here), then for each MC block of rows packs A (MC x KC) and runs the MR x NR micro-kernel over
 * it (ir outer: the A micro-panel stays in L1 while B micro-panels stream from L2/L3) into the
 * item's f32 tile buffer; the first KC block writes the buffer, later ones continue
 * each element's FMA chain. The epilogue (row scale, accumulate, SwiGLU, rounding to the output
 * dtype) then writes the tile; an F32 output with no row scale, no accumulate, no SwiGLU and
 * a reduction of at most one KC block skips the buffer for the full MR x NR micro-tiles (the
 * micro-kernel writes them into the output) and copies only the edge micro-tiles. Each output
 * element is a single FMA chain in k order (see cpu_gemm_kernels.h): results do not depend on
 * the thread count, the tiling, or the SIMD variant.
 *
 * Small groups (forward only): a group of at most gemv_max_rows() (16) rows (decode: the batch,
 * or the few rows an expert gets per step) skips the packing and runs the GEMV kernels of cpu_gemv.h,
 * which read each weight row once (bf16 widened in registers) against all of the group's rows.
 * Work items are (group, block of output columns) over every small group of the call in one
 * parallel region, so a decode step with many small expert groups keeps all threads busy. Each
 * output is computed by one thread in a fixed order (16 lanes, fixed reduction tree), so it is
 * deterministic and the same for every SIMD variant and thread count; it agrees with the packed
 * path to f32 rounding of the k-sum (the order differs, not bitwise). Large groups of the same
 * call still take the packed path.
 */
#include <omp.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <atomic>
#include <new>
#include <type_traits>
#include <vector>

#include "cpu_common.h"
#include "cpu_gemm_kernels.h"
#include "cpu_gemv.h"
#include "grouped_gemm_schedule.h"
#include "swiglu_math.h"

using namespace moe4j;
using namespace moe4j::gemm;

namespace {

/* ---- kernel variant selected at run time ------------------------------------------------ */

struct Variant {
  int mr, nr;
  int64_t mc, kc;
  void (*ukr)(int64_t, const float *, const float *, float *, int64_t, bool);
  void (*pack_f32)(const float *, int64_t, int64_t, int64_t, int64_t, int, float *);
  void (*pack_bf16)(const bf16_t *, int64_t, int64_t, int64_t, int64_t, int, float *);
  int simd; /* for the GEMV kernels: 2 AVX-512, 1 AVX2, 0 scalar */
};

const Variant &variant() {
  static const Variant v = [] {
    __builtin_cpu_init();
    /* MOE4J_CPU_GEMM_VARIANT=avx2|scalar forces a narrower variant (testing, comparisons) */
    const char *force = getenv("MOE4J_CPU_GEMM_VARIANT");
    const bool allow512 = force == nullptr || strcmp(force, "avx512") == 0;
    const bool allow256 = force == nullptr || strcmp(force, "scalar") != 0;
    if (allow512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
      return Variant{kAvx512MR, kAvx512NR, 14 * 12, 512, ukr_avx512, pack_avx512<float>,
                     pack_avx512<bf16_t>, 2};
    if (allow256 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return Variant{kAvx2MR, kAvx2NR, 6 * 16, 256, ukr_avx2, pack_avx2<float>, pack_avx2<bf16_t>, 1};
    return Variant{kScalarMR, kScalarNR, 64, 256, ukr_scalar, pack_scalar<float>,
                   pack_scalar<bf16_t>, 0};
  }();
  return v;
}

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

/* Packing buffers, kept between calls: a fresh multi-MiB allocation is mmap'ed by malloc and
 * page-faulted (and zeroed) on every call, a few percent of a 2048^3 GEMM. One cached buffer,
 * 2 MiB aligned and marked for transparent huge pages (fewer TLB misses on the tile buffer);
 * a call that finds it in use by another call allocates its own. Never larger than 256 MiB. */
struct PackBuffer {
  std::atomic<bool> busy{false};
  float *ptr = nullptr;
  size_t bytes = 0;
};
PackBuffer g_pack_buffer;

float *alloc_pack(size_t bytes) {
  const size_t huge = (size_t)2 << 20;
  bytes = (bytes + huge - 1) / huge * huge;
  void *p = aligned_alloc(huge, bytes);
  if (p != nullptr) madvise(p, bytes, MADV_HUGEPAGE);
  return (float *)p;
}

float *acquire_pack(size_t bytes) {
  if (bytes <= ((size_t)256 << 20) && !g_pack_buffer.busy.exchange(true, std::memory_order_acquire)) {
    if (g_pack_buffer.bytes < bytes) {
      free(g_pack_buffer.ptr);
      g_pack_buffer.ptr = alloc_pack(bytes);
      g_pack_buffer.bytes = g_pack_buffer.ptr != nullptr ? bytes : 0;
    }
    if (g_pack_buffer.ptr != nullptr) return g_pack_buffer.ptr;
    g_pack_buffer.busy.store(false, std::memory_order_release);
    return nullptr;
  }
  return alloc_pack(bytes);
}

void release_pack(float *p) {
  if (p != nullptr && p == g_pack_buffer.ptr) g_pack_buffer.busy.store(false, std::memory_order_release);
  else free(p);
}

/* ---- problem description ---------------------------------------------------------------- */

enum class Kind { kForward, kDgrad, kWgrad, kSwiglu };

/* One call: element (r, p) of an operand lives at base + r * rs + p * ps (in elements). */
struct Problem {
  Kind kind;
  const void *x, *w, *dy;  /* inputs, in_dtype */
  void *out, *gate_up;     /* outputs, out_dtype */
  const float *row_scale;
  const int64_t *offsets;  /* NULL: one group */
  int64_t num_groups, total_rows, n, k, f;
  int32_t accumulate;
};

int64_t group_begin(const Problem &pb, int64_t e) { return pb.offsets ? pb.offsets[e] : 0; }
int64_t group_rows(const Problem &pb, int64_t e) {
  return pb.offsets ? pb.offsets[e + 1] - pb.offsets[e] : pb.total_rows;
}

template <typename Tin, typename Tout>
struct Runner {
  const Problem &pb;
  const Variant &v;
  int64_t cols;    /* columns of C: n (forward), k (dgrad, wgrad), f (swiglu) */
  int64_t tile_m;  /* rows of C per work item */
  int64_t tile_n;  /* columns of C per work item (swiglu: f-columns; packed width 2 * tile_n) */
  int64_t pack_n;  /* packed columns per work item (multiple of NR) */
  int64_t small_m; /* forward: groups of 1..small_m rows are left to the GEMV path */

  bool left_to_gemv(int64_t e) const {
    const int64_t rows = group_rows(pb, e);
    return pb.kind == Kind::kForward && rows > 0 && rows <= small_m;
  }

  /* C rows of group e (M of its GEMM) and reduction length */
  int64_t m_of(int64_t e) const { return pb.kind == Kind::kWgrad ? pb.n : group_rows(pb, e); }
  int64_t kr_of(int64_t e) const {
    switch (pb.kind) {
      case Kind::kForward: case Kind::kSwiglu: return pb.k;
      case Kind::kDgrad: return pb.n;
      default: return group_rows(pb, e);
    }
  }

  /* A operand of group e at C row i0: pointer to (i0, 0) and strides */
  const Tin *a_at(int64_t e, int64_t i0, int64_t *rs, int64_t *ps) const {
    const int64_t r0 = group_begin(pb, e);
    switch (pb.kind) {
      case Kind::kForward: case Kind::kSwiglu:
        *rs = pb.k; *ps = 1;
        return (const Tin *)pb.x + (r0 + i0) * pb.k;
      case Kind::kDgrad:
        *rs = pb.n; *ps = 1;
        return (const Tin *)pb.dy + (r0 + i0) * pb.n;
      default: /* wgrad: A(i, p) = dy[r0 + p, i] */
        *rs = 1; *ps = pb.n;
        return (const Tin *)pb.dy + r0 * pb.n + i0;
    }
  }

  /* B micro-panel of group e starting at packed column v of tile column j0: pointer to (0, col),
   * strides, and the number of valid columns (<= NR). */
  const Tin *b_at(int64_t e, int64_t j0, int64_t vcol, int64_t *rs, int64_t *ps,
                  int64_t *valid) const {
    int64_t col = j0 + vcol, limit = cols, row_base = 0;
    if (pb.kind == Kind::kSwiglu && vcol >= tile_n) { /* up half: rows f .. 2f-1 of w13 */
      col = j0 + vcol - tile_n;
      row_base = pb.f;
    }
    int64_t left = limit - col;
    *valid = left <= 0 ? 0 : (left < v.nr ? left : v.nr);
    if (*valid == 0) col = 0; /* keep the pointer inside the array */
    switch (pb.kind) {
      case Kind::kForward:
        *rs = pb.k; *ps = 1;
        return (const Tin *)pb.w + (e * pb.n + col) * pb.k;
      case Kind::kSwiglu:
        *rs = pb.k; *ps = 1;
        return (const Tin *)pb.w + (e * 2 * pb.f + row_base + col) * pb.k;
      case Kind::kDgrad: /* B(p, j) = w_e[p, j] */
        *rs = 1; *ps = pb.k;
        return (const Tin *)pb.w + e * pb.n * pb.k + col;
      default: { /* wgrad: B(p, j) = x[r0 + p, j] */
        *rs = 1; *ps = pb.k;
        return (const Tin *)pb.x + group_begin(pb, e) * pb.k + col;
      }
    }
  }

  void pack(const Tin *src, int64_t rs, int64_t ps, int64_t valid, int64_t kc, int W,
            float *dst) const {
    if constexpr (sizeof(Tin) == 4)
      v.pack_f32((const float *)src, rs, ps, valid, kc, W, dst);
    else
      v.pack_bf16((const bf16_t *)src, rs, ps, valid, kc, W, dst);
  }

  /* Writes rows [i0, i0 + mc) x tile columns of group e from the f32 tile buffer. */
  void epilogue(int64_t e, int64_t i0, int64_t mc, int64_t j0, const float *cbuf,
                int64_t ldc) const {
    const int64_t nc = cols - j0 < tile_n ? cols - j0 : tile_n;
    const bool acc = pb.accumulate != 0;
    if (pb.kind == Kind::kWgrad) {
      Tout *out = (Tout *)pb.out + e * pb.n * pb.k;
      for (int64_t i = 0; i < mc; i++) {
        Tout *o = out + (i0 + i) * pb.k + j0;
        const float *c = cbuf + i * ldc;
        for (int64_t j = 0; j < nc; j++) o[j] = from_f32<Tout>(acc ? to_f32(o[j]) + c[j] : c[j]);
      }
      return;
    }
    const int64_t r0 = group_begin(pb, e) + i0;
    if (pb.kind == Kind::kSwiglu) {
      for (int64_t i = 0; i < mc; i++) {
        const float *g = cbuf + i * ldc, *u = g + tile_n;
        Tout *h = (Tout *)pb.out + (r0 + i) * pb.f + j0;
        for (int64_t j = 0; j < nc; j++) h[j] = from_f32<Tout>(swiglu_out(g[j], u[j]));
        if (pb.gate_up != nullptr) {
          Tout *gu = (Tout *)pb.gate_up + (r0 + i) * 2 * pb.f + j0;
          for (int64_t j = 0; j < nc; j++) {
            gu[j] = from_f32<Tout>(g[j]);
            gu[pb.f + j] = from_f32<Tout>(u[j]);
          }
        }
      }
      return;
    }
    for (int64_t i = 0; i < mc; i++) {
      Tout *o = (Tout *)pb.out + (r0 + i) * cols + j0;
      const float *c = cbuf + i * ldc;
      const float s = pb.row_scale != nullptr ? pb.row_scale[r0 + i] : 1.0f;
      if (pb.row_scale == nullptr && !acc) {
        for (int64_t j = 0; j < nc; j++) o[j] = from_f32<Tout>(c[j]);
      } else if (!acc) {
        for (int64_t j = 0; j < nc; j++) o[j] = from_f32<Tout>(s * c[j]);
      } else {
        for (int64_t j = 0; j < nc; j++) o[j] = from_f32<Tout>(to_f32(o[j]) + s * c[j]);
      }
    }
  }

  /* Direct mode: an F32 output with no row scale, no accumulate and no SwiGLU, and a reduction
   * of one KC block, takes the micro-kernel's full MR x NR tiles straight into the output; only
   * edge tiles go through the tile buffer and the epilogue. With a single KC block the buffer
   * round trip plus the epilogue copy is a whole extra pass over C per FMA pass (grouped wgrad
   * with small groups: 1.5x faster). With several KC blocks the padded, huge-page tile buffer
   * stays: reloading partial sums from an output whose row stride is a power of two (4K
   * aliasing, TLB) measured 2-5% slower on 2048^3 than the buffer + epilogue. */
  bool direct_ok(int64_t kr) const {
    return std::is_same<Tout, float>::value && pb.kind != Kind::kSwiglu &&
           pb.row_scale == nullptr && pb.accumulate == 0 && kr > 0 && kr <= v.kc;
  }
  /* Output row i of group e (C coordinates) and its row stride, for direct mode. */
  float *out_row(int64_t e, int64_t i, int64_t *ldo) const {
    if (pb.kind == Kind::kWgrad) {
      *ldo = pb.k;
      return (float *)pb.out + e * pb.n * pb.k + i * pb.k;
    }
    *ldo = cols;
    return (float *)pb.out + (group_begin(pb, e) + i) * cols;
  }

  /* One work item: rows [mt * tile_m, +tile_m) and tile n_tile of group e. */
  void item(const GroupTile &t, float *bpack, float *apack, float *cbuf) const {
    const int64_t e = t.group, kr = kr_of(e), m = m_of(e);
    const int64_t i_begin = t.m_tile * tile_m;
    const int64_t i_end = i_begin + tile_m < m ? i_begin + tile_m : m;
    const int64_t rows = i_end - i_begin;
    const int64_t j0 = t.n_tile * tile_n;
    /* +16: tile-buffer rows 64 bytes apart from a power of two, against 4K set aliasing */
    const int64_t kc_max = v.kc, mr = v.mr, nr = v.nr, ldc = pack_n + 16;
    if (kr == 0) memset(cbuf, 0, sizeof(float) * round_up(rows, mr) * ldc);
    const bool direct = direct_ok(kr);
    const int64_t nc = cols - j0 < tile_n ? cols - j0 : tile_n;
    const int64_t rows_full = direct ? rows / mr * mr : 0; /* micro-rows that go direct */
    const int64_t cols_full = direct ? nc / nr * nr : 0;   /* micro-columns that go direct */
    int64_t ldo = 0;
    float *out0 = direct ? out_row(e, i_begin, &ldo) + j0 : nullptr;
    int64_t ars, aps;
    const Tin *a = a_at(e, i_begin, &ars, &aps);
    for (int64_t p0 = 0; p0 < kr; p0 += kc_max) {
      const int64_t kc = kr - p0 < kc_max ? kr - p0 : kc_max;
      for (int64_t vc = 0; vc < pack_n; vc += nr) {
        int64_t rs, ps, valid;
        const Tin *src = b_at(e, j0, vc, &rs, &ps, &valid);
        pack(src + p0 * ps, rs, ps, valid, kc, (int)nr, bpack + vc * kc);
      }
      for (int64_t ic = 0; ic < rows; ic += v.mc) {
        const int64_t mc = rows - ic < v.mc ? rows - ic : v.mc;
        const int64_t mc_pad = round_up(mc, mr);
        for (int64_t ir = 0; ir < mc_pad; ir += mr) {
          const int64_t valid = mc - ir < mr ? mc - ir : mr;
          pack(a + (ic + ir) * ars + p0 * aps, ars, aps, valid, kc, (int)mr, apack + ir * kc);
        }
        for (int64_t ir = 0; ir < mc_pad; ir += mr) {
          const int64_t i = ic + ir;
          float *crow = cbuf + i * ldc;
          if (i < rows_full) {
            float *orow = out0 + i * ldo;
            int64_t jr = 0;
            for (; jr < cols_full; jr += nr)
              v.ukr(kc, apack + ir * kc, bpack + jr * kc, orow + jr, ldo, p0 > 0);
            for (; jr < pack_n; jr += nr)
              v.ukr(kc, apack + ir * kc, bpack + jr * kc, crow + jr, ldc, p0 > 0);
          } else {
            for (int64_t jr = 0; jr < pack_n; jr += nr)
              v.ukr(kc, apack + ir * kc, bpack + jr * kc, crow + jr, ldc, p0 > 0);
          }
        }
      }
    }
    if (!direct) {
      epilogue(e, i_begin, rows, j0, cbuf, ldc);
      return;
    }
    /* edges: rows past rows_full (all columns), columns past cols_full (the other rows) */
    for (int64_t i = 0; i < rows; i++) {
      const int64_t jb = i < rows_full ? cols_full : 0;
      if (jb < nc) memcpy(out0 + i * ldo + jb, cbuf + i * ldc + jb, sizeof(float) * (nc - jb));
    }
  }

  /* Sets tile_n, pack_n and tile_m for tiles of at most tm_max rows x tn_max packed columns
   * (even splits of the columns and of the largest group's rows), fills the tile prefix over the
   * groups (kernels/common/grouped_gemm_schedule.h) and returns the number of column tiles. */
  int64_t plan_tiles(int64_t tn_max, int64_t tm_max, int64_t m_max, int64_t *prefix) {
    const int64_t nr = v.nr, mr = v.mr, E = pb.num_groups;
    const int64_t packed_per_col = pb.kind == Kind::kSwiglu ? 2 : 1;
    int64_t tn = tn_max / packed_per_col;
    tn = tn < nr ? nr : tn / nr * nr;
    const int64_t cols_pad = round_up(cols, nr);
    tile_n = tn < cols_pad ? tn : cols_pad;
    if (tile_n < cols_pad) { /* even split of the columns */
      const int64_t parts = ceil_div_i64(cols_pad, tile_n);
      tile_n = round_up(ceil_div_i64(cols_pad, parts), nr);
    }
    pack_n = tile_n * packed_per_col;
    const int64_t m_parts = ceil_div_i64(m_max, tm_max);
    tile_m = round_up(ceil_div_i64(m_max, m_parts), mr);
    const int64_t n_tiles = ceil_div_i64(cols, tile_n);
    prefix[0] = 0;
    for (int64_t e = 0; e < E; e++) {
      /* wgrad: an empty group still owns tiles (it writes zeros) unless accumulating */
      const bool skip =
          (pb.kind == Kind::kWgrad && pb.accumulate && group_rows(pb, e) == 0) || left_to_gemv(e);
      prefix[e + 1] = prefix[e] + (skip ? 0 : tiles_in_group(m_of(e), tile_m, n_tiles));
    }
    return n_tiles;
  }

  int32_t run() {
    const int64_t E = pb.num_groups, mr = v.mr;
    int64_t m_max = 0;
    for (int64_t e = 0; e < E; e++)
      if (!left_to_gemv(e) && m_of(e) > m_max) m_max = m_of(e);
    if (cols == 0 || m_max == 0) return MOE4J_OK;
    /* Tiles: up to 1024 rows x 2048 packed columns. A tile's A rows are packed once per tile and
     * its B columns once per tile, so large tiles pack x and w fewer times (2048^3: x once, w
     * twice); the f32 tile buffer (8 MiB) lives in L3, the A block (MC x KC, 336 KiB) in L2, and
     * the KC x 2048 B block streams from L3 one NR-wide micro-panel at a time. On the AVX-512 VM
     * of docs/BENCHMARKS.md this is 3-5% faster than 1024 x 1024 tiles with KC 256 on every dense
     * 2048^3 entry point. When that leaves fewer work items than threads the tiles are halved
     * (columns first) until every thread has one. Only shapes and the thread count decide them. */
    int threads = omp_get_max_threads();
    if (threads < 1) threads = 1;
    std::vector<int64_t> prefix;
    try {
      prefix.resize(E + 1);
    } catch (const std::bad_alloc &) {
      return fail(MOE4J_ERR_OUT_OF_MEMORY, "grouped gemm: cannot allocate the tile schedule");
    }
    int64_t n_tiles = 0;
    for (int64_t tn_max = 2048, tm_max = 1024;;) {
      n_tiles = plan_tiles(tn_max, tm_max, m_max, prefix.data());
      if (prefix[E] >= threads || (tn_max <= 128 && tm_max <= 128)) break;
      if (tn_max > 128) tn_max /= 2;
      else tm_max /= 2;
    }
    const int64_t total = prefix[E];
    if (total == 0) return MOE4J_OK;

    if (threads > total) threads = (int)total;
    const int64_t bsz = round_up(v.kc * pack_n, 16);
    const int64_t asz = round_up(round_up(v.mc, mr) * v.kc, 16);
    const int64_t csz = round_up(round_up(tile_m, mr) * (pack_n + 16), 16);
    const int64_t per_thread = bsz + asz + csz;
    const size_t bytes = sizeof(float) * (size_t)per_thread * (size_t)threads;
    float *buf = acquire_pack(bytes);
    if (buf == nullptr)
      return fail(MOE4J_ERR_OUT_OF_MEMORY, "grouped gemm: cannot allocate %lld bytes of packing buffers",
                  (long long)bytes);
    std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(threads)
    {
      float *bpack = buf + (int64_t)omp_get_thread_num() * per_thread;
      float *apack = bpack + bsz, *cbuf = apack + asz;
      for (int64_t t = next.fetch_add(1); t < total; t = next.fetch_add(1)) {
        GroupTile gt;
        if (locate_tile(prefix.data(), E, t, n_tiles, &gt)) item(gt, bpack, apack, cbuf);
      }
    }
    release_pack(buf);
    return MOE4J_OK;
  }
};

/* ---- small-M forward (GEMV) ---------------------------------------------------------------- */

/* Largest group (rows) that takes the GEMV path. The GEMV kernels read each weight byte once
 * while the packed path moves ~3x the weight bytes (bf16 read, f32 written and read again); on
 * the AVX-512 VM of docs/BENCHMARKS.md ("Generation (CPU)", bench_gemv_cpu) they were faster at
 * every M measured, 1..16, on 4096x4096 and 14336x4096 bf16 weights, so the threshold is the
 * largest M the kernels are instantiated for. MOE4J_CPU_GEMV_MAX_ROWS=0..16 overrides it (0 turns
 * the path off: tests and benchmarks compare both paths). */
constexpr int64_t kGemvDefaultMaxRows = kGemvMaxRows;

int64_t gemv_max_rows() {
  const char *env = getenv("MOE4J_CPU_GEMV_MAX_ROWS");
  if (env == nullptr || *env == '\0') return kGemvDefaultMaxRows;
  char *end = nullptr;
  const long v = strtol(env, &end, 10);
  if (*end != '\0' || v < 0) return kGemvDefaultMaxRows;
  return v > kGemvMaxRows ? kGemvMaxRows : v;
}

template <typename Tin, typename Tout>
struct GemvRunner {
  const Problem &pb;
  const Variant &v;
  int64_t max_rows;

  int32_t run() const {
    const int64_t E = pb.num_groups, n = pb.n, k = pb.k;
    if (n == 0 || max_rows <= 0) return MOE4J_OK;
    /* the small groups, their rows in the f32 copy of x, and their first work item */
    std::vector<int64_t> groups, xrow, first_item;
    int64_t xrows = 0;
    try {
      for (int64_t e = 0; e < E; e++) {
        const int64_t m = group_rows(pb, e);
        if (m < 1 || m > max_rows) continue;
        groups.push_back(e);
        xrow.push_back(xrows);
        xrows += m;
      }
    } catch (const std::bad_alloc &) {
      return fail(MOE4J_ERR_OUT_OF_MEMORY, "grouped gemm: cannot allocate the GEMV schedule");
    }
    const int64_t G = (int64_t)groups.size();
    if (G == 0) return MOE4J_OK;
    /* Column blocks: 64 weight rows (k = 4096 bf16: 512 KiB, a few hundred microseconds of
     * streaming), smaller when that would leave fewer than 8 items per thread. */
    const int max_threads = omp_get_max_threads() < 1 ? 1 : omp_get_max_threads();
    int64_t nb = 64;
    const int64_t want = 8 * (int64_t)max_threads;
    if (G * ceil_div_i64(n, nb) < want) {
      nb = round_up(ceil_div_i64(G * n, want), kGemvRows);
      if (nb < 16) nb = 16;
      if (nb > 64) nb = 64;
    }
    const int64_t blocks = ceil_div_i64(n, nb), total = G * blocks;
    /* x rows widened once, zero padded to whole 16-lane chunks (the kernels need no k tail for x) */
    const int64_t ldx = round_up(k, kGemvLanes);
    float *xf = nullptr;
    const size_t xbytes = sizeof(float) * (size_t)(xrows * ldx);
    if (xbytes > 0) {
      xf = (float *)aligned_alloc(64, (xbytes + 63) / 64 * 64);
      if (xf == nullptr)
        return fail(MOE4J_ERR_OUT_OF_MEMORY, "grouped gemm: cannot allocate %lld bytes for the GEMV rows",
                    (long long)xbytes);
      for (int64_t g = 0; g < G; g++) {
        const int64_t r0 = group_begin(pb, groups[g]), m = group_rows(pb, groups[g]);
        for (int64_t i = 0; i < m; i++) {
          const Tin *src = (const Tin *)pb.x + (r0 + i) * k;
          float *dst = xf + (xrow[g] + i) * ldx;
          for (int64_t p = 0; p < k; p++) dst[p] = to_f32(src[p]);
          for (int64_t p = k; p < ldx; p++) dst[p] = 0.0f;
        }
      }
    }
    int threads = max_threads;
    if (threads > total) threads = (int)total;
    std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(threads)
    {
      float dots[64 * kGemvMaxRows];
      for (int64_t t = next.fetch_add(1); t < total; t = next.fetch_add(1)) {
        const int64_t g = t / blocks, e = groups[g], j0 = (t % blocks) * nb;
        const int64_t jn = n - j0 < nb ? n - j0 : nb, m = group_rows(pb, e);
        const Tin *w = (const Tin *)pb.w + (e * n + j0) * k;
        gemv_kernel<Tin>(v.simd, (int)m)(w, k, (int)jn, xf + xrow[g] * ldx, ldx, dots);
        epilogue(group_begin(pb, e), m, j0, jn, dots);
      }
    }
    free(xf);
    return MOE4J_OK;
  }

  /* Same semantics as the packed path's epilogue: y = s * dot, or y + s * dot, rounded once. */
  void epilogue(int64_t r0, int64_t m, int64_t j0, int64_t jn, const float *dots) const {
    const bool acc = pb.accumulate != 0;
    for (int64_t i = 0; i < m; i++) {
      Tout *o = (Tout *)pb.out + (r0 + i) * pb.n + j0;
      const float s = pb.row_scale != nullptr ? pb.row_scale[r0 + i] : 1.0f;
      if (pb.row_scale == nullptr && !acc) {
        for (int64_t j = 0; j < jn; j++) o[j] = from_f32<Tout>(dots[j * m + i]);
      } else if (!acc) {
        for (int64_t j = 0; j < jn; j++) o[j] = from_f32<Tout>(s * dots[j * m + i]);
      } else {
        for (int64_t j = 0; j < jn; j++) o[j] = from_f32<Tout>(to_f32(o[j]) + s * dots[j * m + i]);
      }
    }
  }
};

int32_t run_problem(const Problem &pb, int32_t in_dtype, int32_t out_dtype) {
  int64_t cols = pb.kind == Kind::kForward ? pb.n : (pb.kind == Kind::kSwiglu ? pb.f : pb.k);
  const int64_t small_m = pb.kind == Kind::kForward ? gemv_max_rows() : 0;
  int32_t status = MOE4J_OK;
  dispatch_float(in_dtype, [&](auto in_tag) {
    dispatch_float(out_dtype, [&](auto out_tag) {
      using Tin = decltype(in_tag);
      using Tout = decltype(out_tag);
      if (small_m > 0) status = GemvRunner<Tin, Tout>{pb, variant(), small_m}.run();
      if (status != MOE4J_OK) return;
      Runner<Tin, Tout> r{pb, variant(), cols, 0, 0, 0, small_m};
      status = r.run();
    });
  });
  return status;
}

/* rows * cols, or 0 when it would overflow (product_fits reports that case). */
int64_t count_of(int64_t a, int64_t b) {
  int64_t n = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &n)) return 0;
  return n;
}

/* Checks shared by all four entry points; `n` is the output width of the weight rows. */
void check_common(ArgCheck &chk, int32_t in_dtype, int32_t out_dtype, const int64_t *offsets,
                  int64_t num_groups, int64_t total_rows, int64_t n, int64_t k) {
  chk.float_dtype("in_dtype", in_dtype).float_dtype("out_dtype", out_dtype)
      .non_negative("total_rows", total_rows).non_negative("n", n).non_negative("k", k)
      .require(num_groups >= 1 && num_groups <= ((int64_t)1 << 20),
               "num_groups must be in [1, 1048576], got %lld", (long long)num_groups)
      .require(offsets != nullptr || num_groups == 1,
               "offsets is NULL (one dense group) but num_groups is %lld, expected 1",
               (long long)num_groups)
      .product_fits("total_rows * k", total_rows, k).product_fits("total_rows * n", total_rows, n)
      .product_fits("num_groups * n", num_groups, n)
      .product_fits("num_groups * n * k", count_of(num_groups, n), k);
  if (chk.failed() || offsets == nullptr) return;
  chk.require(offsets[0] == 0, "offsets[0] must be 0, got %lld", (long long)offsets[0]);
  for (int64_t e = 0; e < num_groups && !chk.failed(); e++)
    chk.require(offsets[e + 1] >= offsets[e],
                "offsets must be non-decreasing: offsets[%lld] = %lld < offsets[%lld] = %lld",
                (long long)(e + 1), (long long)offsets[e + 1], (long long)e, (long long)offsets[e]);
  chk.require(offsets[num_groups] == total_rows,
              "offsets[%lld] = %lld must equal total_rows = %lld", (long long)num_groups,
              (long long)offsets[num_groups], (long long)total_rows);
}

int64_t bytes_of(int64_t count, int32_t dtype) { return count * dtype_size(dtype); }

}  // namespace

extern "C" {

int32_t moe4j_cpu_grouped_gemm_forward(int32_t in_dtype, const void *x, const void *w,
                                       int32_t out_dtype, void *y, const int64_t *offsets,
                                       int64_t num_groups, int64_t total_rows, int64_t n,
                                       int64_t k, const float *row_scale, int32_t accumulate) {
  ArgCheck chk("moe4j_cpu_grouped_gemm_forward");
  check_common(chk, in_dtype, out_dtype, offsets, num_groups, total_rows, n, k);
  if (chk.failed()) return chk.status();
  const int64_t nx = total_rows * k, nw = num_groups * n * k, ny = total_rows * n;
  chk.buffer("x", x, nx, in_dtype).buffer("w", w, nw, in_dtype).buffer("y", y, ny, out_dtype)
      .buffer("row_scale", row_scale, row_scale ? total_rows : 0, MOE4J_DTYPE_F32)
      .require(!ranges_overlap(y, bytes_of(ny, out_dtype), x, bytes_of(nx, in_dtype)), "y and x overlap")
      .require(!ranges_overlap(y, bytes_of(ny, out_dtype), w, bytes_of(nw, in_dtype)), "y and w overlap")
      .require(!ranges_overlap(y, bytes_of(ny, out_dtype), row_scale, total_rows * 4),
               "y and row_scale overlap");
  if (chk.failed()) return chk.status();
  Problem pb{Kind::kForward, x, w, nullptr, y, nullptr, row_scale, offsets, num_groups,
             total_rows, n, k, 0, accumulate};
  return run_problem(pb, in_dtype, out_dtype);
}

int32_t moe4j_cpu_grouped_gemm_dgrad(int32_t in_dtype, const void *dy, const void *w,
                                     int32_t out_dtype, void *dx, const int64_t *offsets,
                                     int64_t num_groups, int64_t total_rows, int64_t n,
                                     int64_t k, int32_t accumulate) {
  ArgCheck chk("moe4j_cpu_grouped_gemm_dgrad");
  check_common(chk, in_dtype, out_dtype, offsets, num_groups, total_rows, n, k);
  if (chk.failed()) return chk.status();
  const int64_t ndy = total_rows * n, nw = num_groups * n * k, ndx = total_rows * k;
  chk.buffer("dy", dy, ndy, in_dtype).buffer("w", w, nw, in_dtype).buffer("dx", dx, ndx, out_dtype)
      .require(!ranges_overlap(dx, bytes_of(ndx, out_dtype), dy, bytes_of(ndy, in_dtype)), "dx and dy overlap")
      .require(!ranges_overlap(dx, bytes_of(ndx, out_dtype), w, bytes_of(nw, in_dtype)), "dx and w overlap");
  if (chk.failed()) return chk.status();
  Problem pb{Kind::kDgrad, nullptr, w, dy, dx, nullptr, nullptr, offsets, num_groups,
             total_rows, n, k, 0, accumulate};
  return run_problem(pb, in_dtype, out_dtype);
}

int32_t moe4j_cpu_grouped_gemm_wgrad(int32_t in_dtype, const void *dy, const void *x,
                                     int32_t out_dtype, void *dw, const int64_t *offsets,
                                     int64_t num_groups, int64_t total_rows, int64_t n,
                                     int64_t k, int32_t accumulate) {
  ArgCheck chk("moe4j_cpu_grouped_gemm_wgrad");
  check_common(chk, in_dtype, out_dtype, offsets, num_groups, total_rows, n, k);
  if (chk.failed()) return chk.status();
  const int64_t ndy = total_rows * n, nx = total_rows * k, ndw = num_groups * n * k;
  chk.buffer("dy", dy, ndy, in_dtype).buffer("x", x, nx, in_dtype).buffer("dw", dw, ndw, out_dtype)
      .require(!ranges_overlap(dw, bytes_of(ndw, out_dtype), dy, bytes_of(ndy, in_dtype)), "dw and dy overlap")
      .require(!ranges_overlap(dw, bytes_of(ndw, out_dtype), x, bytes_of(nx, in_dtype)), "dw and x overlap");
  if (chk.failed()) return chk.status();
  Problem pb{Kind::kWgrad, x, nullptr, dy, dw, nullptr, nullptr, offsets, num_groups,
             total_rows, n, k, 0, accumulate};
  return run_problem(pb, in_dtype, out_dtype);
}

int32_t moe4j_cpu_grouped_gemm_swiglu_forward(int32_t in_dtype, const void *x, const void *w13,
                                              int32_t out_dtype, void *h, void *gate_up,
                                              const int64_t *offsets, int64_t num_groups,
                                              int64_t total_rows, int64_t f, int64_t k) {
  ArgCheck chk("moe4j_cpu_grouped_gemm_swiglu_forward");
  chk.non_negative("f", f).require(f <= INT64_MAX / 2, "f = %lld overflows 2 * f", (long long)f);
  if (chk.failed()) return chk.status();
  check_common(chk, in_dtype, out_dtype, offsets, num_groups, total_rows, 2 * f, k);
  if (chk.failed()) return chk.status();
  const int64_t nx = total_rows * k, nw = num_groups * 2 * f * k, nh = total_rows * f;
  const int64_t ngu = gate_up ? total_rows * 2 * f : 0;
  chk.buffer("x", x, nx, in_dtype).buffer("w13", w13, nw, in_dtype).buffer("h", h, nh, out_dtype)
      .buffer("gate_up", gate_up, ngu, out_dtype)
      .require(!ranges_overlap(h, bytes_of(nh, out_dtype), x, bytes_of(nx, in_dtype)), "h and x overlap")
      .require(!ranges_overlap(h, bytes_of(nh, out_dtype), w13, bytes_of(nw, in_dtype)), "h and w13 overlap")
      .require(!ranges_overlap(gate_up, bytes_of(ngu, out_dtype), x, bytes_of(nx, in_dtype)),
               "gate_up and x overlap")
      .require(!ranges_overlap(gate_up, bytes_of(ngu, out_dtype), w13, bytes_of(nw, in_dtype)),
               "gate_up and w13 overlap")
      .require(!ranges_overlap(gate_up, bytes_of(ngu, out_dtype), h, bytes_of(nh, out_dtype)),
               "gate_up and h overlap");
  if (chk.failed()) return chk.status();
  Problem pb{Kind::kSwiglu, x, w13, nullptr, h, gate_up, nullptr, offsets, num_groups,
             total_rows, 2 * f, k, f, 0};
  return run_problem(pb, in_dtype, out_dtype);
}

}  // extern "C"
