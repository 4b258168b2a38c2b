/*
 * Portability for index math and numerics shared by CUDA kernels and their C++ CPU twins.
 * MOE4J_HD marks a function usable on host and device; under g++ it is a plain inline function,
 * so the CPU tests exercise exactly the code the GPU runs.
 */
#pragma once
#include <stdint.h>

#ifdef __CUDACC__
#define MOE4J_HD __host__ __device__ __forceinline__
#else
#define MOE4J_HD inline
#endif

/* Unroll the next loop (fully, or n times): nvcc's `#pragma unroll` in device code, GCC's in host
 * code (the CPU twins and the warp-emulator tests that run kernel code), nothing elsewhere. */
#define MOE4J_PRAGMA(x) _Pragma(#x)
#if defined(__CUDA_ARCH__)
#define MOE4J_UNROLL _Pragma("unroll")
#define MOE4J_UNROLL_N(n) MOE4J_PRAGMA(unroll n)
#elif defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define MOE4J_UNROLL _Pragma("GCC unroll 16")
#define MOE4J_UNROLL_N(n) MOE4J_PRAGMA(GCC unroll n)
#else
#define MOE4J_UNROLL
#define MOE4J_UNROLL_N(n)
#endif

/* A kernel's block-scope static __shared__ array (the warp emulator makes it a function-local
 * static, native/tests/warp_emulator.h). */
#ifndef MOE4J_STATIC_SHARED
#define MOE4J_STATIC_SHARED __shared__
#endif
