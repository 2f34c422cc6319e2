// Per-process GPU state, passed explicitly (no globals): the compute stream, the device's
// properties and peak rate (for MFU), and the cuBLASLt context.
#pragma once

#include <memory>

#include "host/gpu_specs.h"
#include "kernels/common.cuh"
#include "kernels/matmul.cuh"

struct GpuContext {
    cudaStream_t stream = nullptr;
    cudaDeviceProp props{};
    GpuPeak peak;
    std::unique_ptr<MatmulContext> matmul;

    explicit GpuContext(MatmulEngine matmul_engine) {
        int device = 0;
        CUDA_CHECK(cudaGetDevice(&device));
        CUDA_CHECK(cudaGetDeviceProperties(&props, device));
        CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        peak = gpu_peak_for(props.name);
        // Nothing timed unless the user of the context says so: the trainer times during its
        // first step and records the choices (train/matmul_tuning.cuh); evaluations replay them.
        matmul = std::make_unique<MatmulContext>(MatmulTuning::kAlwaysFused, matmul_engine);
    }
    ~GpuContext() {
        matmul.reset();
        cudaStreamDestroy(stream);
    }
    GpuContext(const GpuContext&) = delete;
    GpuContext& operator=(const GpuContext&) = delete;

    double memory_used_gb() const {
        size_t free_bytes = 0, total_bytes = 0;
        CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        return (total_bytes - free_bytes) / 1e9;
    }
};
