/*
 * CPU twin of flash attention (FlashAttention-2), following the tiling of
 * kernels/common/attention_tiles.h that the CUDA kernels (kernels/flash_attention.cu) share.
 *
 * Batches: a uniform batch (cu_seqlens == NULL) and a packed varlen batch are the same thing here
 * — a list of sequences (attn_sequence: first token, length, lse row), each tiled on its own with
 * positions, masks and the window relative to its start. The tiles of all sequences are listed
 * once (TileList: sequence, tile) and the work items below run over that list.
 *
 * Forward: one work item per (sequence tile of Br query rows, query head), OpenMP over the items.
 * The Q tile is widened and transposed once (Q^T [D][Br]); the key tiles from attn_key_tiles
 * (those entirely above the causal diagonal or outside the window are skipped) are streamed past
 * it in ascending order, K and V read in place for f32 (widened once per tile for bf16):
 * S^T = K Q^T for the tile (keys x query rows, f32), then for the 64 rows at once (vectorized over
 * the rows) the mask — each row's allowed keys in a tile are one range [lo, hi) — and the online
 * softmax: raise the running max to the tile max, rescale the running sum and the O accumulator
 * once, p = exp(s - max) per key, tile sum in key order; then O += P V. At the end O /= sum and
 * lse = max + log(sum); a row with no key gets O = 0, lse = -inf. Memory: per-thread tile buffers
 * only (2 Br D + 2 D Bc + Br Bc floats), never S x S.
 * The tile kernels (score tile, softmax step with its vectorized exp, P V) are in
 * cpu_attention_kernels.h: AVX-512 register-blocked intrinsics or a portable fmaf variant, chosen
 * per call, bitwise equal (every element one fused multiply-add chain in a fixed order; the exp is
 * the same IEEE operation sequence in both, ~1 ulp vs exact, results < 2^-126 flushed to 0). The
 * CUDA twin uses its own exp; the two agree to f32 rounding, not bitwise.
 *
 * Backward (FA2, deterministic mode): Di = rowsum(dout * out) per query row (f32, laid out like
 * lse, in the caller's workspace). Pass 1, one item per (key tile, kv head): for each query head
 * of the GQA group and each query tile from attn_query_tiles (ascending), recompute
 * P = exp(S - lse), dP = dO V^T, dS = P * (dP - Di), and accumulate dV += P^T dO, dK += dS^T Q
 * (dK scaled once at the end). Pass 2, one item per (query tile, query head): recompute P and dS
 * for the key tiles in order and accumulate dQ = scale * dS K. Every accumulator is f32 and owned by one item,
 * summed in a fixed order, so results are bitwise identical for any thread count and schedule;
 * no atomics. Outputs are rounded to the storage type once.
 *
 * The backward's tile products use the same kernels (S = Q K^T and dP = dO V^T as score tiles;
 * dV += P^T dO, dK += dS^T Q and dQ += dS K as P V products, dS transposed for the last), so it
 * is bitwise equal across the variants too, and P = exp(S - lse) uses the forward's vectorized exp.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attention_args.h"
#include "attention_tiles.h"
#include "cpu_attention_kernels.h"
#include "cpu_common.h"
#include "softmax_math.h"

using namespace moe4j;

namespace {

constexpr int Br = kAttnBlockQ;
constexpr int Bc = kAttnBlockK;
static_assert(Bc == attn::kCols, "the tile kernels work on rows of kCols keys");

struct Shape {
  int64_t seq; /* the ABI's seq: S (uniform) or T (varlen); also the lse row stride of a head */
  int64_t hq, hkv, d;
  bool causal;
  int64_t window; /* as given; each sequence normalizes it to its length (Seq::w) */
  float scale;
  bool wide; /* forward tile kernels: AVX-512 (true) or portable (attn_wide()) */
  int64_t group() const { return hq / hkv; }
};

/* One sequence: rows start .. start + len - 1 of the [tokens, H, D] views; lse row of (head h,
 * position i) is lse_base + h * seq + i; w = attn_window(window, len). */
struct Seq {
  int64_t start, len, lse_base, w;
  int64_t lse_row(const Shape &sh, int64_t h) const { return lse_base + h * sh.seq; }
};

