/* The tile index math of common/attention_tiles.h that the fast CUDA flash-attention kernels
 * (kernels/flash_attention.cu) rely on, checked by brute force against attn_allowed:
 *  - attn_key_tiles / attn_query_tiles visit exactly the tiles that hold an allowed (query, key)
 *    pair: no allowed pair is skipped (correctness) and no visited tile is wholly masked (the
 *    causal / window tile skipping actually skips);
 *  - attn_tile_unmasked is true exactly when every pair of the rectangle is allowed (the kernels
 *    drop the element mask on such tiles, so a false "true" would let masked keys in);
 *  - attn_sequence clamps arbitrary (even invalid) cu_seqlens into [0, T] with a non-negative
 *    length, the property the kernels need to stay inside the buffers;
 *  - the varlen tile slots (attn_varlen_slot) give every (sequence, tile) of a packed batch exactly
 *    one slot, with at most one spare slot per sequence;
 *  - the kernels' swizzled shared-memory tile layout (attn_smem_swizzle) is a bijection within each
 *    row, the per-lane decomposition of the ldmatrix addresses (attn_smem_lane_part) reproduces it,
 *    and every 8-lane phase of the ldmatrix / cp.async accesses hits 8 distinct bank groups.
 * Sequence lengths 1..200 (1, tile multiples and remainders), causal and not, windows 0, 1, 5,
 * 63, 64, 65, 130 and >= seq.
 */
#include "attention_tiles.h"
#include "check.h"

using namespace moe4j;

namespace {

const int64_t kWindows[] = {0, 1, 5, 63, 64, 65, 130, 1000};

/* Does the rectangle [q0, q1) x [k0, k1) hold an allowed pair? All of them allowed? */
void scan(int64_t q0, int64_t q1, int64_t k0, int64_t k1, bool causal, int64_t w, bool *any,
          bool *all) {
  *any = false;
  *all = true;
  for (int64_t i = q0; i < q1; i++)
    for (int64_t j = k0; j < k1; j++) {
      const bool a = attn_allowed(i, j, causal, w);
      *any = *any || a;
      *all = *all && a;
    }
}

int64_t tile_end(int64_t t, int64_t block, int64_t seq) {
  return (t + 1) * block < seq ? (t + 1) * block : seq;
}

}  // namespace

TEST_CASE(key_and_query_tiles_visit_exactly_the_tiles_with_allowed_pairs) {
  int checked = 0;
  for (int64_t seq = 1; seq <= 200; seq += (seq < 70 ? 1 : 13)) {
    for (int c = 0; c < 2; c++) {
      for (int64_t window : kWindows) {
        const bool causal = c != 0;
        const int64_t w = attn_window(window, seq);
        const int64_t qt_n = attn_tile_count(seq, kAttnBlockQ), kt_n = attn_tile_count(seq, kAttnBlockK);
        for (int64_t qt = 0; qt < qt_n; qt++) {
          const AttnRange r = attn_key_tiles(qt, seq, causal, w);
          CHECK(r.begin >= 0 && r.end <= kt_n);
          for (int64_t kt = 0; kt < kt_n; kt++) {
            bool any, all;
            scan(qt * kAttnBlockQ, tile_end(qt, kAttnBlockQ, seq), kt * kAttnBlockK,
                 tile_end(kt, kAttnBlockK, seq), causal, w, &any, &all);
            const bool visited = kt >= r.begin && kt < r.end;
            if (visited != any) {
              fprintf(stderr, "seq %lld causal %d window %lld q tile %lld k tile %lld: visited %d any %d\n",
                      (long long)seq, c, (long long)window, (long long)qt, (long long)kt, visited, any);
            }
            CHECK(visited == any);
            checked++;
          }
        }
        for (int64_t kt = 0; kt < kt_n; kt++) {
          const AttnRange r = attn_query_tiles(kt, seq, causal, w);
          CHECK(r.begin >= 0 && r.end <= qt_n);
          for (int64_t qt = 0; qt < qt_n; qt++) {
            bool any, all;
            scan(qt * kAttnBlockQ, tile_end(qt, kAttnBlockQ, seq), kt * kAttnBlockK,
                 tile_end(kt, kAttnBlockK, seq), causal, w, &any, &all);
            CHECK((qt >= r.begin && qt < r.end) == any);
          }
        }
      }
    }
  }
  CHECK(checked > 1000);
}

