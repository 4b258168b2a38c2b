/* The grouped-expert GEMM CUDA kernels (kernels/grouped_gemm_kernels.cuh, the very code
 * grouped_gemm.cu compiles for the GPU) run on the CPU under the warp emulator
 * (warp_emulator.h), against the fp64 references and the CPU twin of the GPU test
 * (kernels/tests/grouped_gemm_expect.h). What this checks without a GPU: the tensor-core kernel's
 * fragment plumbing (ldmatrix / ldmatrix.trans on the two swizzled tile layouts, the mma.sync
 * fragment order, the SwiGLU gate/up block pairing), the 4-stage cp.async rotation (also with
 * copies landing only at their wait_group), zero-filled M/N/K tails, the device-side tile schedule
 * (shared-memory prefix scan over groups, including more groups than threads, band raster,
 * grid-stride persistent blocks that each run several tiles), every epilogue (row scale,
 * accumulate, f32 / bf16 pairs, gate_up), and the SIMT and reference kernels.
 * Grids are small on purpose (1-3 blocks), so every block walks several tiles and reuses its
 * pipeline stages across tiles. Not emulated: timing, bank conflicts, occupancy.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "check.h"
#include "moe4j.h"
#include "numerics.h"
#include "warp_emulator.h"

/* the kernels under test */
#include "../../kernels/grouped_gemm_kernels.cuh"
#include "../../kernels/tests/grouped_gemm_expect.h"

using namespace moe4j;
using namespace grouped_gemm_test;

