// Parameter initialization on the GPU: normal samples from Philox + Box-Muller, so that even a
// 2.7B model starts in milliseconds, every rank draws the same weights from the same seed (no
// broadcast needed), and the draw does not depend on the launch configuration.
#pragma once

#include "kernels/common.cuh"

// out[i] = std * normal(seed, stream_id, i). One Philox call gives four uniforms -> four normals.
__global__ void fill_normal_kernel(float* out, int64_t n, float std, uint64_t seed, uint64_t stream_id) {
    const int64_t group = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (group * 4 >= n) return;
    DropoutParams generator;  // used only for its Philox stream (seed, offset)
    generator.seed = seed;
    generator.offset = stream_id;
    const uint4 words = generator.random_words(static_cast<uint64_t>(group));
    // uniform in (0, 1]: log() must never see 0.
    const float u0 = 1.0f - uniform_from_bits(words.x), u1 = uniform_from_bits(words.y);
    const float u2 = 1.0f - uniform_from_bits(words.z), u3 = uniform_from_bits(words.w);
    const float r0 = sqrtf(-2.0f * logf(u0)), r1 = sqrtf(-2.0f * logf(u2));
    float s0, c0, s1, c1;
    sincospif(2.0f * u1, &s0, &c0);
    sincospif(2.0f * u3, &s1, &c1);
    const float normals[4] = {r0 * c0, r0 * s0, r1 * c1, r1 * s1};
    for (int j = 0; j < 4; ++j)
        if (group * 4 + j < n) out[group * 4 + j] = std * normals[j];
}

// out (n) ~ N(0, std^2); the stream id separates the tensors of one model.
inline void fill_normal(float* out, int64_t n, float std, uint64_t seed, uint64_t stream_id, cudaStream_t stream) {
    const int threads = 256;
    const int64_t groups = ceil_div((long long)n, 4LL);
    fill_normal_kernel<<<(unsigned)ceil_div((long long)groups, (long long)threads), threads, 0, stream>>>(out, n, std, seed, stream_id);
    CUDA_CHECK_LAUNCH();
}

__global__ void fill_constant_kernel(float* out, int64_t n, float value) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) out[i] = value;
}

inline void fill_constant(float* out, int64_t n, float value, cudaStream_t stream) {
    const int threads = 256;
    fill_constant_kernel<<<(unsigned)ceil_div((long long)n, (long long)threads), threads, 0, stream>>>(out, n, value);
    CUDA_CHECK_LAUNCH();
}