/* The tiles of every sequence (tiles of `block` positions), in sequence order. */
struct TileList {
  struct Tile {
    int64_t seq, tile;
  };
  Tile *tiles = nullptr;
  int64_t count = 0;
  bool build(const Seq *seqs, int64_t nseq, int block) {
    int64_t n = 0;
    for (int64_t b = 0; b < nseq; b++) n += attn_tile_count(seqs[b].len, block);
    tiles = (Tile *)malloc((size_t)(n > 0 ? n : 1) * sizeof(Tile));
    if (tiles == nullptr) return false;
    for (int64_t b = 0; b < nseq; b++)
      for (int64_t t = 0; t < attn_tile_count(seqs[b].len, block); t++) tiles[count++] = Tile{b, t};
    return true;
  }
  ~TileList() { free(tiles); }
};

/* Positions [t0, t0 + n) of sequence sq, head h of a [tokens, H, D] tensor, widened into
 * dst[n][D]. */
template <typename T>
void load_rows(const T *src, float *dst, const Seq &sq, int64_t t0, int n, int64_t h,
               const Shape &sh, int64_t heads) {
  for (int r = 0; r < n; r++) {
    const T *row = src + ((sq.start + t0 + r) * heads + h) * sh.d;
    for (int64_t d = 0; d < sh.d; d++) dst[r * sh.d + d] = to_f32(row[d]);
  }
}

/* The same rows transposed into dst[D][Bc], columns n..Bc-1 zero. */
template <typename T>
void load_rows_t(const T *src, float *dst, const Seq &sq, int64_t t0, int n, int64_t h,
                 const Shape &sh, int64_t heads) {
  for (int64_t d = 0; d < sh.d; d++)
    for (int c = n; c < Bc; c++) dst[d * Bc + c] = 0.0f;
  for (int c = 0; c < n; c++) {
    const T *row = src + ((sq.start + t0 + c) * heads + h) * sh.d;
    for (int64_t d = 0; d < sh.d; d++) dst[d * Bc + c] = to_f32(row[d]);
  }
}

/* src[n][D] (f32) times `mul`, rounded into positions [t0, t0 + n) of sequence sq, head h. */
template <typename T>
void store_rows(const float *src, T *dst, const Seq &sq, int64_t t0, int n, int64_t h,
                const Shape &sh, int64_t heads, float mul) {
  for (int r = 0; r < n; r++) {
    T *row = dst + ((sq.start + t0 + r) * heads + h) * sh.d;
    for (int64_t d = 0; d < sh.d; d++) row[d] = from_f32<T>(src[r * sh.d + d] * mul);
  }
}

int rows_of(int64_t t0, int64_t seq, int block) {
  return (int)(seq - t0 < block ? seq - t0 : block);
}

/* Per-thread scratch: `floats` per thread, 64-byte aligned. */
struct Scratch {
  float *base = nullptr;
  int64_t per_thread = 0;
  bool alloc(int64_t floats) {
    per_thread = (floats + 15) / 16 * 16;
    const int64_t threads = omp_get_max_threads();
    base = (float *)aligned_alloc(64, (size_t)(per_thread * threads) * sizeof(float));
    return base != nullptr;
  }
  float *mine() const { return base + per_thread * omp_get_thread_num(); }
  ~Scratch() { free(base); }
};

/* ---- forward ---- */

MOE4J_SIMD_CLONES void scale_row(float *__restrict__ o, int64_t D, float alpha) {
  for (int64_t d = 0; d < D; d++) o[d] *= alpha;
}

/* Rows [t0, t0 + n) of sequence sq, head h as f32 rows: the tensor itself for f32 (row stride
 * heads * D, no copy), else widened into buf (stride D). Returns the rows, *ld their stride. */
template <typename T>
const float *f32_rows(const T *src, float *buf, const Seq &sq, int64_t t0, int n, int64_t h,
                      const Shape &sh, int64_t heads, int64_t *ld) {
  if constexpr (sizeof(T) == sizeof(float)) {
    (void)buf;
    (void)n;
    *ld = heads * sh.d;
    return (const float *)src + ((sq.start + t0) * heads + h) * sh.d;
  } else {
    load_rows(src, buf, sq, t0, n, h, sh, heads);
    *ld = sh.d;
    return buf;
  }
}

/* The keys of the tile at k0 (nc of them; 0 for a padding row) that query i may attend: one range
 * [lo, hi) of tile columns (attn_allowed, element by element, gives the same set); empty: 0, 0. */
void tile_key_range(int64_t i, int64_t k0, int nc, const Shape &sh, int64_t w, int *lo, int *hi) {
  int64_t a = 0, b = nc;
  if (sh.causal && i + 1 - k0 < b) b = i + 1 - k0;
  if (w > 0 && i - w + 1 - k0 > a) a = i - w + 1 - k0;
  *lo = (int)(a < b ? a : 0);
  *hi = (int)(a < b ? b : 0);
}

