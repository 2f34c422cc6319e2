// Shared device-side building blocks: precision traits, 16-byte vector access, and the
// counter-based random numbers behind every dropout mask (error checking comes from
// host/cuda_check.h).
//
// Every kernel header in kernels/ includes this file. Nothing here holds state: launchers
// get their stream and library handles from their caller.
#pragma once

#include <cmath>
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "host/cuda_check.h"  // CUDA_CHECK, CUDA_CHECK_LAUNCH, REQUIRE

__host__ __device__ constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }
__host__ __device__ constexpr long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------------------------
// Precision traits. Kernels are templates over the 16-bit storage type `T`, one of
// __nv_bfloat16 and __half; arithmetic is always done in fp32.

template <typename T> __host__ __device__ inline float to_float(T x);
template <> __host__ __device__ inline float to_float<float>(float x) { return x; }
template <> __host__ __device__ inline float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __host__ __device__ inline float to_float<__half>(__half x) { return __half2float(x); }

template <typename T> __host__ __device__ inline T from_float(float x);
template <> __host__ __device__ inline float from_float<float>(float x) { return x; }
template <> __host__ __device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __host__ __device__ inline __half from_float<__half>(float x) { return __float2half(x); }

// Name of a storage type, for messages and benchmark tables.
template <typename T> constexpr const char* precision_name();
template <> constexpr const char* precision_name<float>() { return "fp32"; }
template <> constexpr const char* precision_name<__nv_bfloat16>() { return "bf16"; }
template <> constexpr const char* precision_name<__half>() { return "fp16"; }

// ---------------------------------------------------------------------------------------------
// 16-byte vectors: one 128-bit load or store per thread is what saturates HBM.

template <typename T> struct alignas(16) Vec16 {
    static constexpr int size = 16 / sizeof(T);
    T elements[size];
    __device__ float get(int i) const { return to_float(elements[i]); }
    __device__ void set(int i, float value) { elements[i] = from_float<T>(value); }
};

template <typename T> __device__ inline Vec16<T> load16(const T* address) {
    return *reinterpret_cast<const Vec16<T>*>(address);
}
// Streaming load for data read exactly once (keeps it from evicting reused data in L2).
template <typename T> __device__ inline Vec16<T> load16_streaming(const T* address) {
    Vec16<T> v;
    *reinterpret_cast<int4*>(&v) = __ldcs(reinterpret_cast<const int4*>(address));
    return v;
}
template <typename T> __device__ inline void store16(T* address, const Vec16<T>& v) {
    *reinterpret_cast<Vec16<T>*>(address) = v;
}

__host__ __device__ inline bool is_aligned16(const void* p) {
    return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

// ---------------------------------------------------------------------------------------------
// How a backward kernel writes a parameter gradient: `add` it to what the storage holds (later
// micro-steps of a step accumulate), or `store` it (the step's first micro-step: the storage was
// not cleared, and is not read, so whatever it held, NaN included, does not matter).
enum class GradWrite { add, store };

__device__ inline void write_gradient(float* target, float value, GradWrite write) {
    *target = write == GradWrite::add ? *target + value : value;
}

// ---------------------------------------------------------------------------------------------
// Asynchronous global -> shared copies (cp.async, sm_80+): the bytes land in shared memory without
// passing through registers, so a kernel can keep many rows or tiles in flight. Copies are
// committed in groups; cp_async_wait<n> waits until at most n of the calling thread's groups are
// still pending, which orders only that thread's own copies (others need a barrier after it).

__device__ inline uint32_t smem_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte copy that bypasses L1; an invalid source writes zeros (src-size 0).
__device__ inline void cp_async_16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ inline void cp_async_4(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_address(dst)), "l"(src),
                 "r"(valid ? 4 : 0)
                 : "memory");
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPendingGroups> __device__ inline void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPendingGroups) : "memory");
}
__device__ inline void cp_async_wait_all() { cp_async_wait<0>(); }

// Kernels with more than 48 KiB of dynamic shared memory must opt in, per kernel (host side; not a
// stream operation, so it may run while a CUDA graph is being captured).
template <typename Kernel> void allow_dynamic_smem(Kernel kernel, size_t bytes) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// ---------------------------------------------------------------------------------------------
// A value into device memory, in stream order: per-step settings that kernels replayed from a CUDA
// graph read at run time (train/step_graph.cuh). The value travels as the kernel's argument, which
// is copied at launch, so unlike cudaMemcpyAsync from host memory no host buffer must outlive it.

