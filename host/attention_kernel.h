// Which attention kernels the model runs (kernels/attention.cuh; the trainer's --attention-kernel).
#pragma once

// The kernel families (kernels/attention.cuh describes each); every family computes the same
// function, and their O and lse agree.
enum class AttentionKernel { TensorCores, CudaCores, Hopper };

// What a run asks for. automatic: Hopper where it can run (a compute capability 9.0 GPU and an
// sm_90a build), else TensorCores. The others name a family, so that a run can compare them, or
// run on kernels that store with ordinary instructions: compute-sanitizer's initcheck does not
// see the Hopper kernels' TMA stores as initializing memory (make sanitize).
enum class AttentionKernelChoice { automatic, hopper, tensor_cores, cuda_cores };
