/* The router losses (balance loss and gradient, z-loss, bias update) CUDA kernels (kernels/router_losses_kernels.cuh, the very code kernels/router_losses.cu compiles for
 * the GPU) run on the CPU under the warp emulator (warp_emulator.h), launched as the .cu entry
 * points launch them, against the CPU twin with the GPU test's rules
 * (kernels/tests/test_router_losses.cpp): the balance loss, its gradient and the bias update bitwise, the z-loss within 1e-5 (reordered exp sums). Grids of grid-stride kernels are kept small so
 * every block loops.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "check.h"
#include "emulated_compare.h"
#include "moe4j.h"
#include "numerics.h"
#include "warp_emulator.h"

/* the kernels under test */
#include "../../kernels/router_losses_kernels.cuh"

using namespace moe4j;
using namespace emulated_compare;

namespace {

/* ---- router losses: router_losses.cu's launch sequences ---- */

void balance_grad(const int32_t *ids, int64_t T, int64_t E, int k, float coef, float *d) {
  const int64_t chunk = E < kCountChunk ? E : kCountChunk;
  const int64_t rows_per_block = (kGradElems + chunk - 1) / chunk, row_blocks = (T + rows_per_block - 1) / rows_per_block;
  emu::run_grid(dim3{(unsigned)row_blocks, (unsigned)((E + kCountChunk - 1) / kCountChunk), 1}, kGradThreads,
                [&] { balance_grad_kernel(ids, T, E, k, coef, d, rows_per_block); });
}

void router_losses_case(int64_t T, int64_t E, int k) {
  std::vector<float> scores = check::randn(T * E, 41 + E), logits = check::randn(T * E, 42 + E, 2.0f);
  for (float &s : scores) s = fabsf(s) / 4;
  std::vector<int32_t> ids(T * k);
  for (int64_t i = 0; i < T * k; i++) ids[i] = (int32_t)((i * 2654435761u) % (uint64_t)E);
  const float coef = 0.01f;
  /* balance loss and gradient: bitwise */
  std::vector<float> out(1), d(T * E, 0.5f), gout(1, NAN), gd(T * E, 0.5f);
  CHECK_STATUS(moe4j_cpu_router_balance_loss(scores.data(), ids.data(), T, E, k, coef, out.data(), d.data()), MOE4J_OK);
  emu::run_grid(dim3{1, 1, 1}, kLossThreads, [&] { balance_loss_kernel(scores.data(), ids.data(), T, E, k, coef, gout.data()); });
  balance_grad(ids.data(), T, E, k, coef, gd.data());
  EXPECT(same_bytes(gout, out) && same_bytes(gd, d), "balance loss (bitwise)", T, E);
  std::vector<float> rout(1, NAN), rd(T * E, 0.5f);
  emu::run_grid(dim3{1, 1, 1}, 32, [&] { if (threadIdx.x == 0) balance_loss_ref(scores.data(), ids.data(), T, E, k, coef, rout.data(), rd.data()); });
  EXPECT(same_bytes(rout, out) && same_bytes(rd, d), "balance loss reference (bitwise)", T, E);
  /* z-loss: a reordered sum of exps */
  std::vector<float> z(1), dz(T * E, 0.5f), gz(1, NAN), gdz(T * E, 0.5f);
  CHECK_STATUS(moe4j_cpu_router_z_loss(logits.data(), T, E, coef, z.data(), dz.data()), MOE4J_OK);
  emu::run_grid(dim3{2, 1, 1}, kZThreads, [&] { z_loss_grad_kernel(logits.data(), T, E, coef, gdz.data()); });
  emu::run_grid(dim3{1, 1, 1}, kLossThreads, [&] { z_loss_kernel(logits.data(), T, E, coef, gz.data()); });
  EXPECT(close(gz, z, 1e-5, 0.0) && close(gdz, dz, 1e-5, 1e-7), "z-loss", T, E);
  std::vector<float> rz(1, NAN), rdz(T * E, 0.5f);
  emu::run_grid(dim3{1, 1, 1}, 32, [&] { if (threadIdx.x == 0) z_loss_ref(logits.data(), T, E, coef, rz.data(), rdz.data()); });
  EXPECT(close(rz, z, 1e-5, 0.0) && close(rdz, dz, 1e-5, 1e-7), "z-loss reference", T, E);
  /* bias update: bitwise */
  std::vector<int64_t> counts(E);
  for (int64_t e = 0; e < E; e++) counts[e] = (e * 37) % 11;
  std::vector<float> bias = check::randn(E, 43, 0.1f), gbias = bias;
  CHECK_STATUS(moe4j_cpu_router_bias_update(bias.data(), counts.data(), E, 0.001f), MOE4J_OK);
  emu::run_grid(dim3{1, 1, 1}, kLossThreads, [&] { bias_update_kernel(gbias.data(), counts.data(), E, 0.001f); });
  EXPECT(same_bytes(gbias, bias), "bias update (bitwise)", T, E);
  std::vector<float> rbias = check::randn(E, 43, 0.1f);
  emu::run_grid(dim3{1, 1, 1}, 32, [&] { if (threadIdx.x == 0) bias_update_ref(rbias.data(), counts.data(), E, 0.001f); });
  EXPECT(same_bytes(rbias, bias), "bias update reference (bitwise)", T, E);
}

}  // namespace

TEST_CASE(router_losses) {
  router_losses_case(300, 8, 2);
  router_losses_case(40, 2100, 4); /* more experts than one 2048-expert count chunk */
}

TEST_MAIN("router_losses_emulated")