TEST_CASE(tile_unmasked_is_true_exactly_when_every_pair_is_allowed) {
  int unmasked = 0, masked = 0;
  for (int64_t seq : {1, 7, 64, 65, 129, 200}) {
    for (int c = 0; c < 2; c++) {
      for (int64_t window : kWindows) {
        const bool causal = c != 0;
        const int64_t w = attn_window(window, seq);
        /* tiles of the kernels, and odd rectangles (offsets and sizes not tile aligned) */
        for (int64_t q0 = 0; q0 < seq; q0 += 9)
          for (int64_t k0 = 0; k0 < seq; k0 += 11)
            for (int64_t qn : {1, 16, 64})
              for (int64_t kn : {1, 8, 64}) {
                const int64_t q1 = q0 + qn < seq ? q0 + qn : seq, k1 = k0 + kn < seq ? k0 + kn : seq;
                bool any, all;
                scan(q0, q1, k0, k1, causal, w, &any, &all);
                const bool got = attn_tile_unmasked(q0, q1, k0, k1, causal, w);
                if (got != all) {
                  fprintf(stderr, "seq %lld causal %d w %lld [%lld,%lld)x[%lld,%lld): got %d want %d\n",
                          (long long)seq, c, (long long)w, (long long)q0, (long long)q1,
                          (long long)k0, (long long)k1, got, all);
                }
                CHECK(got == all);
                (all ? unmasked : masked)++;
              }
      }
    }
  }
  CHECK(attn_tile_unmasked(5, 5, 0, 64, true, 0)); /* empty rectangle */
  CHECK(unmasked > 100 && masked > 100);           /* both outcomes exercised */
}

TEST_CASE(sequences_are_clamped_into_the_packed_tokens) {
  /* valid: lengths 3, 0, 5 of T = 8 */
  const int32_t ok[] = {0, 3, 3, 8};
  AttnSeq s = attn_sequence(ok, 0, 8, 4);
  CHECK(s.start == 0 && s.len == 3 && s.lse_base == 0);
  s = attn_sequence(ok, 1, 8, 4);
  CHECK(s.start == 3 && s.len == 0);
  s = attn_sequence(ok, 2, 8, 4);
  CHECK(s.start == 3 && s.len == 5 && s.lse_base == 3);
  /* uniform: sequence b starts at b * S, lse rows at b * Hq * S */
  s = attn_sequence(nullptr, 2, 10, 3);
  CHECK(s.start == 20 && s.len == 10 && s.lse_base == 60);
  /* invalid entries: negative, beyond T, reversed */
  const int32_t bad[] = {-5, 20, 4, 2, 9};
  for (int64_t b = 0; b < 4; b++) {
    s = attn_sequence(bad, b, 8, 2);
    CHECK(s.start >= 0 && s.start <= 8 && s.len >= 0 && s.start + s.len <= 8);
  }
  s = attn_sequence(bad, 0, 8, 2);
  CHECK(s.start == 0 && s.len == 8);
  s = attn_sequence(bad, 1, 8, 2); /* 20 -> 8, then 4 < 8: reversed, empty */
  CHECK(s.start == 8 && s.len == 0);
}

TEST_CASE(varlen_slots_hold_every_tile_exactly_once) {
  std::mt19937_64 rng(11);
  const int lens_pool[] = {0, 1, 2, 63, 64, 65, 127, 128, 129, 200, 300};
  for (int trial = 0; trial < 300; trial++) {
    const int batch = 1 + (int)(rng() % 12);
    std::vector<int32_t> cu(1, 0);
    for (int b = 0; b < batch; b++) cu.push_back(cu.back() + lens_pool[rng() % 11]);
    const int64_t T = cu.back(), slots = attn_varlen_slot_count(batch, T);
    std::vector<std::vector<int>> hits(batch);
    for (int b = 0; b < batch; b++) hits[b].assign((size_t)attn_tile_count(cu[b + 1] - cu[b], kAttnBlockQ), 0);
    int64_t spare = 0;
    for (int64_t u = 0; u < slots; u++) {
      const AttnSlot s = attn_varlen_slot(cu.data(), batch, T, u);
      CHECK(s.seq >= 0 && s.seq < batch && s.tile >= 0);
      if (s.seq < 0 || s.seq >= batch) continue;
      const AttnSeq sq = attn_sequence(cu.data(), s.seq, T, 1);
      if (s.tile * kAttnBlockQ < sq.len) hits[s.seq][s.tile]++;
      else spare++;
    }
    bool once = true;
    for (auto &h : hits)
      for (int x : h) once = once && x == 1;
    CHECK(once);
    CHECK(spare <= batch);
  }
  /* invalid offsets: every slot still maps into [-1, batch) with a tile >= 0 */
  const int32_t bad[] = {5, -3, 400, 2, 90};
  for (int64_t u = 0; u < attn_varlen_slot_count(4, 100); u++) {
    const AttnSlot s = attn_varlen_slot(bad, 4, 100, u);
    CHECK(s.seq >= -1 && s.seq < 4 && (s.seq < 0 || s.tile >= 0));
  }
}