template <typename V> __global__ void store_value_kernel(V* destination, V value) { *destination = value; }

template <typename V> void store_on_device(V* destination, const V& value, cudaStream_t stream) {
    store_value_kernel<<<1, 1, 0, stream>>>(destination, value);
    CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// Warp and block reductions (fp32).

__device__ inline float warp_sum(float x) {
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}
__device__ inline float warp_max(float x) {
    for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
    return x;
}

// ---------------------------------------------------------------------------------------------
// Counter-based random numbers (Philox-4x32-10, Salmon et al., SC'11).
//
// A dropout mask is a pure function of (seed, offset, element index): backward regenerates
// exactly the mask forward used, nothing mask-sized is stored, and the result does not depend
// on the launch configuration. The trainer gives every dropout site of every micro-step its own
// offset (see DropoutParams).

struct PhiloxState {
    uint32_t counter[4];
    uint32_t key[2];
};

__host__ __device__ inline uint4 philox4x32_10(uint4 counter, uint2 key) {
    constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
    constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
    for (int round = 0; round < 10; ++round) {
        const uint64_t product0 = static_cast<uint64_t>(kMul0) * counter.x;
        const uint64_t product1 = static_cast<uint64_t>(kMul1) * counter.z;
        const uint32_t hi0 = static_cast<uint32_t>(product0 >> 32), lo0 = static_cast<uint32_t>(product0);
        const uint32_t hi1 = static_cast<uint32_t>(product1 >> 32), lo1 = static_cast<uint32_t>(product1);
        counter = make_uint4(hi1 ^ counter.y ^ key.x, lo1, hi0 ^ counter.w ^ key.y, lo0);
        key.x += kWeyl0;
        key.y += kWeyl1;
    }
    return counter;
}

// Uniform float in [0, 1) from the top 24 bits of a random word.
__host__ __device__ inline float uniform_from_bits(uint32_t bits) {
    return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// Dropout for one call site: element i is kept when uniform(seed, offset, i) >= p and then
// scaled by 1/(1-p). p == 0 disables dropout (and the random number generation).
//
// Part of the offset may live in device memory. A CUDA graph replays its kernels with the
// arguments they were captured with, yet every micro-step needs masks of its own: a replayed pass
// gets offset = the site's index and offset_base = a device word that the trainer sets to the
// micro-step's share before each replay (train/step_graph.cuh). Kernels call resolved() once at
// entry, so the word is read once and the generator's loops see a plain offset; random_words()
// on unresolved params adds the word too, so a kernel that skips resolved() is slower, not wrong.
struct DropoutParams {
    float p = 0.0f;
    uint64_t seed = 0;
    uint64_t offset = 0;
    const uint64_t* offset_base = nullptr;  // device memory, added to offset; nullptr: offset is all of it

    __host__ __device__ bool enabled() const { return p > 0.0f; }
    __host__ __device__ float scale() const { return 1.0f / (1.0f - p); }

    // The same site with offset_base folded into offset (device code: the word is in device memory).
    __device__ DropoutParams resolved() const {
        DropoutParams plain = *this;
        plain.offset = full_offset();
        plain.offset_base = nullptr;
        return plain;
    }
    __host__ __device__ uint64_t full_offset() const {
#ifdef __CUDA_ARCH__
        return offset_base ? offset + *offset_base : offset;
#else
        REQUIRE(offset_base == nullptr, "DropoutParams: offset_base is device memory; the host cannot read it");
        return offset;
#endif
    }

    // Four consecutive elements share one Philox call: elements 4k..4k+3 use its four words.
    __host__ __device__ uint4 random_words(uint64_t group_of_four) const {
        const uint64_t offset_now = full_offset();
        const uint4 counter = make_uint4(static_cast<uint32_t>(group_of_four),
                                         static_cast<uint32_t>(group_of_four >> 32),
                                         static_cast<uint32_t>(offset_now), static_cast<uint32_t>(offset_now >> 32));
        return philox4x32_10(counter, make_uint2(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)));
    }
    __host__ __device__ bool keep(uint64_t element) const {
        const uint4 words = random_words(element >> 2);
        const uint32_t lane = static_cast<uint32_t>(element & 3);
        const uint32_t word = lane == 0 ? words.x : lane == 1 ? words.y : lane == 2 ? words.z : words.w;
        return uniform_from_bits(word) >= p;
    }
};

// ---------------------------------------------------------------------------------------------
// Attention-probability dropout: its own mask, 16 random bits per element instead of 32.
//
// The T x T probabilities of every (batch, head) outnumber the elements of every other dropout
// site, and the attention kernels regenerate their mask three times (forward, dQ, dK/dV), so one
// Philox call serves 8 keys of a query row:
//   * call id = ((b*NH + h)*T + q) * ceil(T/8) + (k >> 3) for batch b, head h, query q, key k: one
//     call per query row and cell of 8 keys; counter and key as in DropoutParams::random_words;
//   * key k takes word (k & 7) >> 1 of the call, its low 16 bits for even k, high 16 bits for odd k;
//   * kept iff that 16-bit value >= threshold = min(65536, round(p * 65536)) (p as fp32, rounded
//     to nearest even), so the effective drop rate is threshold / 65536, within 2^-17 of p; kept
//     values are scaled by 1 / (1 - threshold / 65536) in fp32, which keeps E[dropout(x)] = x exactly.
// dev/reference/philox.py mirrors this (attention_keep_mask), tests/reference_cpu.sh checks it.

struct AttentionDropoutRate {
    uint32_t threshold;  // 16-bit random values below it are dropped
    float scale;         // 1 / (1 - threshold / 65536), for the kept values
};

__host__ __device__ inline AttentionDropoutRate attention_dropout_rate(float p) {
    AttentionDropoutRate rate;
    const uint32_t rounded = static_cast<uint32_t>(lrintf(p * 65536.0f));  // p * 2^16 is exact
    rate.threshold = rounded < 65536u ? rounded : 65536u;
    const float kept_fraction = 1.0f - static_cast<float>(rate.threshold) * (1.0f / 65536.0f);  // exact
#ifdef __CUDA_ARCH__
    rate.scale = __frcp_rn(kept_fraction);  // correctly rounded under --use_fast_math too: equals the host's
#else
    rate.scale = 1.0f / kept_fraction;
#endif
    return rate;
}

// Philox call id of (b, h, query q, key cell `cell` = k >> 3) of a T x T probability matrix.
__host__ __device__ inline uint64_t attention_dropout_call(int b, int h, int NH, int T, int q, int cell) {
    return ((static_cast<uint64_t>(b) * NH + h) * T + q) * static_cast<uint64_t>((T + 7) / 8) + cell;
}

// The 16-bit random value of key `key_in_cell` (k & 7) in its call's four words.
__host__ __device__ inline uint32_t attention_random16(const uint4& words, int key_in_cell) {
    const int index = key_in_cell >> 1;
    const uint32_t word = index == 0 ? words.x : index == 1 ? words.y : index == 2 ? words.z : words.w;
    return (word >> (16 * (key_in_cell & 1))) & 0xFFFFu;
}

// Keep flags of a whole cell from its call's words: bit j for key 8 * cell + j.
__host__ __device__ inline uint32_t attention_keep_byte(const uint4& words, uint32_t threshold) {
    uint32_t byte = 0;
    for (int j = 0; j < 8; ++j) byte |= static_cast<uint32_t>(attention_random16(words, j) >= threshold) << j;
    return byte;
}

// Whether probability (q, k) of head (b, h) is kept: the scalar definition, used by the CUDA-core
// kernels and the CPU references (the tensor-core kernels share calls between lanes instead).
// `threshold` is attention_dropout_rate(drop.p).threshold, which kernels compute once, not per element.
__host__ __device__ inline bool attention_keep(const DropoutParams& drop, uint32_t threshold, int b, int h, int NH,
                                               int T, int q, int k) {
    const uint4 words = drop.random_words(attention_dropout_call(b, h, NH, T, q, k >> 3));
    return attention_random16(words, k & 7) >= threshold;
}
__host__ __device__ inline bool attention_keep(const DropoutParams& drop, int b, int h, int NH, int T, int q, int k) {
    return attention_keep(drop, attention_dropout_rate(drop.p).threshold, b, h, NH, T, q, k);
}
