/*
 * FlashAttention-2 on bf16 tensor cores (sm_80+): the fast path of moe4j_cuda_attention_forward /
 * _backward (kernels/attention.cu picks it for BF16 with head_dim 32, 64 or 128; everything else, and
 * moe4j_cuda_use_reference_kernels(1), runs the *_ref kernels there). Same semantics as the CPU
 * twin native/src/cpu_attention.cpp; masks, windows, tile ranges and sequence spans come from
 * common/attention_tiles.h, the same MOE4J_HD helpers the twin uses. The kernels themselves live in
 * flash_attention_kernels.cuh, so native/tests/test_flash_attention_emulated.cpp can run the same
 * code on the CPU under a warp emulator against the CPU twin. STATUS: compiled (sm_80, sm_90a, no
 * spills) and checked in that emulation; not yet verified on a GPU (kernels/tests/
 * test_flash_attention.cpp, bench/bench_attention.cu are ready for one).
 *
 * Layout (moe4j.h): uniform batch q, out, dout, dq [B, S, Hq, D]; k, v, dk, dv [B, S, Hkv, D];
 * lse [B, Hq, S]. Varlen (cu_seqlens != NULL): the same memory with B = 1, S = T, sequence b =
 * tokens c[b] .. c[b+1]-1 (clamped into [0, T] by attn_sequence, so bad device-side offsets cannot
 * leave the buffers), lse [Hq, T]. Either way sequence b starts at token row `start`, has `len`
 * tokens, and its lse row of (head h, position i) is lse_base + h * seq + i. GQA: query head h
 * reads kv head h / (Hq / Hkv).
 *
 * Tiling: 64-query x 64-key tiles (kAttnBlockQ x kAttnBlockK, the CPU twin's tiles), 4 warps of
 * 128 threads, each warp owning 16 rows of its block's tile (queries in the forward and dQ pass,
 * keys in the dK/dV pass), so every softmax row lives in one quad of one warp and needs no shared
 * memory. Scores come from mma.sync.m16n8k16 (bf16 in, f32 accumulate); operands are staged in
 * shared memory as [64 rows][D] tiles whose 16-byte chunk c of row r is stored at chunk c ^ (r & 7)
 * (attn_smem_swizzle, an XOR swizzle: the 8 row addresses of every ldmatrix phase and the 16-byte cp.async stores hit
 * 8 different bank groups, no conflicts, no padding). ldmatrix (non-transposed) gives A fragments
 * of row-major tiles and B fragments where the reduction runs along D (Q K^T, dO V^T, K Q^T,
 * V dO^T); ldmatrix.trans gives the B fragments where the reduction runs along the rows (P V,
 * dS K, P^T dO, dS^T Q). The score accumulators C of one 16 x 16 block are exactly the registers of
 * a 16 x 16 A fragment, so P and dS go from f32 accumulators to bf16 A fragments in registers
 * (cvt.rn.bf16x2) and never touch shared memory. Streamed tiles are double-buffered with 16-byte
 * cp.async.cg (zero-filled past the sequence end): tile t+1 is in flight while tile t is computed.
 *
 * Forward (flash_fwd_kernel<D>), grid (q tiles, Hq, B), q tiles in reverse order so the longest
 * causal rows start first: the Q tile stays in smem (its A fragments are re-read by ldmatrix per key
 * tile: holding them in registers would cost 32 more per thread at D = 128); for the key tiles
 * attn_key_tiles(q tile) (causal tiles above the diagonal and tiles left of the window are never
 * loaded), S = Q K^T (16 x 64 per warp), element mask only on tiles attn_tile_unmasked rejects and
 * on the last partial key tile; online softmax in log2 units (x = s * scale * log2 e, ex2.approx):
 * raise the row max, rescale O and l once per tile, P = 2^(x - m); O += P V. Epilogue: out = O / l,
 * lse = (m + log2 l) * ln 2 (natural log, as the ABI and the backward expect). The S x S matrix
 * is never materialized: per warp 16 x 64 scores in registers.
 *
 * Backward (FA2): three kernels, all deterministic (no atomics; every output element is summed by
 * one thread in a fixed order; run to run bitwise identical):
 *   flash_bwd_dot_kernel<D>: D_i = rowsum(dO * O) in f32 into the caller's workspace (lse layout).
 *   flash_bwd_dkv_kernel<D>, grid (key tiles, Hkv, B), low (causally heaviest) key tiles first:
 *     K, V tile of 64 keys in smem; for every query
 *     head of the GQA group and every query tile of attn_query_tiles(key tile), streamed (Q, dO,
 *     lse, D_i double-buffered): recompute S^T = K Q^T, P^T = 2^(S^T scale log2 e - lse log2 e)
 *     from the saved lse, dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - D_i), dK += dS^T Q. dK, dV
 *     stay in f32 registers for the whole loop (summed over the group's heads on chip), then
 *     dk = scale dK, dv = dV, rounded once. At D = 128 each query tile is taken as two 32-column
 *     slices, so S^T and dP^T (16 x 32 per warp) fit next to the f32 dK, dV without spilling.
 *   flash_bwd_dq_kernel<D>, grid (q tiles, Hq, B): the mirror over attn_key_tiles(q tile) with K, V
 *     streamed: S, P, dP = dO V^T, dS, dQ += dS K in f32 registers, dq = scale dQ rounded once.
 *   The separate dQ pass is how dQ gets f32 accumulation without atomics (FA2's dQ uses atomicAdd
 *   into an f32 buffer, which is neither deterministic nor free of a [B, S, Hq, D] f32 scratch): it
 *   recomputes S and dP, 7 tile GEMMs per (query tile, key tile) pair instead of 5.
 *
 * Varlen with an invalid cu_seqlens: tokens that belong to no sequence are never visited by the
 * tile kernels, so flash_varlen_orphans_kernel gives them out = 0, lse = -inf and zero gradients
 * (the ABI's promise; one thread per token, the attn_find_sequence search of the *_ref kernels).
 * Varlen grids run over the tile slots of attn_varlen_slot (T / 64 + B blocks per head: the host
 * cannot read the lengths, and a grid sized for the longest possible sequence per sequence would
 * be B times larger); a spare slot's block exits at once.
 *
 * Numerics vs the *_ref kernels / CPU twin: P and dS enter the second GEMMs as bf16 (as in FA2), the
 * exponentials use ex2.approx (~2 ulp), and sums run in tensor-core order: outputs agree with the
 * f32 references to about bf16 resolution of the largest terms, not to f32 rounding.
 *
 * Shared memory (dynamic): forward Q + 2 x (K, V) = 5 tiles (20 / 40 / 80 KB at D = 32 / 64 / 128);
 * dQ pass Q, dO + 2 x (K, V) = 6 tiles; dK/dV pass K, V + 2 x (Q, dO) + 2 x 2 x 64 floats. Every
 * kernel is compiled with -Xptxas -v; the build log must show 0 bytes spill for all of them.
 * Registers per thread (ptxas, sm_80, CUDA 13.0; D = 64 / 128): forward 133-165 / 243, dQ 168 /
 * 242, dK/dV 232 / 255 (the reason for the 32-column slices), D_i 32; so 2-3 blocks of 4 warps per
 * SM (registers and shared memory both allow 2 at D = 128); D = 32: forward 101, dQ 128, dK/dV
 * 168 (its 64-byte tile rows have their own swizzle, attn_smem_swizzle). All ldmatrix addresses
 * come from 4 per-lane offsets (LaneOffsets): computing the swizzle per call made ptxas hoist one
 * address register per fragment and spill.
 *
 * Not done (next steps): a Hopper wgmma/TMA variant (this is the sm_80 instruction set, which runs
 * on H100 below its peak), 128-row Q tiles, a split-KV forward for short-query decode-like shapes,
 * and an fp32-atomic dQ mode (one pass, non-deterministic) for speed.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_check.cuh"
#include "flash_attention.h"
#include "mma_ptx.cuh"
/* the kernels, after the wrappers they use */
#include "flash_attention_kernels.cuh"