template <typename T>
void forward_item(const T *q, const T *k, const T *v, T *out, float *lse, const Shape &sh,
                  const Seq &sq, int64_t h, int64_t qt, float *buf) {
  const int64_t D = sh.d, q0 = qt * Br, kvh = h / sh.group();
  const int nr = rows_of(q0, sq.len, Br);
  float *qt_f = buf, *o = qt_f + D * Br, *kf = o + Br * D, *vf = kf + Bc * D, *st = vf + Bc * D;
  float *lse_h = lse + sq.lse_row(sh, h);
  float mx[Br], sum[Br], alpha[Br];
  int lo[Br], hi[Br];
  load_rows_t(q, qt_f, sq, q0, nr, h, sh, sh.hq); /* Q^T [D][Br], rows >= nr zero */
  for (int64_t i = 0; i < (int64_t)nr * D; i++) o[i] = 0.0f;
  for (int r = 0; r < Br; r++) {
    mx[r] = -INFINITY;
    sum[r] = 0.0f;
  }
  const AttnRange tiles = attn_key_tiles(qt, sq.len, sh.causal, sq.w);
  for (int64_t ktile = tiles.begin; ktile < tiles.end; ktile++) {
    const int64_t k0 = ktile * Bc;
    const int nc = rows_of(k0, sq.len, Bc);
    int64_t ldk = 0, ldv = 0;
    const float *kr = f32_rows(k, kf, sq, k0, nc, kvh, sh, sh.hkv, &ldk);
    const float *vr = f32_rows(v, vf, sq, k0, nc, kvh, sh, sh.hkv, &ldv);
    attn::scores(sh.wide, kr, ldk, qt_f, st, nc, D); /* S^T [nc][Br] */
    for (int r = 0; r < Br; r++) tile_key_range(q0 + r, k0, r < nr ? nc : 0, sh, sq.w, &lo[r], &hi[r]);
    attn::softmax_tile(st, nc, lo, hi, sh.scale, mx, sum, alpha);
    for (int r = 0; r < nr; r++)
      if (alpha[r] != 1.0f) scale_row(o + r * D, D, alpha[r]);
    /* P V runs over blocks of rows (attn::pv_block_rows) with the union of their key ranges
     * (p is an exact 0 outside a row's own range); both variants use the same ranges, so they
     * agree bitwise. */
    for (int r = 0, n = 0; r < nr; r += n) {
      n = attn::pv_block_rows(r, nr);
      int a = Bc, b = 0;
      for (int j = r; j < r + n; j++)
        if (hi[j] > lo[j]) {
          a = lo[j] < a ? lo[j] : a;
          b = hi[j] > b ? hi[j] : b;
        }
      for (int j = r; j < r + n; j++) {
        lo[j] = a < b ? a : 0;
        hi[j] = a < b ? b : 0;
      }
    }
    attn::pv(sh.wide, st, vr, ldv, o, nr, D, lo, hi);
  }
  for (int r = 0; r < nr; r++) {
    float *orow = o + r * D;
    if (sum[r] == 0.0f) { /* no key: out = 0, lse = -inf */
      for (int64_t d = 0; d < D; d++) orow[d] = 0.0f;
      lse_h[q0 + r] = -INFINITY;
    } else {
      for (int64_t d = 0; d < D; d++) orow[d] = orow[d] / sum[r];
      lse_h[q0 + r] = softmax_lse(SoftmaxStats{mx[r], sum[r]});
    }
  }
  store_rows(o, out, sq, q0, nr, h, sh, sh.hq, 1.0f);
}

int64_t forward_scratch_floats(int64_t D) { return 2 * Br * D + 2 * D * Bc + Br * Bc; }

template <typename T>
void forward(const T *q, const T *k, const T *v, T *out, float *lse, const Shape &sh,
             const Seq *seqs, const TileList &qtiles, const Scratch &scratch) {
  const int64_t items = qtiles.count * sh.hq;
#pragma omp parallel for schedule(dynamic, 1) if (items > 1)
  for (int64_t item = 0; item < items; item++) {
    const TileList::Tile &t = qtiles.tiles[item / sh.hq];
    forward_item(q, k, v, out, lse, sh, seqs[t.seq], item % sh.hq, t.tile, scratch.mine());
  }
}

/* ---- backward ---- */

