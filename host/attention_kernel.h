// Which attention kernels the model runs (kernels/attention.cuh; the trainer's --attention-kernel).
#pragma once

#include <string>
#include <utility>
#include <vector>

// The kernel families (kernels/attention.cuh describes each); every family computes the same
// function, and their O and lse agree.
enum class AttentionKernel { TensorCores, CudaCores, Hopper };

// What a run asks for. automatic: Hopper where it can run (a compute capability 9.0 GPU and an
// sm_90a build), else TensorCores. The others name a family, so that a run can compare them, or
// run on kernels that store with ordinary instructions: compute-sanitizer's initcheck does not
// see the Hopper kernels' TMA stores as initializing memory (make sanitize).
enum class AttentionKernelChoice { automatic, hopper, tensor_cores, cuda_cores };

// The flag's names for each choice (the trainer's option table and test_gpt2cu's parser).
inline const std::vector<std::pair<std::string, AttentionKernelChoice>>& attention_kernel_choices() {
    static const std::vector<std::pair<std::string, AttentionKernelChoice>> choices = {
        {"auto", AttentionKernelChoice::automatic},
        {"hopper", AttentionKernelChoice::hopper},
        {"tensor-cores", AttentionKernelChoice::tensor_cores},
        {"cuda-cores", AttentionKernelChoice::cuda_cores}};
    return choices;
}