namespace moe4j {

namespace {

/* ---- launch ------------------------------------------------------------------------------- */

template <int D>
constexpr int fwd_smem() { return 5 * tile_bytes<D>(); }
template <int D>
constexpr int dq_smem() { return 6 * tile_bytes<D>(); }
template <int D>
constexpr int dkv_smem() { return 6 * tile_bytes<D>() + 2 * 128 * (int)sizeof(float); }

int32_t launch(const char *fn, const char *name, const void *kernel, dim3 grid, int smem,
               cudaStream_t stream, FaParams &p) {
  if (smem > 0) {
    const int32_t s = cuda_status(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), fn,
        "cudaFuncSetAttribute");
    if (s != MOE4J_OK) return s;
  }
  void *args[] = {&p};
  const int32_t s = cuda_status(cudaLaunchKernel(kernel, grid, dim3(kFaThreads), args, (size_t)smem, stream), fn, name);
  if (s != MOE4J_OK) return s;
  return check_launch(fn, name);
}

FaParams make_params(const void *q, const void *k, const void *v, const int32_t *cu,
                     int64_t batch, int64_t seq, int64_t q_heads, int64_t kv_heads, bool causal,
                     int64_t window, float scale) {
  FaParams p;
  p.q = (const bf16_t *)q;
  p.k = (const bf16_t *)k;
  p.v = (const bf16_t *)v;
  p.out = p.dout = nullptr;
  p.o_or_dq = p.dk = p.dv = nullptr;
  p.lse_in = nullptr;
  p.lse_out = p.dsum = nullptr;
  p.cu = cu;
  p.batch = batch;
  p.seq = seq;
  p.q_heads = (int)q_heads;
  p.kv_heads = (int)kv_heads;
  p.causal = causal;
  p.window = window;
  p.scale = scale;
  return p;
}

int32_t launch_orphans(const char *fn, const int32_t *cu, int64_t batch, int64_t seq, int D,
                       bf16_t *x, int x_heads, float *lse, bf16_t *y, bf16_t *z, int yz_heads,
                       cudaStream_t stream) {
  if (cu == nullptr) return MOE4J_OK;
  flash_varlen_orphans_kernel<<<blocks_for(seq, kFaThreads, INT32_MAX), kFaThreads, 0, stream>>>(
      cu, batch, seq, D, x, x_heads, lse, y, z, yz_heads);
  return check_launch(fn, "flash_varlen_orphans_kernel");
}

/* Grid of the tile kernels: (tiles of S, heads, B) for a uniform batch, (varlen slots, heads, 1)
 * for a packed one (block_tile). */
dim3 tile_grid(bool varlen, int64_t batch, int64_t seq, int64_t heads) {
  if (varlen)
    return dim3((unsigned int)attn_varlen_slot_count(batch, seq), (unsigned int)heads, 1u);
  return dim3((unsigned int)attn_tile_count(seq, kFaRows), (unsigned int)heads,
              (unsigned int)batch);
}

/* The forward and the three backward kernels of one head_dim D. */
template <int D>
int32_t forward_kernels(const char *fn, dim3 grid, cudaStream_t stream, FaParams &p) {
  return launch(fn, "flash_fwd_kernel", (const void *)flash_fwd_kernel<D>, grid, fwd_smem<D>(),
                stream, p);
}

template <int D>
int32_t backward_kernels(const char *fn, dim3 qgrid, dim3 kgrid, cudaStream_t stream,
                         FaParams &p) {
  int32_t s = launch(fn, "flash_bwd_dot_kernel", (const void *)flash_bwd_dot_kernel<D>, qgrid, 0,
                     stream, p);
  if (s == MOE4J_OK)
    s = launch(fn, "flash_bwd_dkv_kernel", (const void *)flash_bwd_dkv_kernel<D>, kgrid,
               dkv_smem<D>(), stream, p);
  if (s == MOE4J_OK)
    s = launch(fn, "flash_bwd_dq_kernel", (const void *)flash_bwd_dq_kernel<D>, qgrid,
               dq_smem<D>(), stream, p);
  return s;
}

}  // namespace

