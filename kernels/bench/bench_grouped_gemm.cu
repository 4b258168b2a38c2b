/*
 * Grouped-expert GEMM benchmark (a GPU benchmark, not a test; ci/gpu-check.sh runs it, no JDK).
 *
 * For MoE layer shapes (Mixtral-like 4096/14336/E8/top-2, OLMoE-like 2048/1024/E64/top-8, and
 * fine-grained E128/E256 top-8 with small expert FFNs), token counts 1..8192 and balanced or
 * Zipf(1.2) routing, it times the four expert GEMMs of a layer:
 *   swiglu  h = silu(x w1^T) * (x w3^T)  (combined w13, gate_up written)  2 * rows * 2f * d FLOP
 *   down    y = h w2^T                                                    2 * rows * d * f
 *   dgrad   dh = dy w2                                                    2 * rows * d * f
 *   wgrad   dw2_e = dy_e^T h_e (f32 dw)                                   2 * rows * d * f
 * with three implementations: ours (one launch, moe4j_cuda_grouped_gemm_*), cuBLAS dense at equal
 * FLOPs (one GEMM over all rows with the same m, n, k; for dgrad/wgrad the a . b^T GEMM of the
 * same dimensions, a FLOP-equal proxy), and a host loop of one cuBLAS call per non-empty expert.
 * Timing: CUDA events around each call, the L2 flushed (memset of 2x its size) before every
 * repetition, median over repetitions (spread = min..max printed). Peak: 989 TFLOP/s (H100 SXM
 * dense bf16, DESIGN.md §7).
 *
 * Usage: bench_grouped_gemm [model-filter] [--reps N]. Exit 77 when no GPU is usable.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "moe4j.h"

namespace {

constexpr double kPeakTflops = 989.0;
constexpr int32_t kBF16 = MOE4J_DTYPE_BF16, kF32 = MOE4J_DTYPE_F32;

#define CUDA_OK(call)                                                                      \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                             \
    }                                                                                      \
  } while (0)

/* Uniform [-scale, scale) bf16 from a hash of the index: fast device-side fill. */
__global__ void fill_bf16(uint16_t *p, size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    float v = ((h >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * scale;
    p[i] = (uint16_t)(__float_as_uint(v) >> 16);
  }
}

template <typename T>
T *device_alloc(size_t n) {
  T *p = nullptr;
  CUDA_OK(cudaMalloc((void **)&p, std::max<size_t>(n, 1) * sizeof(T)));
  return p;
}

uint16_t *random_bf16(size_t n, uint32_t seed, float scale) {
  uint16_t *p = device_alloc<uint16_t>(n);
  fill_bf16<<<1024, 256>>>(p, n, seed, scale);
  CUDA_OK(cudaGetLastError());
  return p;
}

struct Model {
  const char *name;
  int64_t hidden, ffn, experts, topk;
};

/* Rows per expert for `tokens` tokens, each routed to topk distinct experts. */
std::vector<int64_t> route(const Model &m, int64_t tokens, bool zipf, uint64_t seed) {
  std::vector<int64_t> sizes(m.experts, 0);
  if (!zipf) { /* balanced: slot s of token t goes to expert (t * topk + s) mod E */
    for (int64_t t = 0; t < tokens; t++)
      for (int64_t s = 0; s < m.topk; s++) sizes[(t * m.topk + s) % m.experts]++;
    return sizes;
  }
  std::vector<double> w(m.experts);
  for (int64_t e = 0; e < m.experts; e++) w[e] = 1.0 / pow((double)(e + 1), 1.2);
  std::mt19937_64 g(seed);
  std::discrete_distribution<int64_t> d(w.begin(), w.end());
  std::vector<char> taken(m.experts);
  for (int64_t t = 0; t < tokens; t++) {
    std::fill(taken.begin(), taken.end(), 0);
    for (int64_t s = 0; s < m.topk; s++) {
      int64_t e;
      do e = d(g); while (taken[e]);
      taken[e] = 1;
      sizes[e]++;
    }
  }
  return sizes;
}

struct Timing {
  double median_ms = NAN, min_ms = NAN, max_ms = NAN;
};

class Timer {
 public:
  Timer(int reps) : reps_(reps) {
    int dev = 0, l2 = 0;
    CUDA_OK(cudaGetDevice(&dev));
    CUDA_OK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    flush_bytes_ = 2 * (size_t)std::max(l2, 1 << 20);
    flush_ = device_alloc<char>(flush_bytes_);
    CUDA_OK(cudaEventCreate(&start_));
    CUDA_OK(cudaEventCreate(&stop_));
  }
  ~Timer() {
    cudaFree(flush_);
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }

  /* fn enqueues the work on the default stream and returns a moe4j status. */
  Timing time(const std::function<int32_t()> &fn) {
    Timing t;
    if (fn() != MOE4J_OK) {
      fprintf(stderr, "    failed: %s\n", moe4j_cuda_last_error());
      return t;
    }
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<double> ms;
    for (int r = 0; r < reps_; r++) {
      CUDA_OK(cudaMemsetAsync(flush_, r & 0xff, flush_bytes_));
      CUDA_OK(cudaEventRecord(start_));
      if (fn() != MOE4J_OK) return Timing{};
      CUDA_OK(cudaEventRecord(stop_));
      CUDA_OK(cudaEventSynchronize(stop_));
      float e = 0;
      CUDA_OK(cudaEventElapsedTime(&e, start_, stop_));
      ms.push_back(e);
      if (r >= 2 && ms[0] * (r + 1) > 2000.0) break; /* long cases: enough samples */
    }
    std::sort(ms.begin(), ms.end());
    t.median_ms = ms[ms.size() / 2];
    t.min_ms = ms.front();
    t.max_ms = ms.back();
    return t;
  }

 private:
  int reps_;
  char *flush_ = nullptr;
  size_t flush_bytes_ = 0;
  cudaEvent_t start_, stop_;
};

double tflops(double flop, const Timing &t) { return flop / (t.median_ms * 1e-3) / 1e12; }

void print_row(const Model &m, int64_t tokens, const char *routing, const char *op, double flop,
               const Timing &ours, const Timing &dense, const Timing &loop) {
  const double to = tflops(flop, ours), td = tflops(flop, dense), tl = tflops(flop, loop);
  printf("%-10s %6lld %-8s %-6s | %9.4f [%7.4f..%7.4f] %7.1f %5.1f%% | %9.4f %7.1f | %9.4f %7.1f | %6.3f %6.3f\n",
         m.name, (long long)tokens, routing, op, ours.median_ms, ours.min_ms, ours.max_ms, to,
         100.0 * to / kPeakTflops, dense.median_ms, td, loop.median_ms, tl,
         dense.median_ms / ours.median_ms, loop.median_ms / ours.median_ms);
  fflush(stdout);
}

void bench_model(const Model &m, Timer &timer, bool have_cublas) {
  const std::vector<int64_t> token_counts = {1, 16, 128, 1024, 8192};
  const int64_t d = m.hidden, f = m.ffn, E = m.experts;
  const int64_t max_rows = token_counts.back() * m.topk;
  /* weights (HF [out, in] per expert) and activations sized for the largest case */
  uint16_t *w13 = random_bf16((size_t)E * 2 * f * d, 1, 1.0f / sqrtf((float)d));
  uint16_t *w2 = random_bf16((size_t)E * d * f, 2, 1.0f / sqrtf((float)f));
  uint16_t *x = random_bf16((size_t)max_rows * d, 3, 1.0f);
  uint16_t *dy = random_bf16((size_t)max_rows * d, 4, 1.0f);
  uint16_t *h = random_bf16((size_t)max_rows * f, 5, 1.0f);
  uint16_t *gate_up = device_alloc<uint16_t>((size_t)max_rows * 2 * f);
  uint16_t *y = device_alloc<uint16_t>((size_t)max_rows * std::max(d, 2 * f));
  uint16_t *dh = device_alloc<uint16_t>((size_t)max_rows * f);
  float *dw2 = device_alloc<float>((size_t)E * d * f);
  int64_t *offsets = device_alloc<int64_t>(E + 1);
  CUDA_OK(cudaDeviceSynchronize());

  for (int64_t tokens : token_counts) {
    for (int zipf = 0; zipf < 2; zipf++) {
      const auto sizes = route(m, tokens, zipf != 0, 1000 + tokens);
      std::vector<int64_t> off(E + 1, 0);
      for (int64_t e = 0; e < E; e++) off[e + 1] = off[e] + sizes[e];
      const int64_t rows = off[E];
      CUDA_OK(cudaMemcpy(offsets, off.data(), (E + 1) * sizeof(int64_t), cudaMemcpyHostToDevice));
      const char *routing = zipf ? "zipf1.2" : "balanced";
      const Timing none;

      /* swiglu: [rows, d] x w13_e [2f, d]^T */
      {
        const double flop = 2.0 * rows * 2 * f * d;
        Timing ours = timer.time([&] {
          return moe4j_cuda_grouped_gemm_swiglu_forward(kBF16, x, w13, kBF16, h, gate_up, offsets, E, rows, f, d, nullptr);
        });
        Timing dense = none, loop = none;
        if (have_cublas) {
          dense = timer.time([&] { return moe4j_cuda_cublas_gemm(kBF16, x, w13, kBF16, y, rows, 2 * f, d, nullptr); });
          loop = timer.time([&] {
            for (int64_t e = 0; e < E; e++) {
              if (sizes[e] == 0) continue;
              int32_t s = moe4j_cuda_cublas_gemm(kBF16, x + off[e] * d, w13 + e * 2 * f * d, kBF16,
                                                 gate_up + off[e] * 2 * f, sizes[e], 2 * f, d, nullptr);
              if (s != MOE4J_OK) return s;
            }
            return (int32_t)MOE4J_OK;
          });
        }
        print_row(m, tokens, routing, "swiglu", flop, ours, dense, loop);
      }
      /* down: [rows, f] x w2_e [d, f]^T */
      {
        const double flop = 2.0 * rows * d * f;
        Timing ours = timer.time([&] {
          return moe4j_cuda_grouped_gemm_forward(kBF16, h, w2, kBF16, y, offsets, E, rows, d, f, nullptr, 0, nullptr);
        });
        Timing dense = none, loop = none;
        if (have_cublas) {
          dense = timer.time([&] { return moe4j_cuda_cublas_gemm(kBF16, h, w2, kBF16, y, rows, d, f, nullptr); });
          loop = timer.time([&] {
            for (int64_t e = 0; e < E; e++) {
              if (sizes[e] == 0) continue;
              int32_t s = moe4j_cuda_cublas_gemm(kBF16, h + off[e] * f, w2 + e * d * f, kBF16,
                                                 y + off[e] * d, sizes[e], d, f, nullptr);
              if (s != MOE4J_OK) return s;
            }
            return (int32_t)MOE4J_OK;
          });
        }
        print_row(m, tokens, routing, "down", flop, ours, dense, loop);
      }
      /* dgrad of down: dh [rows, f] = dy [rows, d] . w2_e [d, f]; proxy: a [rows, d] . b [f, d]^T */
      {
        const double flop = 2.0 * rows * d * f;
        Timing ours = timer.time([&] {
          return moe4j_cuda_grouped_gemm_dgrad(kBF16, dy, w2, kBF16, dh, offsets, E, rows, d, f, 0, nullptr);
        });
        Timing dense = none, loop = none;
        if (have_cublas) {
          dense = timer.time([&] { return moe4j_cuda_cublas_gemm(kBF16, dy, w2, kBF16, dh, rows, f, d, nullptr); });
          loop = timer.time([&] {
            for (int64_t e = 0; e < E; e++) {
              if (sizes[e] == 0) continue;
              int32_t s = moe4j_cuda_cublas_gemm(kBF16, dy + off[e] * d, w2 + e * d * f, kBF16,
                                                 dh + off[e] * f, sizes[e], f, d, nullptr);
              if (s != MOE4J_OK) return s;
            }
            return (int32_t)MOE4J_OK;
          });
        }
        print_row(m, tokens, routing, "dgrad", flop, ours, dense, loop);
      }
      /* wgrad of down: dw2_e [d, f] = dy_e^T h_e; proxy: a [d, rows] . b [f, rows]^T */
      {
        const double flop = 2.0 * rows * d * f;
        Timing ours = timer.time([&] {
          return moe4j_cuda_grouped_gemm_wgrad(kBF16, dy, h, kF32, dw2, offsets, E, rows, d, f, 0, nullptr);
        });
        Timing dense = none, loop = none;
        if (have_cublas) {
          dense = timer.time([&] { return moe4j_cuda_cublas_gemm(kBF16, dy, h, kF32, dw2, d, f, rows, nullptr); });
          loop = timer.time([&] {
            for (int64_t e = 0; e < E; e++) {
              if (sizes[e] == 0) continue;
              int32_t s = moe4j_cuda_cublas_gemm(kBF16, dy + off[e] * d, h + off[e] * f, kF32,
                                                 dw2 + e * d * f, d, f, sizes[e], nullptr);
              if (s != MOE4J_OK) return s;
            }
            return (int32_t)MOE4J_OK;
          });
        }
        print_row(m, tokens, routing, "wgrad", flop, ours, dense, loop);
      }
    }
  }
  cudaFree(w13);
  cudaFree(w2);
  cudaFree(x);
  cudaFree(dy);
  cudaFree(h);
  cudaFree(gate_up);
  cudaFree(y);
  cudaFree(dh);
  cudaFree(dw2);
  cudaFree(offsets);
}

}  // namespace

