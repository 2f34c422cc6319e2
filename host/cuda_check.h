// Error checking for the CUDA runtime: every CUDA call is checked; the message names the call,
// the file and the line. Also brings REQUIRE (host/require.h), so CUDA code needs one include.
//
// The one home of these checks: kernels/common.cuh, the trainer, the NCCL context and the
// workbenches all include this header. Needs the CUDA runtime headers (compile with nvcc).
#pragma once

#include <cstdio>
#include <cstdlib>

#include <cuda_runtime.h>

#include "host/require.h"

inline void cuda_check_impl(cudaError_t status, const char* call, const char* file, int line) {
    if (status != cudaSuccess) {
        std::fprintf(stderr, "CUDA error: %s\n  in %s\n  at %s:%d\n", cudaGetErrorString(status), call, file,
                     line);
        std::exit(EXIT_FAILURE);
    }
}
#define CUDA_CHECK(call) cuda_check_impl((call), #call, __FILE__, __LINE__)
// After a kernel launch: catches bad launch configurations immediately (not at the next sync).
#define CUDA_CHECK_LAUNCH() cuda_check_impl(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