bool flash_attention_fast_supported(int32_t dtype, int64_t head_dim) {
  return dtype == MOE4J_DTYPE_BF16 && (head_dim == 32 || head_dim == 64 || head_dim == 128);
}

bool flash_attention_fast_path(int32_t dtype, int64_t head_dim, bool varlen, int64_t batch,
                               int64_t seq, int64_t q_heads,
                               std::initializer_list<const void *> buffers) {
  if (!flash_attention_fast_supported(dtype, head_dim)) return false;
  /* grid (tiles or slots, heads, B or 1): y and z are limited to 65535, x to 2^31 - 1 */
  if (q_heads > 65535) return false;
  if (varlen ? attn_varlen_slot_count(batch, seq) > INT32_MAX
             : (batch > 65535 || attn_tile_count(seq, kFaRows) > INT32_MAX))
    return false;
  for (const void *b : buffers)
    if (((uintptr_t)b & 15u) != 0) return false;
  return true;
}

int32_t flash_attention_forward(const char *fn, const void *q, const void *k, const void *v,
                                void *out, float *lse, const int32_t *cu_seqlens, int64_t batch,
                                int64_t seq, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                bool causal, int64_t window, float scale, cudaStream_t stream) {
  FaParams p = make_params(q, k, v, cu_seqlens, batch, seq, q_heads, kv_heads, causal, window, scale);
  p.o_or_dq = (bf16_t *)out;
  p.lse_out = lse;
  const dim3 grid = tile_grid(cu_seqlens != nullptr, batch, seq, q_heads);
  const int32_t s = head_dim == 32   ? forward_kernels<32>(fn, grid, stream, p)
                    : head_dim == 64 ? forward_kernels<64>(fn, grid, stream, p)
                                     : forward_kernels<128>(fn, grid, stream, p);
  if (s != MOE4J_OK) return s;
  return launch_orphans(fn, cu_seqlens, batch, seq, (int)head_dim, (bf16_t *)out, (int)q_heads,
                        lse, nullptr, nullptr, 0, stream);
}