int main(int argc, char **argv) {
  const char *filter = nullptr;
  int reps = 20;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::max(3, atoi(argv[++i]));
    else filter = argv[i];
  }
  int32_t count = 0;
  if (moe4j_cuda_device_count(&count) != MOE4J_OK) {
    printf("bench_grouped_gemm: skipped: %s\n", moe4j_cuda_last_error());
    return 77;
  }
  cudaDeviceProp prop;
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  const char *cublas = moe4j_cuda_cublas_library();
  const bool have_cublas = cublas[0] != '\0';
  printf("bench_grouped_gemm: %s (sm_%d%d, %d SMs), cuBLAS %s, bf16 in/out (wgrad: f32 dw), "
         "L2 flushed, median of <= %d reps, peak %.0f TFLOP/s\n",
         prop.name, prop.major, prop.minor, prop.multiProcessorCount,
         have_cublas ? cublas : "not found (baselines n/a)", reps, kPeakTflops);
  printf("%-10s %6s %-8s %-6s | %9s %-17s %7s %6s | %9s %7s | %9s %7s | %6s %6s\n", "model",
         "tokens", "routing", "op", "ours ms", " [min..max]", "TFLOP/s", "peak", "dense ms",
         "TFLOP/s", "loop ms", "TFLOP/s", "dense/", "loop/");
  printf("%-10s %6s %-8s %-6s | %9s %-17s %7s %6s | %9s %7s | %9s %7s | %6s %6s\n", "", "", "",
         "", "", "", "", "", "(cuBLAS)", "", "(per-exp)", "", "ours", "ours");
  const std::vector<Model> models = {
      {"mixtral", 4096, 14336, 8, 2},
      {"olmoe", 2048, 1024, 64, 8},
      {"fine128", 2048, 768, 128, 8},
      {"fine256", 2048, 512, 256, 8},
  };
  Timer timer(reps);
  for (const Model &m : models) {
    if (filter != nullptr && strstr(m.name, filter) == nullptr) continue;
    bench_model(m, timer, have_cublas);
  }
  return 0;
}
