/*
 * Launch plumbing shared by every .cu file: error checks that turn a CUDA failure into a status
 * code plus a thread-local message (never abort), grid-size helpers, and (warp_reduce.cuh)
 * warp/block reductions.
 */
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "moe4j.h"
#include "status.h"
#include "warp_reduce.cuh"

namespace moe4j {

/* Returns MOE4J_ERR_CUDA with "<fn>: <what>: <cuda error>" if err is not cudaSuccess. */
inline int32_t cuda_status(cudaError_t err, const char *fn, const char *what) {
  if (err == cudaSuccess) return MOE4J_OK;
  return fail(MOE4J_ERR_CUDA, "%s: %s failed: %s (%s)", fn, what, cudaGetErrorString(err),
              cudaGetErrorName(err));
}

/* After a launch: configuration errors show up in cudaGetLastError (asynchronous faults show up at
 * the next synchronizing call and are reported there). */
inline int32_t check_launch(const char *fn, const char *kernel) {
  return cuda_status(cudaGetLastError(), fn, kernel);
}

/* Set by moe4j_cuda_use_reference_kernels; launchers pick `*_ref` kernels when true. */
bool reference_kernels_enabled();

inline cudaStream_t as_stream(void *stream) { return (cudaStream_t)stream; }

/* Blocks for n items at `per_block` items a block, capped for grid-stride loops. */
inline unsigned int blocks_for(int64_t n, int64_t per_block, int64_t cap = 65535LL * 32) {
  int64_t b = (n + per_block - 1) / per_block;
  if (b < 1) b = 1;
  return (unsigned int)(b < cap ? b : cap);
}

}  // namespace moe4j