int32_t flash_attention_backward(const char *fn, const void *q, const void *k, const void *v,
                                 const void *out, const void *dout, const float *lse, void *dq,
                                 void *dk, void *dv, const int32_t *cu_seqlens, int64_t batch,
                                 int64_t seq, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                 bool causal, int64_t window, float scale, void *workspace,
                                 cudaStream_t stream) {
  FaParams p = make_params(q, k, v, cu_seqlens, batch, seq, q_heads, kv_heads, causal, window, scale);
  p.out = (const bf16_t *)out;
  p.dout = (const bf16_t *)dout;
  p.lse_in = lse;
  p.dsum = (float *)workspace;
  p.o_or_dq = (bf16_t *)dq;
  p.dk = (bf16_t *)dk;
  p.dv = (bf16_t *)dv;
  const dim3 qgrid = tile_grid(cu_seqlens != nullptr, batch, seq, q_heads),
             kgrid = tile_grid(cu_seqlens != nullptr, batch, seq, kv_heads);
  const int32_t s = head_dim == 32   ? backward_kernels<32>(fn, qgrid, kgrid, stream, p)
                    : head_dim == 64 ? backward_kernels<64>(fn, qgrid, kgrid, stream, p)
                                     : backward_kernels<128>(fn, qgrid, kgrid, stream, p);
  if (s != MOE4J_OK) return s;
  return launch_orphans(fn, cu_seqlens, batch, seq, (int)head_dim, (bf16_t *)dq, (int)q_heads,
                        nullptr, (bf16_t *)dk, (bf16_t *)dv, (int)kv_heads, stream);
}

}  // namespace moe4j
