// --device-batch auto: the device batch B chosen from the GPU's memory, as the seed picks its
// per-GPU batch from the card's memory, with the global batch kept.
//
// The rule: B is the largest divisor of the sequences each GPU takes per optimizer step
// (sequences_per_gpu = ceil(global batch tokens / (GPUs x T))) whose memory plan (parameters,
// gradients, AdamW state, activations for B x T) fits the budget. A divisor keeps the step's
// tokens exactly what they are with any other divisor, so only the gradient accumulation
// (sequences_per_gpu / B) changes; for the seed's batches, powers of two over powers of two, the
// divisors are powers of two.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

struct DeviceBatchChoice {
    int batch = 1;        // the largest divisor that fits; 1 when none does (fits false)
    bool fits = false;
    std::string reason;   // one line for the start-up: the choice and why
};

// sequences_per_gpu >= 1; bytes_for_batch(B): device bytes the run takes with device batch B
// (growing with B); budget_bytes: what it may take. Divisors above max_batch are not tried.
DeviceBatchChoice choose_device_batch(int64_t sequences_per_gpu, size_t budget_bytes,
                                      const std::function<size_t(int)>& bytes_for_batch, int max_batch);