/* Recomputes, for one (query tile, key tile) pair, P = exp(scale * Q K^T - lse) (masked: 0) in
 * p and dS = P * (dO V^T - Di) in ds. s and ds hold Q K^T and dO V^T on entry. */
void tile_grad_scores(float *s, float *ds, const float *lse_rows, const float *di_rows,
                      int64_t q0, int nr, int64_t k0, int nc, const Shape &sh, int64_t w) {
  for (int r = 0; r < nr; r++) {
    int lo, hi;
    tile_key_range(q0 + r, k0, nc, sh, w, &lo, &hi);
    attn::grad_scores_row(s + r * Bc, ds + r * Bc, lo, hi, sh.scale, lse_rows[r], di_rows[r]);
  }
}

/* Di = Σ_d dout * out for every query row, laid out like lse; one item per query tile. */
template <typename T>
void row_dots(const T *out, const T *dout, float *di, const Shape &sh, const Seq *seqs,
              const TileList &qtiles) {
  const int64_t items = qtiles.count;
#pragma omp parallel for schedule(static) if (items > 1 && items * Br * sh.hq * sh.d >= kChunk)
  for (int64_t item = 0; item < items; item++) {
    const Seq &sq = seqs[qtiles.tiles[item].seq];
    const int64_t i0 = qtiles.tiles[item].tile * Br;
    const int nr = rows_of(i0, sq.len, Br);
    for (int64_t i = i0; i < i0 + nr; i++) {
      const int64_t t = sq.start + i;
      for (int64_t h = 0; h < sh.hq; h++) {
        const T *o = out + (t * sh.hq + h) * sh.d, *g = dout + (t * sh.hq + h) * sh.d;
        float acc = 0.0f;
        /* one fma chain in d order, like dP = dO V^T in the score kernel: with a single key
         * (out == v) dP - Di is then exactly 0 */
        for (int64_t d = 0; d < sh.d; d++) acc = fmaf(to_f32(g[d]), to_f32(o[d]), acc);
        di[sq.lse_row(sh, h) + i] = acc;
      }
    }
  }
}

int64_t backward_scratch_floats(int64_t D) { return 3 * Br * D + 5 * Bc * D + 2 * Br * Bc; }

/* Pass 1: dK, dV of one key tile of kv head kvh. */
template <typename T>
void backward_kv_item(const T *q, const T *k, const T *v, const T *dout, const float *lse,
                      const float *di, T *dk, T *dv, const Shape &sh, const Seq &sq, int64_t kvh,
                      int64_t ktile, float *buf) {
  const int64_t D = sh.d, k0 = ktile * Bc;
  const int nc = rows_of(k0, sq.len, Bc);
  float *qf = buf, *gf = qf + Br * D, *kt = gf + Br * D, *vt = kt + D * Bc, *dkf = vt + D * Bc,
        *dvf = dkf + Bc * D, *s = dvf + Bc * D, *ds = s + Br * Bc;
  int zeros[Bc], all_q[Bc]; /* P V key ranges: every query row of the tile */
  for (int c = 0; c < Bc; c++) zeros[c] = 0;
  load_rows_t(k, kt, sq, k0, nc, kvh, sh, sh.hkv);
  load_rows_t(v, vt, sq, k0, nc, kvh, sh, sh.hkv);
  for (int64_t i = 0; i < (int64_t)nc * D; i++) dkf[i] = dvf[i] = 0.0f;
  const AttnRange tiles = attn_query_tiles(ktile, sq.len, sh.causal, sq.w);
  for (int64_t g = 0; g < sh.group(); g++) {
    const int64_t h = kvh * sh.group() + g;
    const float *lse_h = lse + sq.lse_row(sh, h), *di_h = di + sq.lse_row(sh, h);
    for (int64_t qt = tiles.begin; qt < tiles.end; qt++) {
      const int64_t q0 = qt * Br;
      const int nr = rows_of(q0, sq.len, Br);
      for (int c = 0; c < Bc; c++) all_q[c] = nr;
      load_rows(q, qf, sq, q0, nr, h, sh, sh.hq);
      load_rows(dout, gf, sq, q0, nr, h, sh, sh.hq);
      attn::scores(sh.wide, qf, D, kt, s, nr, D);
      attn::scores(sh.wide, gf, D, vt, ds, nr, D);
      tile_grad_scores(s, ds, lse_h + q0, di_h + q0, q0, nr, k0, nc, sh, sq.w);
      /* dV += P^T dO, dK += dS^T Q: the P V kernel with the keys as output rows */
      attn::pv(sh.wide, s, gf, D, dvf, nc, D, zeros, all_q);
      attn::pv(sh.wide, ds, qf, D, dkf, nc, D, zeros, all_q);
    }
  }
  store_rows(dkf, dk, sq, k0, nc, kvh, sh, sh.hkv, sh.scale);
  store_rows(dvf, dv, sq, k0, nc, kvh, sh, sh.hkv, 1.0f);
}

