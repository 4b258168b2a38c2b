/*
 * SwiGLU element math shared by the CPU twin (native/src/cpu_swiglu.cpp) and the CUDA kernels
 * (kernels/swiglu.cu):
 *   out = silu(gate) * up
 *   dup = dout * silu(gate),  dgate = (dout * up) * silu'(gate)
 * silu / silu_grad come from numerics.h. CPU and GPU differ only through expf (the device expf
 * is within 2 ulp, glibc's within 1), so results agree to a few f32 ulps, not bitwise.
 */
#pragma once
#include "numerics.h"

namespace moe4j {

MOE4J_HD float swiglu_out(float gate, float up) { return silu(gate) * up; }

MOE4J_HD float swiglu_dup(float gate, float dout) { return dout * silu(gate); }

MOE4J_HD float swiglu_dgate(float gate, float up, float dout) {
  return (dout * up) * silu_grad(gate);
}

}  // namespace moe4j
