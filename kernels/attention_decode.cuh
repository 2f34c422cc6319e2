// Attention for generation: one new query per sequence against that sequence's cached keys and
// values (a KV cache), so that each new token costs one token's forward pass.
//
// The cache, per layer: keys and values (S, NH, T_max, HD) for S sequence slots, position t of
// sequence s of head h at ((s*NH + h)*T_max + t)*HD: one head's keys are contiguous, which is what
// the decode kernel streams. The prompt's keys and values (after rotary) come from the ordinary
// forward pass's qkv activations (kv_cache_store_prompt); each generation step appends the new
// token's (kv_cache_append) before attending.
//
// Math, for sequence b at position p (keys 0..p, its own included), head h, s = softmax_scale:
//   S_j = s * q . k_j,  P_j = exp(S_j - max S) / sum exp(S - max S),  out = sum_j P_j v_j
// in fp32 (exp2 of scores pre-multiplied by log2 e: the same softmax). As kernels/attention.cuh's
// forward pass computes for the last row of a causal sequence; no dropout (inference).
//
// Work split ("flash-decoding"): a block takes kKeysPerSplit keys of one (sequence, head), so a
// batch of one still spreads a long context over many SMs. Scores sit in shared memory; each
// thread dots its own keys with q (broadcast from shared memory), then groups of threads, one
// 16-byte vector of the head each, sum P_j v_j over the keys. With one split the block writes the
// output; with several, each writes its unnormalized sum and (max, sum of exp) to scratch, and a
// second kernel rescales and adds them (the online-softmax merge). A sequence's keys fall into the
// same 256-key blocks however many splits the launch has (blocks past its last key exit), so its
// output does not depend on the other sequences' lengths or on a launch sized for the whole cache.
#pragma once

#include <cmath>

#include "kernels/attention_common.cuh"
#include "kernels/common.cuh"