/* Pass 2: dQ of one query tile of query head h. */
template <typename T>
void backward_q_item(const T *q, const T *k, const T *v, const T *dout, const float *lse,
                     const float *di, T *dq, const Shape &sh, const Seq &sq, int64_t h,
                     int64_t qt, float *buf) {
  const int64_t D = sh.d, q0 = qt * Br, kvh = h / sh.group();
  const int nr = rows_of(q0, sq.len, Br);
  float *qf = buf, *gf = qf + Br * D, *dqf = gf + Br * D, *kt = dqf + Br * D, *vt = kt + D * Bc,
        *kf = vt + D * Bc, *s = kf + Bc * D, *ds = s + Br * Bc;
  const float *lse_h = lse + sq.lse_row(sh, h), *di_h = di + sq.lse_row(sh, h);
  int zeros[Br], all_k[Br];
  for (int r = 0; r < Br; r++) zeros[r] = 0;
  load_rows(q, qf, sq, q0, nr, h, sh, sh.hq);
  load_rows(dout, gf, sq, q0, nr, h, sh, sh.hq);
  for (int64_t i = 0; i < (int64_t)nr * D; i++) dqf[i] = 0.0f;
  const AttnRange tiles = attn_key_tiles(qt, sq.len, sh.causal, sq.w);
  for (int64_t ktile = tiles.begin; ktile < tiles.end; ktile++) {
    const int64_t k0 = ktile * Bc;
    const int nc = rows_of(k0, sq.len, Bc);
    load_rows_t(k, kt, sq, k0, nc, kvh, sh, sh.hkv);
    load_rows_t(v, vt, sq, k0, nc, kvh, sh, sh.hkv);
    load_rows(k, kf, sq, k0, nc, kvh, sh, sh.hkv);
    attn::scores(sh.wide, qf, D, kt, s, nr, D);
    attn::scores(sh.wide, gf, D, vt, ds, nr, D);
    tile_grad_scores(s, ds, lse_h + q0, di_h + q0, q0, nr, k0, nc, sh, sq.w);
    for (int c = 0; c < nc; c++) /* dS^T into s (P is not needed any more) for dQ += dS K */
      for (int r = 0; r < nr; r++) s[c * Bc + r] = ds[r * Bc + c];
    for (int r = 0; r < nr; r++) all_k[r] = nc;
    attn::pv(sh.wide, s, kf, D, dqf, nr, D, zeros, all_k);
  }
  store_rows(dqf, dq, sq, q0, nr, h, sh, sh.hq, sh.scale);
}

template <typename T>
void backward(const T *q, const T *k, const T *v, const T *out, const T *dout, const float *lse,
              T *dq, T *dk, T *dv, float *di, const Shape &sh, const Seq *seqs,
              const TileList &qtiles, const TileList &ktiles, const Scratch &scratch) {
  row_dots(out, dout, di, sh, seqs, qtiles);
  const int64_t kv_items = ktiles.count * sh.hkv;
#pragma omp parallel for schedule(dynamic, 1) if (kv_items > 1)
  for (int64_t item = 0; item < kv_items; item++) {
    const TileList::Tile &t = ktiles.tiles[item / sh.hkv];
    backward_kv_item(q, k, v, dout, lse, di, dk, dv, sh, seqs[t.seq], item % sh.hkv, t.tile,
                     scratch.mine());
  }
  const int64_t q_items = qtiles.count * sh.hq;
#pragma omp parallel for schedule(dynamic, 1) if (q_items > 1)
  for (int64_t item = 0; item < q_items; item++) {
    const TileList::Tile &t = qtiles.tiles[item / sh.hq];
    backward_q_item(q, k, v, dout, lse, di, dq, sh, seqs[t.seq], item % sh.hq, t.tile,
                    scratch.mine());
  }
}

