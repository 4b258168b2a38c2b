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