namespace {

enum class Path { TensorCore, Simt, Reference };

const char *path_name(Path p) {
  return p == Path::TensorCore ? "tensor cores" : p == Path::Simt ? "SIMT" : "reference";
}

/* One launch of the kernel `path` selects, as grouped_gemm.cu's launch_* would make it, with
 * `grid` blocks. */
template <GemmKind KIND, typename T, typename TO>
void emulate(Path path, const GemmArgs &a, unsigned grid) {
  const dim3 g{grid, 1, 1};
  if (path == Path::TensorCore) {
    if constexpr (sizeof(T) == 2) emu::run_grid(g, kTcThreads, [&] { grouped_gemm_tc_kernel<KIND, TO>(a); });
  } else if (path == Path::Simt) {
    emu::run_grid(g, kSimtThreads, [&] { grouped_gemm_simt_kernel<KIND, T, TO>(a); });
  } else {
    emu::run_grid(g, kRefThreads, [&] {
      if constexpr (KIND == GemmKind::Forward) grouped_gemm_forward_ref<T, TO>(a);
      else if constexpr (KIND == GemmKind::Dgrad) grouped_gemm_dgrad_ref<T, TO>(a);
      else if constexpr (KIND == GemmKind::Wgrad) grouped_gemm_wgrad_ref<T, TO>(a);
      else grouped_gemm_swiglu_ref<T, TO>(a);
    });
  }
}

/* All four ops of one problem through `path`, against the fp64 references and the CPU twin. */
template <typename S, typename O>
void run_problem(const Problem &p, Path path, int32_t accumulate, unsigned grid) {
  using Tin = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  using Tout = std::conditional_t<sizeof(O) == 2, bf16_t, float>;
  const int64_t E = p.groups(), T = p.rows(), n = p.n, k = p.k;
  const bool acc = accumulate != 0;
  const Inputs<S, O> in(p);
  const Outputs<O> cpu = cpu_twin(p, in, accumulate);
  const auto off = p.offsets();
  const int64_t *o = p.dense ? nullptr : off.data();

  Outputs<O> got{guarded(acc ? in.y_prior : std::vector<O>(T * n, sentinel<O>())),
                 guarded(acc ? in.dx_prior : std::vector<O>(T * k, sentinel<O>())),
                 guarded(acc ? in.dw_prior : std::vector<O>(E * n * k, sentinel<O>())),
                 guarded(std::vector<O>(T * n, sentinel<O>())),
                 guarded(std::vector<O>(T * 2 * n, sentinel<O>()))};
  emulate<GemmKind::Forward, Tin, Tout>(path, GemmArgs{in.x.data(), in.w.data(), got.y.data(), nullptr, o, in.scale.data(), E, T, n, k, accumulate}, grid);
  emulate<GemmKind::Dgrad, Tin, Tout>(path, GemmArgs{in.dy.data(), in.w.data(), got.dx.data(), nullptr, o, nullptr, E, T, n, k, accumulate}, grid);
  emulate<GemmKind::Wgrad, Tin, Tout>(path, GemmArgs{in.dy.data(), in.x.data(), got.dw.data(), nullptr, o, nullptr, E, T, n, k, accumulate}, grid);
  emulate<GemmKind::Swiglu, Tin, Tout>(path, GemmArgs{in.x.data(), in.w13.data(), got.h.data(), got.gu.data(), o, nullptr, E, T, n, k, 0}, grid);
  CHECK(guard_intact(got.y, T * n) && guard_intact(got.dx, T * k) && guard_intact(got.dw, E * n * k) &&
        guard_intact(got.h, T * n) && guard_intact(got.gu, T * 2 * n));
  for (auto *v : {&got.y, &got.dx, &got.dw, &got.h, &got.gu}) v->resize(v->size() - kGuard);

  const int bad = count_all_bad(p, in, got, cpu, acc);
  if (bad) {
    fprintf(stderr, "    %s in %s out %s E %lld T %lld n %lld k %lld %s acc %d grid %u late cp.async %d: %d bad\n",
            p.name, sizeof(S) == 4 ? "F32" : "BF16", sizeof(O) == 4 ? "F32" : "BF16", (long long)E,
            (long long)T, (long long)n, (long long)k, path_name(path), accumulate, grid,
            (int)emu::g_late_cp_async, bad);
    CHECK(bad == 0);
  }
  /* swiglu without gate_up writes the same h */
  std::vector<O> h2(T * n, sentinel<O>());
  emulate<GemmKind::Swiglu, Tin, Tout>(path, GemmArgs{in.x.data(), in.w13.data(), h2.data(), nullptr, o, nullptr, E, T, n, k, 0}, grid);
  CHECK(h2 == got.h);
}


/* Offsets the host cannot check (negative, decreasing, past total_rows, or ending before it): each
 * kernel clamps group e to [clamp(o[e], 0, T), clamp(o[e + 1], that, T)). `bad` with T rows must
 * leave the rows no group covers untouched and write nothing past the outputs; with
 * `check_values`, give exactly the outputs of the well-formed problem `clamped` (its first rows):
 * x and dy rows past it hold NaN, so reading one into a result shows. (A decreasing offset makes
 * the next group overlap an earlier one: those rows get undefined values, so no value check.) */
template <typename S>
void run_clamped(const Problem &clamped, const std::vector<int64_t> &bad, int64_t T, Path path,
                 bool check_values) {
  using Tin = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  const int64_t E = clamped.groups(), n = clamped.n, k = clamped.k, Tc = clamped.rows();
  const Inputs<S, float> in(clamped);
  const Outputs<float> cpu = cpu_twin(clamped, in, 0);
  auto padded = [&](const std::vector<S> &v, int64_t cols) {
    std::vector<S> out(v);
    out.resize(T * cols, encode<S>({NAN})[0]);
    return out;
  };
  const std::vector<S> x = padded(in.x, k), dy = padded(in.dy, n);
  std::vector<float> scale(in.scale);
  scale.resize(T, NAN);
  const float s = sentinel<float>();
  Outputs<float> got{guarded(std::vector<float>(T * n, s)), guarded(std::vector<float>(T * k, s)),
                     guarded(std::vector<float>(E * n * k, s)), guarded(std::vector<float>(T * n, s)),
                     guarded(std::vector<float>(T * 2 * n, s))};
  const int64_t *o = bad.data();
  emulate<GemmKind::Forward, Tin, float>(path, GemmArgs{x.data(), in.w.data(), got.y.data(), nullptr, o, scale.data(), E, T, n, k, 0}, 2);
  emulate<GemmKind::Dgrad, Tin, float>(path, GemmArgs{dy.data(), in.w.data(), got.dx.data(), nullptr, o, nullptr, E, T, n, k, 0}, 2);
  emulate<GemmKind::Wgrad, Tin, float>(path, GemmArgs{dy.data(), x.data(), got.dw.data(), nullptr, o, nullptr, E, T, n, k, 0}, 2);
  emulate<GemmKind::Swiglu, Tin, float>(path, GemmArgs{x.data(), in.w13.data(), got.h.data(), got.gu.data(), o, nullptr, E, T, n, k, 0}, 2);
  CHECK(guard_intact(got.y, T * n) && guard_intact(got.dx, T * k) && guard_intact(got.dw, E * n * k) &&
        guard_intact(got.h, T * n) && guard_intact(got.gu, T * 2 * n));
  /* rows past the clamped problem: untouched */
  auto untouched = [&](const std::vector<float> &v, int64_t cols) {
    for (int64_t i = Tc * cols; i < T * cols; i++)
      if (memcmp(&v[i], &s, sizeof s) != 0) return false;
    return true;
  };
  CHECK(untouched(got.y, n) && untouched(got.dx, k) && untouched(got.h, n) && untouched(got.gu, 2 * n));
  if (!check_values) return;
  Outputs<float> head{std::vector<float>(got.y.begin(), got.y.begin() + Tc * n),
                      std::vector<float>(got.dx.begin(), got.dx.begin() + Tc * k),
                      std::vector<float>(got.dw.begin(), got.dw.begin() + E * n * k),
                      std::vector<float>(got.h.begin(), got.h.begin() + Tc * n),
                      std::vector<float>(got.gu.begin(), got.gu.begin() + Tc * 2 * n)};
  const int bad_count = count_all_bad(clamped, in, head, cpu, false);
  if (bad_count) {
    fprintf(stderr, "    clamped offsets, %s, %s: %d bad\n", sizeof(S) == 2 ? "BF16" : "F32", path_name(path), bad_count);
    CHECK(bad_count == 0);
  }
}
}  // namespace

