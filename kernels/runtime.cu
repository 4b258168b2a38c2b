/*
 * libmoe4j_cuda identity and environment: last error, build info, device count with a reason when
 * there is none, driver/runtime versions, and the run-time cuBLAS loader.
 *
 * cuBLAS is dlopen'ed (libcublas.so.13, then .so.12) rather than linked, so the library builds and
 * loads without cuBLAS and the GEMM issue can fall back to our own kernel (DESIGN.md §3).
 */
#include <dlfcn.h>
#include <stdio.h>

#include <atomic>
#include <mutex>

#include "cublas_loader.h"
#include "cuda_check.cuh"

#ifndef MOE4J_CUDA_ARCHS
#define MOE4J_CUDA_ARCHS "unknown"
#endif
#ifndef MOE4J_CUDA_TOOLKIT
#define MOE4J_CUDA_TOOLKIT "unknown"
#endif

namespace moe4j {

static std::atomic<bool> g_reference_kernels{false};

bool reference_kernels_enabled() { return g_reference_kernels.load(std::memory_order_relaxed); }

static CublasApi g_cublas;
static std::once_flag g_cublas_once;

static void load_cublas() {
  const char *names[] = {"libcublas.so.13", "libcublas.so.12"};
  for (const char *name : names) {
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) continue;
    CublasApi api;
    api.handle = h;
    api.library = name;
    api.create = (CublasApi::CreateFn)dlsym(h, "cublasCreate_v2");
    api.destroy = (CublasApi::DestroyFn)dlsym(h, "cublasDestroy_v2");
    api.set_stream = (CublasApi::SetStreamFn)dlsym(h, "cublasSetStream_v2");
    api.gemm_ex = (CublasApi::GemmExFn)dlsym(h, "cublasGemmEx");
    api.gemm_strided_batched_ex =
        (CublasApi::GemmStridedBatchedExFn)dlsym(h, "cublasGemmStridedBatchedEx");
    if (api.create && api.destroy && api.set_stream && api.gemm_ex && api.gemm_strided_batched_ex) {
      g_cublas = api;
      return;
    }
    dlclose(h);
  }
}

const CublasApi *cublas_api() {
  std::call_once(g_cublas_once, load_cublas);
  return g_cublas.handle != nullptr ? &g_cublas : nullptr;
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

const char *moe4j_cuda_last_error(void) { return last_error_message(); }

const char *moe4j_cuda_build_info(void) {
  return "version=" MOE4J_VERSION ";cuda_toolkit=" MOE4J_CUDA_TOOLKIT
         ";architectures=" MOE4J_CUDA_ARCHS ";cudart=static";
}

int32_t moe4j_cuda_device_count(int32_t *out_count) {
  ArgCheck a("moe4j_cuda_device_count");
  a.buffer("out_count", out_count, 1, MOE4J_DTYPE_I32);
  if (a.failed()) return a.status();
  *out_count = 0;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaErrorNoDevice || (err == cudaSuccess && count == 0)) {
    (void)cudaGetLastError();
    return fail(MOE4J_ERR_NO_DEVICE, "moe4j_cuda_device_count: no CUDA device is visible");
  }
  if (err == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError();
    int driver = 0;
    cudaDriverGetVersion(&driver);
    if (driver == 0)
      return fail(MOE4J_ERR_NO_DEVICE,
                  "moe4j_cuda_device_count: no NVIDIA driver found (libcuda.so.1 cannot be loaded)");
    return fail(MOE4J_ERR_NO_DEVICE,
                "moe4j_cuda_device_count: NVIDIA driver too old or missing (driver supports CUDA "
                "%d, this library needs CUDA %d)",
                driver, CUDART_VERSION);
  }
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return cuda_status(err, "moe4j_cuda_device_count", "cudaGetDeviceCount");
  }
  *out_count = count;
  return MOE4J_OK;
}

int32_t moe4j_cuda_versions(int32_t *out_driver, int32_t *out_runtime) {
  ArgCheck a("moe4j_cuda_versions");
  a.buffer("out_driver", out_driver, 1, MOE4J_DTYPE_I32)
      .buffer("out_runtime", out_runtime, 1, MOE4J_DTYPE_I32);
  if (a.failed()) return a.status();
  int driver = 0, runtime = 0;
  int32_t s = cuda_status(cudaDriverGetVersion(&driver), "moe4j_cuda_versions",
                          "cudaDriverGetVersion");
  if (s != MOE4J_OK) return s;
  s = cuda_status(cudaRuntimeGetVersion(&runtime), "moe4j_cuda_versions", "cudaRuntimeGetVersion");
  if (s != MOE4J_OK) return s;
  *out_driver = driver;
  *out_runtime = runtime;
  return MOE4J_OK;
}

const char *moe4j_cuda_cublas_library(void) {
  const CublasApi *api = cublas_api();
  return api != nullptr ? api->library : "";
}

int32_t moe4j_cuda_use_reference_kernels(int32_t enable) {
  clear_error();
  g_reference_kernels.store(enable != 0, std::memory_order_relaxed);
  return MOE4J_OK;
}

}  // extern "C"
