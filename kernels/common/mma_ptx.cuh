/*
 * Thin inline-PTX wrappers for the sm_80+ tensor-core GEMM path: asynchronous global->shared
 * copies (cp.async), shared->register matrix loads (ldmatrix), and the bf16 warp MMA
 * (mma.sync m16n8k16, f32 accumulate). One wrapper per instruction, no policy; the tiling lives
 * in the kernel files (kernels/grouped_gemm.cu).
 *
 * Fragment layouts of mma.m16n8k16.row.col (g = lane / 4, t = lane % 4), each register two bf16:
 *   A 16x16 (row):  a0 = (g, 2t..2t+1)   a1 = (g+8, 2t..)   a2 = (g, 2t+8..)   a3 = (g+8, 2t+8..)
 *   B 16x8  (col):  b0 = (k 2t..2t+1, n g)                  b1 = (k 2t+8.., n g)
 *   C 16x8  (f32):  c0,c1 = (g, 2t..2t+1)                   c2,c3 = (g+8, 2t..2t+1)
 * ldmatrix.x4 loads four 8x8 b16 matrices; lanes 8j..8j+7 give the row addresses of matrix j and
 * register j of every lane receives matrix j with lane holding (row lane/4, cols 2(lane%4)..+1)
 * (or, with .trans, the transposed matrix: stored column lane/4, stored rows 2(lane%4)..+1).
 * So four non-transposed 8x8 tiles of a [m][k] (k-contiguous) array are an A fragment, and .trans
 * turns a [k][m] (m-contiguous) array into the same fragment.
 */
#pragma once
#include <stdint.h>

namespace moe4j {

/* 32-bit shared-memory address of a generic pointer into shared memory. */
__device__ __forceinline__ uint32_t smem_addr(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte global->shared copy that bypasses L1 (.cg). With valid == false nothing is read
 * (src-size 0) and the 16 destination bytes are zero-filled; src must still be a mapped address
 * by convention, callers pass the operand's base pointer. */
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void *src, bool valid) {
  const int src_size = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_size)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Wait until at most N committed groups of this thread are still in flight. */
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/* d = a * b + d on one 16x8x16 bf16 tile, f32 accumulators. */
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4],
                                               const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

}  // namespace moe4j
