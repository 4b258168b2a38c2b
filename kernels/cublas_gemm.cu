/*
 * Dense GEMM through cuBLAS, the baseline the grouped-expert GEMM is measured against
 * (kernels/bench/bench_grouped_gemm.cu): c [m, n] = a [m, k] . b [n, k]^T, row-major, in_dtype
 * inputs, out_dtype output, f32 compute. cuBLAS is loaded at run time (common/cublas_loader.h,
 * kernels/runtime.cu); without it the call fails with MOE4J_ERR_UNSUPPORTED and our own kernel
 * (moe4j_cuda_grouped_gemm_forward with offsets = NULL) serves dense GEMMs.
 *
 * Row-major to column-major: cuBLAS reads a matrix with leading dimension ld as column-major, so
 * the row-major c [m, n] is the column-major n x m matrix C' = c^T (ldc = n). c = a . b^T gives
 * C' = (a . b^T)^T = b . a^T. Row-major b [n, k] is column-major k x n (ld k), so op = T yields b;
 * row-major a [m, k] is column-major k x m (ld k), which is a^T already: op = N. Hence
 *   cublasGemmEx(transa = T, transb = N, m' = n, n' = m, k' = k, A = b, lda = k, B = a, ldb = k,
 *                C = c, ldc = n).
 *
 * One handle per device for the process, created lazily under a mutex; the mutex also covers
 * cublasSetStream + cublasGemmEx so concurrent callers on other streams cannot swap the stream
 * between the two. Handles live until the process exits (cuBLAS owns no moe4j state).
 */
#include <limits.h>

#include <mutex>

#include "cublas_loader.h"
#include "cuda_check.cuh"

namespace moe4j {

/* cuBLAS / CUDA enum values (library_types.h, cublas_api.h); the loader declares plain ints. */
constexpr int kCublasOpN = 0, kCublasOpT = 1;
constexpr int kCudaR32F = 0, kCudaR16BF = 14;
constexpr int kCublasCompute32F = 68;
constexpr int kCublasGemmDefault = -1;
constexpr int kMaxDevices = 64;

static std::mutex g_cublas_mutex;
static CublasApi::Handle g_cublas_handles[kMaxDevices];

inline int cuda_type(int32_t dtype) { return dtype == MOE4J_DTYPE_BF16 ? kCudaR16BF : kCudaR32F; }

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_cublas_gemm(int32_t in_dtype, const void *a, const void *b, int32_t out_dtype,
                               void *c, int64_t m, int64_t n, int64_t k, void *stream) {
  const char *fn = "moe4j_cuda_cublas_gemm";
  ArgCheck chk(fn);
  chk.float_dtype("in_dtype", in_dtype).float_dtype("out_dtype", out_dtype)
      .non_negative("m", m).non_negative("n", n).non_negative("k", k)
      .require(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX,
               "m, n and k must fit cuBLAS's int (<= %d), got %lld, %lld, %lld", INT_MAX,
               (long long)m, (long long)n, (long long)k)
      .product_fits("m * k", m, k).product_fits("n * k", n, k).product_fits("m * n", m, n);
  if (chk.failed()) return chk.status();
  const int64_t insz = dtype_size(in_dtype), outsz = dtype_size(out_dtype);
  chk.buffer("a", a, m * k, in_dtype).buffer("b", b, n * k, in_dtype).buffer("c", c, m * n, out_dtype)
      .require(!ranges_overlap(c, m * n * outsz, a, m * k * insz), "c and a overlap")
      .require(!ranges_overlap(c, m * n * outsz, b, n * k * insz), "c and b overlap");
  if (chk.failed()) return chk.status();
  if (in_dtype == MOE4J_DTYPE_F32 && out_dtype == MOE4J_DTYPE_BF16)
    return fail(MOE4J_ERR_UNSUPPORTED,
                "%s: cublasGemmEx has no F32 inputs with a BF16 output; use out_dtype F32", fn);
  if (m == 0 || n == 0) return MOE4J_OK;
  if (k == 0) /* empty sum: c = 0 */
    return cuda_status(cudaMemsetAsync(c, 0, (size_t)(m * n * outsz), as_stream(stream)), fn,
                       "cudaMemsetAsync");
  const CublasApi *api = cublas_api();
  if (api == nullptr)
    return fail(MOE4J_ERR_UNSUPPORTED,
                "%s: cuBLAS is not available (neither libcublas.so.13 nor libcublas.so.12 could "
                "be loaded); dense GEMMs run on moe4j_cuda_grouped_gemm_forward with offsets = NULL",
                fn);
  int device = 0;
  int32_t s = cuda_status(cudaGetDevice(&device), fn, "cudaGetDevice");
  if (s != MOE4J_OK) return s;
  if (device < 0 || device >= kMaxDevices)
    return fail(MOE4J_ERR_UNSUPPORTED, "%s: device %d is beyond the %d devices supported", fn,
                device, kMaxDevices);

  std::lock_guard<std::mutex> lock(g_cublas_mutex);
  CublasApi::Handle &handle = g_cublas_handles[device];
  if (handle == nullptr) {
    int st = api->create(&handle);
    if (st != 0) {
      handle = nullptr;
      return fail(MOE4J_ERR_CUDA, "%s: cublasCreate failed with cublasStatus %d (%s)", fn, st,
                  api->library);
    }
  }
  int st = api->set_stream(handle, stream);
  if (st != 0) return fail(MOE4J_ERR_CUDA, "%s: cublasSetStream failed with cublasStatus %d", fn, st);
  const float alpha = 1.0f, beta = 0.0f;
  const int in_type = cuda_type(in_dtype), out_type = cuda_type(out_dtype);
  /* column-major C' (n x m) = op_T(b as k x n) . op_N(a as k x m); see the header comment */
  st = api->gemm_ex(handle, kCublasOpT, kCublasOpN, (int)n, (int)m, (int)k, &alpha, b, in_type,
                    (int)k, a, in_type, (int)k, &beta, c, out_type, (int)n, kCublasCompute32F,
                    kCublasGemmDefault);
  if (st != 0)
    return fail(MOE4J_ERR_CUDA, "%s: cublasGemmEx (m %lld, n %lld, k %lld) failed with cublasStatus %d",
                fn, (long long)m, (long long)n, (long long)k, st);
  return check_launch(fn, "cublasGemmEx");
}

}  // extern "C"
