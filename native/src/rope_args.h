/*
 * Argument rules of RoPE (moe4j.h "Attention (first slice...)": rope_forward, rope_backward),
 * shared by the CPU twin (native/src/cpu_rope.cpp) and the CUDA launchers (kernels/rope.cu), like
 * op_args.h:
 *
 *   ArgCheck chk(fn);
 *   check_rope_<dir>(chk, ...);
 *   if (chk.failed()) return chk.status();
 *
 * Rules: dtype F32 | BF16; tokens >= 0; heads >= 1 (0 only when tokens is 0); head_dim even and in
 * [2, 1024]; theta finite and > 1; tokens * heads * head_dim fits; x/out (dout/dx) non-NULL and
 * aligned unless empty; positions non-NULL when tokens > 0; the output may alias the input
 * exactly (in place) but must not partially overlap it, nor overlap positions. Position values
 * are not checked (any int32 is a valid position; |pos| > 2^24 is rounded when converted to f32).
 */
#pragma once
#include <stdint.h>

#include "status.h"

namespace moe4j {

void check_rope_forward(ArgCheck &chk, int32_t dtype, const void *x, void *out,
                        const int32_t *positions, int64_t tokens, int64_t heads, int64_t head_dim,
                        float theta);
void check_rope_backward(ArgCheck &chk, int32_t dtype, const void *dout, void *dx,
                         const int32_t *positions, int64_t tokens, int64_t heads,
                         int64_t head_dim, float theta);

}  // namespace moe4j
