/*
 * The few cuBLAS entry points moe4j uses, resolved at run time with dlopen/dlsym so that no cuBLAS
 * is needed at build time and a machine without it still runs (our GEMM kernel serves instead).
 * Types are declared here as plain ints/pointers matching the cuBLAS C ABI (cublasStatus_t,
 * cublasOperation_t, cudaDataType and cublasComputeType_t are C enums, i.e. int).
 */
#pragma once
#include <stdint.h>

namespace moe4j {

struct CublasApi {
  using Handle = void *;
  using CreateFn = int (*)(Handle *);
  using DestroyFn = int (*)(Handle);
  using SetStreamFn = int (*)(Handle, void *stream);
  /* cublasGemmEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C,
   *              Ctype, ldc, computeType, algo) */
  using GemmExFn = int (*)(Handle, int, int, int, int, int, const void *, const void *, int, int,
                           const void *, int, int, const void *, void *, int, int, int, int);
  /* cublasGemmStridedBatchedEx: as GemmEx with a stride after each matrix and a batch count. */
  using GemmStridedBatchedExFn = int (*)(Handle, int, int, int, int, int, const void *, const void *,
                                         int, int, long long, const void *, int, int, long long,
                                         const void *, void *, int, int, long long, int, int, int);

  void *handle = nullptr;
  const char *library = "";
  CreateFn create = nullptr;
  DestroyFn destroy = nullptr;
  SetStreamFn set_stream = nullptr;
  GemmExFn gemm_ex = nullptr;
  GemmStridedBatchedExFn gemm_strided_batched_ex = nullptr;
};

/* Loads cuBLAS once (thread-safe); nullptr when no usable libcublas was found. */
const CublasApi *cublas_api();

}  // namespace moe4j
