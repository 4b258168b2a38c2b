#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU, CUDA toolkit and CMake (no JDK needed):
#   1. builds both native libraries with CMake (Release, -Xptxas -v kept in the log),
#   2. runs every C++ test (the cpu-labeled ones in parallel, then the gpu-labeled CUDA-vs-CPU
#      tests one at a time),
#   3. runs each GPU test under compute-sanitizer (memcheck, racecheck),
#   4. runs the GPU benchmarks (kernels/bench: grouped GEMM vs cuBLAS, flash attention), unless
#      SKIP_BENCH=1,
#   5. prints a summary. Logs go to $OUT (if set) or build/gpu-check/.
# Usage: ci/gpu-check.sh [ctest -R regex]
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build/gpu-check"
logs="${OUT:-$build/logs}"
filter="${1:-.}"
mkdir -p "$build" "$logs"
jobs="$(nproc 2>/dev/null || echo 4)"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$logs/gpu.txt"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$logs/configure.log" 2>&1 || { cat "$logs/configure.log"; exit 1; }
cmake --build "$build" -j "$jobs" >"$logs/build.log" 2>&1 || { tail -n 60 "$logs/build.log"; exit 1; }
echo "ptxas: kernel variants with spill stores: $(grep -c '[1-9][0-9]* bytes spill stores' "$logs/build.log")"

status=0
# CPU tests (twins, argument checks, the CUDA device code under the warp emulator) in parallel,
# then the GPU tests one at a time (one device).
ctest --test-dir "$build" --output-on-failure -R "$filter" -L cpu -j "$jobs" 2>&1 | tee "$logs/ctest.log" || status=1
ctest --test-dir "$build" --output-on-failure -R "$filter" -L gpu 2>&1 | tee -a "$logs/ctest.log" || status=1
if grep -q "(Skipped)" "$logs/ctest.log" && grep -q "gpu_" "$logs/ctest.log"; then
  echo "WARNING: GPU tests were skipped: no usable GPU?"; status=1
fi

if command -v compute-sanitizer >/dev/null 2>&1; then
  for t in "$build"/bin/gpu_test_*; do
    name="$(basename "$t")"
    [[ "$name" =~ $filter ]] || [ "$filter" = "." ] || continue
    for tool in memcheck racecheck; do
      if compute-sanitizer --tool "$tool" --error-exitcode 9 "$t" >"$logs/sanitizer_${tool}_$name.log" 2>&1; then
        echo "compute-sanitizer $tool $name: clean"
      else
        echo "compute-sanitizer $tool $name: ERRORS (see $logs/sanitizer_${tool}_$name.log)"; status=1
        tail -n 20 "$logs/sanitizer_${tool}_$name.log"
      fi
    done
  done
else
  echo "compute-sanitizer not found: skipped"; status=1
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  for b in "$build"/bin/bench_*; do
    [ -x "$b" ] || continue
    name="$(basename "$b")"
    [[ "$name" == bench_gemm_cpu || "$name" == bench_gemv_cpu ]] && continue  # CPU benchmarks
    echo "== $name"
    "$b" 2>&1 | tee "$logs/$name.txt" || { echo "$name failed"; status=1; }
  done
fi
echo "gpu-check: $([ $status -eq 0 ] && echo PASSED || echo FAILED)"
exit $status