namespace attention_decode_detail {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kKeysPerSplit = 256;
constexpr float kLog2e = 1.4426950408889634f;

// Splits (blocks per sequence and head) for keys 0..max_position.
__host__ __device__ inline int splits_for(int max_position) { return max_position / kKeysPerSplit + 1; }

// max or sum of x over the block; every thread gets the result. `scratch` holds kWarps floats.
template <bool kMax> __device__ inline float block_reduce(float x, float* scratch) {
    x = kMax ? warp_max(x) : warp_sum(x);
    __syncthreads();  // the previous reduction's readers are done with scratch
    if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = x;
    __syncthreads();
    float result = scratch[0];
    for (int w = 1; w < kWarps; ++w) result = kMax ? fmaxf(result, scratch[w]) : result + scratch[w];
    return result;
}

// Block (split, head h, sequence b): keys [split * kKeysPerSplit, +kKeysPerSplit) of 0..positions[b].
template <typename T, int HD>
__global__ void __launch_bounds__(kThreads)
    attention_decode_kernel(T* out /*(B, NH, HD)*/, float* partial_out /*(B, NH, splits, HD)*/,
                            float* partial_stats /*(B, NH, splits, 2): max, sum of exp2*/,
                            const T* qkv /*(B, 3, NH, HD)*/, const T* keys, const T* values /*(S, NH, T_max, HD)*/,
                            const int* positions /*(B)*/, int NH, int max_seq, float scale_log2) {
    constexpr int kVec = Vec16<T>::size;
    constexpr int kVectors = HD / kVec;            // 16-byte vectors per head: 8, 10, 12 or 16
    constexpr int kGroups = kThreads / kVectors;   // threads per vector column in the P.V sum
    __shared__ float q_shared[HD];
    __shared__ float p_shared[kKeysPerSplit];
    __shared__ float sums_shared[kGroups][HD];
    __shared__ float reduce_scratch[kWarps];

    const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z, splits = gridDim.x;
    const int begin = split * kKeysPerSplit;
    const int count = min(kKeysPerSplit, positions[b] + 1 - begin);
    if (count <= 0) return;  // a split past this sequence's last key (the combine reads none of it)
    const int C = NH * HD;
    const size_t head = static_cast<size_t>(b) * NH + h;

    const T* q = qkv + static_cast<size_t>(b) * 3 * C + h * HD;
    for (int d = threadIdx.x; d < HD; d += kThreads) q_shared[d] = to_float(q[d]) * scale_log2;
    __syncthreads();

    const T* head_keys = keys + (head * max_seq + begin) * HD;
    float local_max = -INFINITY;
    for (int j = threadIdx.x; j < count; j += kThreads) {
        const T* k = head_keys + static_cast<size_t>(j) * HD;
        float score = 0.0f;
#pragma unroll
        for (int v = 0; v < kVectors; ++v) {
            const Vec16<T> kv = load16(k + v * kVec);
#pragma unroll
            for (int e = 0; e < kVec; ++e) score += q_shared[v * kVec + e] * kv.get(e);
        }
        p_shared[j] = score;
        local_max = fmaxf(local_max, score);
    }
    const float block_max = block_reduce<true>(local_max, reduce_scratch);
    float local_sum = 0.0f;
    for (int j = threadIdx.x; j < count; j += kThreads) {
        const float p = exp2f(p_shared[j] - block_max);
        p_shared[j] = p;
        local_sum += p;
    }
    const float block_sum = block_reduce<false>(local_sum, reduce_scratch);  // its barrier publishes p_shared

    const int group = threadIdx.x / kVectors, vector = threadIdx.x % kVectors;
    if (group < kGroups) {
        float sums[kVec] = {};
        const T* head_values = values + (head * max_seq + begin) * HD + vector * kVec;
        for (int j = group; j < count; j += kGroups) {
            const float p = p_shared[j];
            const Vec16<T> vv = load16(head_values + static_cast<size_t>(j) * HD);
#pragma unroll
            for (int e = 0; e < kVec; ++e) sums[e] += p * vv.get(e);
        }
#pragma unroll
        for (int e = 0; e < kVec; ++e) sums_shared[group][vector * kVec + e] = sums[e];
    }
    __syncthreads();
    for (int d = threadIdx.x; d < HD; d += kThreads) {
        float o = 0.0f;
#pragma unroll
        for (int g = 0; g < kGroups; ++g) o += sums_shared[g][d];
        if (splits == 1) out[static_cast<size_t>(b) * C + h * HD + d] = from_float<T>(o / block_sum);
        else partial_out[(head * splits + split) * HD + d] = o;
    }
    if (splits > 1 && threadIdx.x == 0) {
        partial_stats[(head * splits + split) * 2] = block_max;
        partial_stats[(head * splits + split) * 2 + 1] = block_sum;
    }
}

// Block (h, b), HD threads: merges the splits that hold keys of sequence b.
template <typename T, int HD>
__global__ void __launch_bounds__(HD)
    attention_decode_combine_kernel(T* out /*(B, NH, HD)*/, const float* partial_out, const float* partial_stats,
                                    const int* positions, int NH, int splits) {
    const int h = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
    const size_t head = static_cast<size_t>(b) * NH + h;
    const int used = splits_for(positions[b]);
    const float* stats = partial_stats + head * splits * 2;
    T* o_out = out + static_cast<size_t>(b) * NH * HD + h * HD + d;
    if (used == 1) {  // as the one-split kernel writes it, bit for bit, however many splits ran
        *o_out = from_float<T>(partial_out[head * splits * HD + d] / stats[1]);
        return;
    }
    float overall_max = -INFINITY;
    for (int s = 0; s < used; ++s) overall_max = fmaxf(overall_max, stats[2 * s]);
    float total = 0.0f, o = 0.0f;
    for (int s = 0; s < used; ++s) {
        const float weight = exp2f(stats[2 * s] - overall_max);
        total += stats[2 * s + 1] * weight;
        o += partial_out[(head * splits + s) * HD + d] * weight;
    }
    *o_out = from_float<T>(o / total);
}

// Row n of qkv (N, 3, NH, HD): its k and v into sequence slot (slot, or n when slot < 0) at position
// (positions[n], or n when positions is null). One thread per (row, head, 16-byte vector).
template <typename T>
__global__ void kv_cache_store_kernel(T* keys, T* values /*(S, NH, T_max, HD)*/, const T* qkv, int rows,
                                      const int* positions, int slot, int NH, int HD, int max_seq) {
    const int vectors_per_head = HD / Vec16<T>::size;
    const long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (index >= static_cast<long long>(rows) * NH * vectors_per_head) return;
    const int c = static_cast<int>(index % vectors_per_head) * Vec16<T>::size;
    const int h = static_cast<int>(index / vectors_per_head % NH);
    const int n = static_cast<int>(index / vectors_per_head / NH);
    const int sequence = slot >= 0 ? slot : n;
    const int position = positions ? positions[n] : n;
    const size_t C = static_cast<size_t>(NH) * HD;
    const T* row = qkv + n * 3 * C + static_cast<size_t>(h) * HD + c;
    const size_t at = ((static_cast<size_t>(sequence) * NH + h) * max_seq + position) * HD + c;
    store16(keys + at, load16(row + C));
    store16(values + at, load16(row + 2 * C));
}

template <typename T>
void launch_kv_cache_store(T* keys, T* values, const T* qkv, int rows, const int* positions, int slot, int NH, int HD,
                           int max_seq, cudaStream_t stream) {
    REQUIRE(rows >= 1 && NH >= 1 && HD % Vec16<T>::size == 0 && max_seq >= 1,
            "kv_cache: %d rows, %d heads of %d (a multiple of %d), %d positions", rows, NH, HD, Vec16<T>::size,
            max_seq);
    REQUIRE(is_aligned16(keys) && is_aligned16(values) && is_aligned16(qkv), "kv_cache: buffers must be 16-byte aligned");
    const long long threads = static_cast<long long>(rows) * NH * (HD / Vec16<T>::size);
    constexpr int kBlock = 256;
    kv_cache_store_kernel<T><<<static_cast<unsigned>(ceil_div(threads, static_cast<long long>(kBlock))), kBlock, 0,
                               stream>>>(keys, values, qkv, rows, positions, slot, NH, HD, max_seq);
    CUDA_CHECK_LAUNCH();
}

}  // namespace attention_decode_detail