/* The sequences of the batch (see attention_tiles.h) and their tiles. */
struct Plan {
  Shape sh;
  Seq *seqs = nullptr;
  int64_t nseq = 0;
  TileList qtiles, ktiles;
  bool build(const int32_t *cu_seqlens, int64_t batch) {
    seqs = (Seq *)malloc((size_t)(batch > 0 ? batch : 1) * sizeof(Seq));
    if (seqs == nullptr) return false;
    nseq = batch;
    for (int64_t b = 0; b < batch; b++) {
      const AttnSeq a = attn_sequence(cu_seqlens, b, sh.seq, sh.hq);
      seqs[b] = Seq{a.start, a.len, a.lse_base, attn_window(sh.window, a.len)};
    }
    return qtiles.build(seqs, nseq, Br) && ktiles.build(seqs, nseq, Bc);
  }
  ~Plan() { free(seqs); }
};

}  // namespace

extern "C" {

int32_t moe4j_cpu_attention_forward(int32_t dtype, const void *q, const void *k, const void *v,
                                    void *out, float *lse, const int32_t *cu_seqlens,
                                    int64_t batch, int64_t seq, int64_t q_heads, int64_t kv_heads,
                                    int64_t head_dim, int32_t causal, int64_t window,
                                    float scale) {
  const char *fn = "moe4j_cpu_attention_forward";
  ArgCheck chk(fn);
  check_attention_forward(chk, dtype, q, k, v, out, lse, cu_seqlens, batch, seq, q_heads,
                          kv_heads, head_dim, causal, window, scale);
  check_cu_seqlens_values(chk, cu_seqlens, batch, seq);
  if (chk.failed()) return chk.status();
  if (batch * seq == 0) return MOE4J_OK; /* varlen: batch 0 forces T = 0 */
  Plan plan;
  plan.sh = Shape{seq, q_heads, kv_heads, head_dim, causal != 0,
                  window, scale, attn::attn_wide()};
  Scratch scratch;
  if (!plan.build(cu_seqlens, batch) || !scratch.alloc(forward_scratch_floats(head_dim)))
    return fail(MOE4J_ERR_OUT_OF_MEMORY, "%s: cannot allocate the tile list and tile buffers", fn);
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    forward((const T *)q, (const T *)k, (const T *)v, (T *)out, lse, plan.sh, plan.seqs,
            plan.qtiles, scratch);
  });
  return MOE4J_OK;
}

int32_t moe4j_cpu_attention_backward_workspace_bytes(int64_t batch, int64_t seq, int64_t q_heads,
                                                     int64_t head_dim, int64_t *out_bytes) {
  ArgCheck chk("moe4j_cpu_attention_backward_workspace_bytes");
  check_attention_backward_workspace_bytes(chk, batch, seq, q_heads, head_dim, out_bytes);
  if (chk.failed()) return chk.status();
  *out_bytes = attention_backward_workspace_bytes(batch, seq, q_heads);
  return MOE4J_OK;
}

int32_t moe4j_cpu_attention_backward(int32_t dtype, const void *q, const void *k, const void *v,
                                     const void *out, const void *dout, const float *lse,
                                     void *dq, void *dk, void *dv, const int32_t *cu_seqlens,
                                     int64_t batch, int64_t seq, int64_t q_heads,
                                     int64_t kv_heads, int64_t head_dim, int32_t causal,
                                     int64_t window, float scale, void *workspace,
                                     int64_t workspace_bytes) {
  const char *fn = "moe4j_cpu_attention_backward";
  ArgCheck chk(fn);
  check_attention_backward(chk, dtype, q, k, v, out, dout, lse, dq, dk, dv, cu_seqlens, batch,
                           seq, q_heads, kv_heads, head_dim, causal, window, scale, workspace,
                           workspace_bytes);
  check_cu_seqlens_values(chk, cu_seqlens, batch, seq);
  if (chk.failed()) return chk.status();
  if (batch * seq == 0) return MOE4J_OK;
  Plan plan;
  plan.sh = Shape{seq, q_heads, kv_heads, head_dim, causal != 0,
                  window, scale, attn::attn_wide()};
  Scratch scratch;
  if (!plan.build(cu_seqlens, batch) || !scratch.alloc(backward_scratch_floats(head_dim)))
    return fail(MOE4J_ERR_OUT_OF_MEMORY, "%s: cannot allocate the tile list and tile buffers", fn);
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    backward((const T *)q, (const T *)k, (const T *)v, (const T *)out, (const T *)dout, lse,
             (T *)dq, (T *)dk, (T *)dv, (float *)workspace, plan.sh, plan.seqs, plan.qtiles,
             plan.ktiles, scratch);
  });
  return MOE4J_OK;
}

}  // extern "C"