/* Lane patterns of the kernels' ldmatrix.x4 calls (lane -> (lr, lc)), see Frags in
 * flash_attention.cu: A fragments, B with the reduction along D, B with it along the rows. */
struct LanePattern {
  const char *name;
  int (*lr)(int lane);
  int (*lc)(int lane);
};
const LanePattern kPatterns[] = {
    {"a", [](int l) { return l & 15; }, [](int l) { return l >> 4; }},
    {"brow", [](int l) { return ((l >> 4) << 3) + (l & 7); }, [](int l) { return (l >> 3) & 1; }},
    {"bcol", [](int l) { return (((l >> 3) & 1) << 3) + (l & 7); }, [](int l) { return l >> 4; }},
};

TEST_CASE(smem_swizzle_is_a_bijection_and_lane_parts_reproduce_it) {
  for (int d : {32, 64, 128}) {
    const int chunks = d / 8;
    std::vector<int> seen(64 * d, 0);
    for (int r = 0; r < 64; r++)
      for (int c = 0; c < chunks; c++) {
        const int off = attn_smem_swizzle(r, c, d);
        CHECK(off >= r * d && off + 8 <= (r + 1) * d && off % 8 == 0); /* stays in its row */
        if (off >= 0 && off < 64 * d) seen[off]++;
      }
    int covered = 0;
    for (int e = 0; e < 64 * d; e += 8) covered += seen[e] == 1;
    CHECK(covered == 64 * chunks); /* every chunk slot used exactly once */
    /* the per-lane decomposition used for the ldmatrix addresses */
    for (int R = 0; R + 16 <= 64; R += 8)
      for (int C = 0; C + 2 <= chunks; C += 2)
        for (int lr = 0; lr < 16; lr++)
          for (int lc = 0; lc < 2; lc++)
            CHECK(attn_smem_swizzle(R + lr, C + lc, d) ==
                  R * d + (C & ~7) * 8 + attn_smem_lane_part(lr, lc, (C & 7) / 2, d));
  }
}

TEST_CASE(smem_accesses_are_free_of_bank_conflicts) {
  /* 16-byte accesses are served 8 lanes per phase; 8 lanes hitting 8 different 16-byte bank groups
   * ((byte offset / 16) % 8, the tile base is 128-byte aligned) is conflict free */
  for (int d : {32, 64, 128}) {
    for (const LanePattern &p : kPatterns)
      for (int R = 0; R + 16 <= 64; R += 16)
        for (int C = 0; C + 2 <= d / 8; C += 2)
          for (int phase = 0; phase < 4; phase++) {
            int mask = 0;
            for (int l = phase * 8; l < phase * 8 + 8; l++)
              mask |= 1 << ((attn_smem_swizzle(R + p.lr(l), C + p.lc(l), d) * 2 / 16) % 8);
            if (mask != 0xff) fprintf(stderr, "%s d %d R %d C %d phase %d\n", p.name, d, R, C, phase);
            CHECK(mask == 0xff);
          }
    /* cp.async stores: thread q copies row q / (d / 8), chunk q % (d / 8) */
    for (int q0 = 0; q0 < 64 * d / 8; q0 += 8) {
      int mask = 0;
      for (int q = q0; q < q0 + 8; q++)
        mask |= 1 << ((attn_smem_swizzle(q / (d / 8), q % (d / 8), d) * 2 / 16) % 8);
      CHECK(mask == 0xff);
    }
  }
}

TEST_MAIN("attention_tiles")