/* bf16 inputs, n and k multiples of 8: the tensor-core kernel. k = 136 is 5 k tiles (the 4-stage
 * pipeline wraps around, the last tile is a k tail of 8), n = 136 an n tail, groups of 0, 1, 3, 7, 130
 * rows (m tails, a group of two row tiles, empty groups in the prefix). */
TEST_CASE(tensor_core_kernel_ragged_groups) {
  const Problem ragged{"empty and tiny", {0, 3, 1, 0, 130, 7, 0}, false, 136, 136};
  run_problem<uint16_t, float>(ragged, Path::TensorCore, 0, 3);
  run_problem<uint16_t, uint16_t>(ragged, Path::TensorCore, 1, 2);
  run_problem<uint16_t, float>({"tile boundaries", {127, 128, 129, 1}, false, 64, 96}, Path::TensorCore, 1, 3);
  run_problem<uint16_t, uint16_t>({"dense, NULL offsets", {150}, true, 72, 40}, Path::TensorCore, 0, 2);
  run_problem<uint16_t, float>({"k below one k tile", {40, 90}, false, 24, 8}, Path::TensorCore, 0, 1);
}

/* More groups than the 256 threads of the prefix scan (each thread sums a chunk of groups),
 * Zipf-skewed, most of them empty or of a row or two. */
TEST_CASE(tensor_core_kernel_many_skewed_groups) {
  run_problem<uint16_t, float>({"E=600 zipf", zipf_sizes(600, 90, 31), false, 16, 16}, Path::TensorCore, 0, 2);
  run_problem<uint16_t, uint16_t>({"E=64 zipf", zipf_sizes(64, 200, 32), false, 24, 32}, Path::TensorCore, 1, 3);
}

/* The same kernel with every cp.async landing only at the wait_group that must cover it: a tile
 * read before its wait + barrier reads the poisoned (NaN) shared memory. */
TEST_CASE(tensor_core_pipeline_holds_when_cp_async_lands_late) {
  emu::g_late_cp_async = true;
  run_problem<uint16_t, float>({"empty and tiny", {0, 3, 1, 0, 130, 7, 0}, false, 136, 136}, Path::TensorCore, 1, 2);
  run_problem<uint16_t, uint16_t>({"E=64 zipf", zipf_sizes(64, 200, 33), false, 24, 32}, Path::TensorCore, 0, 3);
  emu::g_late_cp_async = false;
}

/* f32 inputs, and bf16 with dims that are not multiples of 8: the SIMT kernel. */
TEST_CASE(simt_kernel) {
  const Problem odd{"odd dims", {5, 0, 140, 33}, false, 130, 70};
  run_problem<float, float>(odd, Path::Simt, 0, 3);
  run_problem<float, uint16_t>(odd, Path::Simt, 1, 2);
  run_problem<uint16_t, uint16_t>(odd, Path::Simt, 1, 3);
  run_problem<float, float>({"E=300 zipf", zipf_sizes(300, 120, 34), false, 20, 12}, Path::Simt, 0, 2);
}

/* Bad device-side offsets on every path: a negative start, an empty group whose end lies before
 * its start, an end past total_rows, and offsets that stop before total_rows. */
TEST_CASE(bad_offsets_are_clamped_on_every_path) {
  const Problem clamped{"clamped", {10, 0, 20}, false, 24, 32};
  for (Path path : {Path::TensorCore, Path::Simt, Path::Reference}) {
    run_clamped<uint16_t>(clamped, {-7, 10, 10, 30}, 50, path, true); /* rows 30..49 in no group */
    run_clamped<uint16_t>(clamped, {0, 10, 10, 1000}, 30, path, true);
    run_clamped<uint16_t>(clamped, {0, 10, 4, 30}, 50, path, false);   /* decreasing: overlap */
  }
  run_clamped<float>(clamped, {-7, 10, 10, 30}, 50, Path::Simt, true);
}

TEST_CASE(reference_kernels) {
  const Problem odd{"odd dims", {5, 0, 140, 33}, false, 30, 70};
  run_problem<float, float>(odd, Path::Reference, 1, 3);
  run_problem<uint16_t, uint16_t>(odd, Path::Reference, 0, 2);
  run_problem<float, float>({"dense, NULL offsets", {50}, true, 24, 16}, Path::Reference, 0, 2);
}

TEST_MAIN("grouped_gemm_emulated")
