/*
 * Helpers for the GPU tests (CUDA kernel vs its CPU twin). A test binary calls
 * GPU_TEST_MAIN(suite): with no usable device it prints why and exits 77, which CTest reports as
 * skipped. Device buffers are RAII; every CUDA call is checked.
 */
#pragma once
#include <cuda_runtime.h>

#include <vector>

#define CHECK_LAST_ERROR moe4j_cuda_last_error
#include "check.h"
#include "moe4j.h"

namespace gpu {

template <typename T>
struct DeviceBuffer {
  T *ptr = nullptr;
  size_t count = 0;
  explicit DeviceBuffer(size_t n) : count(n) {
    if (n > 0 && cudaMalloc((void **)&ptr, n * sizeof(T)) != cudaSuccess) {
      fprintf(stderr, "cudaMalloc of %zu bytes failed\n", n * sizeof(T));
      exit(1);
    }
  }
  explicit DeviceBuffer(const std::vector<T> &host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  void upload(const std::vector<T> &host) {
    if (count) CHECK(cudaMemcpy(ptr, host.data(), count * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> host(count);
    if (count) CHECK(cudaMemcpy(host.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return host;
  }
};

/* Waits for the stream and checks asynchronous errors. */
inline void sync() { CHECK(cudaDeviceSynchronize() == cudaSuccess); }

inline int main_or_skip(const char *suite) {
  int32_t count = 0;
  if (moe4j_cuda_device_count(&count) != MOE4J_OK) {
    printf("%s: skipped: %s\n", suite, moe4j_cuda_last_error());
    return 77;
  }
  return check::run_all(suite);
}

}  // namespace gpu

#define GPU_TEST_MAIN(suite) \
  int main() { return gpu::main_or_skip(suite); }
