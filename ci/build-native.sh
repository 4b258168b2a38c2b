#!/usr/bin/env bash
# Builds libmoe4j_cpu.so (always) and libmoe4j_cuda.so (when nvcc is found) with CMake into
# build/native, keeps the full build log (with -Xptxas -v register/spill reports) in
# build/native/build.log, and copies the libraries into the directory given as $1 (the core jar's
# resource folder). Called by `mvn verify`; usable by hand.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:?usage: build-native.sh DEST_DIR}"
build="$root/build/native"
jobs="$(nproc 2>/dev/null || echo 2)"

mkdir -p "$build" "$dest"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log"; echo "moe4j: CMake configure failed (log: $build/configure.log)" >&2; exit 1; }
grep -E "moe4j:|CUDA" "$build/configure.log" || true
cmake --build "$build" -j "$jobs" >"$build/build.log" 2>&1 || {
  tail -n 80 "$build/build.log"; echo "moe4j: native build failed (log: $build/build.log)" >&2; exit 1; }

cp "$build/lib/libmoe4j_cpu.so" "$dest/"
if [ -f "$build/lib/libmoe4j_cuda.so" ]; then
  cp "$build/lib/libmoe4j_cuda.so" "$dest/"
  spills=$(grep -c "[1-9][0-9]* bytes spill stores" "$build/build.log" || true)
  echo "moe4j: built libmoe4j_cpu.so and libmoe4j_cuda.so (ptxas: $spills kernel variants with spill stores; see $build/build.log)"
else
  rm -f "$dest/libmoe4j_cuda.so"
  echo "moe4j: no CUDA toolkit found: built libmoe4j_cpu.so only (the cuda backend will report 'library not built')"
fi