// ---------------------------------------------------------------------------------------------
// Host launchers. T in {__nv_bfloat16, __half}; HD in {64, 80, 96, 128}; keys/values one layer's
// cache (S, NH, max_seq, HD).

// The prompt of sequence `slot`: keys and values of qkv (T_len, 3, NH, HD) at positions 0..T_len-1.
template <typename T>
void kv_cache_store_prompt(T* keys, T* values, const T* qkv, int slot, int T_len, int NH, int HD, int max_seq,
                           cudaStream_t stream) {
    REQUIRE(slot >= 0 && T_len <= max_seq, "kv_cache_store_prompt: slot %d, a prompt of %d in a cache of %d positions",
            slot, T_len, max_seq);
    attention_decode_detail::launch_kv_cache_store(keys, values, qkv, T_len, nullptr, slot, NH, HD, max_seq, stream);
}

// One new token per sequence: row b of qkv (B, 3, NH, HD) into sequence b at positions[b] (device,
// each < max_seq).
template <typename T>
void kv_cache_append(T* keys, T* values, const T* qkv, const int* positions, int B, int NH, int HD, int max_seq,
                     cudaStream_t stream) {
    REQUIRE(positions != nullptr, "kv_cache_append: the sequences' positions are required");
    attention_decode_detail::launch_kv_cache_store(keys, values, qkv, B, positions, -1, NH, HD, max_seq, stream);
}

// Floats of scratch attention_decode needs for B sequences in a cache of max_seq positions.
inline size_t attention_decode_scratch_floats(int B, int NH, int HD, int max_seq) {
    return static_cast<size_t>(B) * NH * attention_decode_detail::splits_for(max_seq - 1) * (HD + 2);
}

// out (B, NH, HD) = attention of each sequence's query (row b of qkv (B, 3, NH, HD)) over its
// cached keys and values 0..positions[b] (the new token's already appended). max_position: the
// largest of positions (the host knows it; it sets how many splits run).
template <typename T>
void attention_decode(T* out, float* scratch /*attention_decode_scratch_floats(B, NH, HD, max_seq)*/, const T* qkv,
                      const T* keys, const T* values, const int* positions, int B, int NH, int HD, int max_seq,
                      int max_position, float softmax_scale, cudaStream_t stream) {
    namespace detail = attention_decode_detail;
    attention_detail::check_attention_arguments("attention_decode", qkv, out, B, 1, NH, HD, softmax_scale,
                                                DropoutParams{});
    REQUIRE(max_position >= 0 && max_position < max_seq,
            "attention_decode: position %d is outside the cache's %d positions", max_position, max_seq);
    REQUIRE(is_aligned16(keys) && is_aligned16(values) && positions != nullptr && scratch != nullptr,
            "attention_decode: 16-byte aligned keys and values, positions and scratch are required");
    const int splits = detail::splits_for(max_position);
    float* partial_out = scratch;
    float* partial_stats = scratch + static_cast<size_t>(B) * NH * splits * HD;
    attention_detail::dispatch_head_dim(HD, [&](auto head_dim) {
        constexpr int D = decltype(head_dim)::value;
        detail::attention_decode_kernel<T, D><<<dim3(splits, NH, B), detail::kThreads, 0, stream>>>(
            out, partial_out, partial_stats, qkv, keys, values, positions, NH, max_seq, softmax_scale * detail::kLog2e);
        CUDA_CHECK_LAUNCH();
        if (splits > 1) {
            detail::attention_decode_combine_kernel<T, D><<<dim3(NH, B), D, 0, stream>>>(out, partial_out, partial_stats,
                                                                                         positions, NH, splits);
            CUDA_CHECK_LAUNCH();
        }
    });
}
