// Peak tensor throughput of known GPUs and the model-FLOPs utilization (MFU) built on it.
//
// MFU = tokens/s * FLOPs per token / peak, with FLOPs per token = 6*N + 6*L*d_model*T
// (N = every parameter, padded vocabulary included; the second term is causal attention's
// QK^T and PV products, forward and backward), the same count llm.c reports, so the figures
// compare. The peak is the dense (no 2:4 sparsity) 16-bit tensor-core rate with fp32
// accumulation from NVIDIA's datasheets; a GPU not in the table has no peak, and its MFU is
// reported as "n/a" rather than guessed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

struct GpuPeak {
    std::string model;                   // the table row that matched, or "unknown"
    std::optional<double> dense_tflops;  // absent for an unknown GPU
};

// `device_name` as cudaDeviceProp::name reports it, e.g. "NVIDIA H100 80GB HBM3".
GpuPeak gpu_peak_for(const std::string& device_name);

// FLOPs of one training token (forward + backward) of a model with `num_params` parameters.
int64_t flops_per_token(int64_t num_params, int n_layer, int n_embd, int seq_len);

// Fraction of the peak (0.45 = 45%); absent when the peak is unknown or the inputs are not
// positive finite numbers, so no caller ever prints a negative or placeholder MFU.
std::optional<double> model_flops_utilization(double tokens_per_s, double flops_per_token,
                                              std::optional<double> peak_tflops);
