/*
 * Flash-attention benchmark (a GPU benchmark, not a test; ci/gpu-check.sh runs it, no JDK).
 *
 * Times moe4j_cuda_attention_forward and forward + backward (the FlashAttention-2 bf16
 * tensor-core path of kernels/flash_attention.cu) at S = 512 .. 8192, head_dim 64 and 128, causal
 * and not, with the FlashAttention papers' setup: batch * S = 16384 tokens, hidden 2048 (Hq = Hkv =
 * 2048 / D), bf16, scale 1/sqrt(D). FLOP convention (FlashAttention-2 paper): forward
 * 4 * B * S^2 * H * D (two GEMMs), halved when causal; backward 2.5x the forward (five GEMMs);
 * forward + backward 3.5x. Printed: median ms (min..max), TFLOP/s and the fraction of 989 TFLOP/s
 * (H100 SXM dense bf16, DESIGN.md §7). The in-run baseline is the *_ref kernel pair
 * (moe4j_cuda_use_reference_kernels(1)) at the smallest S, fewer tokens and one repetition: it is
 * the simple one-thread-per-row kernel, orders of magnitude slower. Timing: CUDA events around
 * each call on the default stream after 2 warm-up calls; attention at these sizes is compute-bound,
 * so no L2 flush.
 *
 * Usage: bench_attention [--reps N] [--quick] (quick: S <= 2048). Exit 77 when no GPU is usable.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "moe4j.h"

namespace {

constexpr double kPeakTflops = 989.0;
constexpr int64_t kTokens = 16384, kHidden = 2048;

#define CUDA_OK(call)                                                                        \
  do {                                                                                       \
    cudaError_t e_ = (call);                                                                 \
    if (e_ != cudaSuccess) {                                                                 \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                               \
    }                                                                                        \
  } while (0)

#define MOE4J_OK_OR_DIE(call)                                                                   \
  do {                                                                                          \
    if ((call) != MOE4J_OK) {                                                                   \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, moe4j_cuda_last_error()); \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

/* Uniform [-scale, scale) bf16 from a hash of the index: fast device-side fill. */
__global__ void fill_bf16(uint16_t *p, size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    const float v = ((h >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * scale;
    p[i] = (uint16_t)(__float_as_uint(v) >> 16);
  }
}

struct Buffers {
  void *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr, *dout = nullptr, *dq = nullptr,
       *dk = nullptr, *dv = nullptr, *ws = nullptr;
  float *lse = nullptr;
  int64_t ws_bytes = 0;

  Buffers(int64_t batch, int64_t seq, int64_t heads, int64_t d) {
    const size_t n = (size_t)(batch * seq * heads * d);
    for (void **p : {&q, &k, &v, &out, &dout, &dq, &dk, &dv}) CUDA_OK(cudaMalloc(p, n * 2));
    CUDA_OK(cudaMalloc((void **)&lse, (size_t)(batch * seq * heads) * 4));
    MOE4J_OK_OR_DIE(moe4j_cuda_attention_backward_workspace_bytes(batch, seq, heads, d, &ws_bytes));
    CUDA_OK(cudaMalloc(&ws, std::max<int64_t>(ws_bytes, 1)));
    uint32_t seed = 1;
    for (void *p : {q, k, v, dout}) {
      fill_bf16<<<1024, 256>>>((uint16_t *)p, n, seed++, 1.0f);
      CUDA_OK(cudaGetLastError());
    }
  }
  ~Buffers() {
    for (void *p : {q, k, v, out, dout, dq, dk, dv, ws}) cudaFree(p);
    cudaFree(lse);
  }
  Buffers(const Buffers &) = delete;
  Buffers &operator=(const Buffers &) = delete;
};

struct Timing {
  double median_ms, min_ms, max_ms;
};

Timing time_it(const std::function<void()> &fn, int reps, int warmup) {
  for (int i = 0; i < warmup; i++) fn();
  CUDA_OK(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  CUDA_OK(cudaEventCreate(&a));
  CUDA_OK(cudaEventCreate(&b));
  std::vector<double> ms;
  for (int r = 0; r < reps; r++) {
    CUDA_OK(cudaEventRecord(a));
    fn();
    CUDA_OK(cudaEventRecord(b));
    CUDA_OK(cudaEventSynchronize(b));
    float e = 0;
    CUDA_OK(cudaEventElapsedTime(&e, a, b));
    ms.push_back(e);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return Timing{ms[ms.size() / 2], ms.front(), ms.back()};
}

struct Shape {
  int64_t batch, seq, heads, d;
  int32_t causal;
};

double fwd_flop(const Shape &s) {
  const double f = 4.0 * s.batch * (double)s.seq * s.seq * s.heads * s.d;
  return s.causal ? f / 2 : f;
}

void forward(const Shape &s, Buffers &b) {
  MOE4J_OK_OR_DIE(moe4j_cuda_attention_forward(MOE4J_DTYPE_BF16, b.q, b.k, b.v, b.out, b.lse,
                                               nullptr, s.batch, s.seq, s.heads, s.heads, s.d,
                                               s.causal, 0, 1.0f / sqrtf((float)s.d), nullptr));
}

void backward(const Shape &s, Buffers &b) {
  MOE4J_OK_OR_DIE(moe4j_cuda_attention_backward(
      MOE4J_DTYPE_BF16, b.q, b.k, b.v, b.out, b.dout, b.lse, b.dq, b.dk, b.dv, nullptr, s.batch,
      s.seq, s.heads, s.heads, s.d, s.causal, 0, 1.0f / sqrtf((float)s.d), b.ws, b.ws_bytes,
      nullptr));
}

void report(const char *impl, const Shape &s, const char *pass, double flop, const Timing &t) {
  const double tf = flop / (t.median_ms * 1e-3) / 1e12;
  printf("%-4s B%-3lld S%-5lld H%-3lld D%-4lld %-6s %-8s %9.3f ms (%.3f..%.3f) %7.1f TFLOP/s %5.1f%%\n",
         impl, (long long)s.batch, (long long)s.seq, (long long)s.heads, (long long)s.d,
         s.causal ? "causal" : "full", pass, t.median_ms, t.min_ms, t.max_ms, tf,
         100.0 * tf / kPeakTflops);
}

void bench_shape(const char *impl, const Shape &s, int reps, int warmup) {
  Buffers b(s.batch, s.seq, s.heads, s.d);
  const double f = fwd_flop(s);
  report(impl, s, "fwd", f, time_it([&] { forward(s, b); }, reps, warmup));
  report(impl, s, "fwd+bwd", 3.5 * f, time_it([&] {
           forward(s, b);
           backward(s, b);
         }, reps, warmup));
}

}  // namespace

int main(int argc, char **argv) {
  int reps = 10;
  bool quick = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, atoi(argv[++i]));
    else if (!strcmp(argv[i], "--quick")) quick = true;
    else {
      fprintf(stderr, "usage: bench_attention [--reps N] [--quick]\n");
      return 2;
    }
  }
  int32_t count = 0;
  if (moe4j_cuda_device_count(&count) != MOE4J_OK) {
    printf("bench_attention: skipped: %s\n", moe4j_cuda_last_error());
    return 77;
  }
  printf("flash attention, bf16, batch * S = %lld tokens, hidden %lld, Hq = Hkv, median of %d "
         "reps, peak %.0f TFLOP/s; FLOP: fwd 4 B S^2 H D (/2 causal), fwd+bwd 3.5x fwd\n",
         (long long)kTokens, (long long)kHidden, reps, kPeakTflops);
  MOE4J_OK_OR_DIE(moe4j_cuda_use_reference_kernels(0));
  for (int64_t d : {64, 128})
    for (int32_t causal : {0, 1})
      for (int64_t seq = 512; seq <= (quick ? 2048 : 8192); seq *= 2)
        bench_shape("fa2", Shape{kTokens / seq, seq, kHidden / d, d, causal}, reps, 2);

  /* baseline: the *_ref kernels at S = 512 on 2048 tokens, one repetition after one warm-up */
  MOE4J_OK_OR_DIE(moe4j_cuda_use_reference_kernels(1));
  for (int64_t d : {64, 128})
    for (int32_t causal : {0, 1})
      bench_shape("ref", Shape{4, 512, kHidden / d, d, causal}, 1, 1);
  MOE4J_OK_OR_DIE(moe4j_cuda_use_reference_kernels(0));
  return 0;
}
