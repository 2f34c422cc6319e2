// Rotary position embedding (RoPE), applied in place to the q and k parts of the packed QKV.
//
// Math: for position t and pair index i < rotary_dim / 2,
//   inv_freq[i] = base^(-2i / rotary_dim),   angle = t * inv_freq[i],
//   (a, b) -> (a cos(angle) - b sin(angle), a sin(angle) + b cos(angle)).
// The pair of pair index i is (i, i + rotary_dim/2) in the GPT-NeoX "rotate half" layout and
// (2i, 2i+1) in the GPT-J interleaved layout; dims >= rotary_dim and all of v pass through.
// Backward is the inverse rotation (angle negated): a rotation's Jacobian is the rotation itself,
// and its transpose is its inverse.
//
// Numerics. inv_freq is computed on the host and rounded to fp32 step by step as the PyTorch
// reference does (fp32 2i/rotary_dim, fp32 pow, fp32 reciprocal), and the angle is the fp32
// product fp32(t) * inv_freq, so the angles equal the reference's fp32 table to within an ulp
// of inv_freq. cos/sin are fp32: the angle is reduced to [-pi, pi] in double (angles reach
// T radians, and --use_fast_math's sincosf reduces in fp32, losing about |angle| * 2^-24, 5e-4
// at T = 8192) and then fed to __sincosf, accurate to ~4e-7 absolute on that range. The 64 inv_freq values travel
// in the kernel's parameters (no table buffer, no per-element pow); each thread computes the
// cos/sin of its few pair indices once and applies them to 4 or 8 heads of q and k.
//
// Memory: each thread moves vectors of 1 to 8 elements (launch_width picks, from measurements); a
// warp's loads cover neighbouring heads of neighbouring positions.
//
// Positions: row n of qkv is at position n % T (B sequences of T), or at positions[n] where the
// rows' positions are given (a generation step: one new token per sequence, each at its own
// position).
#pragma once

#include <cmath>

#include "kernels/common.cuh"

namespace rotary_detail {

constexpr int kMaxPairs = 64;       // rotary_dim <= 128
// A thread rotates several q/k heads with the same cos/sin, loading all of them first: 8 vectors
// in flight per thread (non-interleaved needs two per head) at <= ~100 registers.
constexpr int kVectorsPerThread = 8;
__host__ __device__ constexpr int heads_per_thread(bool interleaved) {
    return interleaved ? kVectorsPerThread : kVectorsPerThread / 2;
}
constexpr int kBlockThreads = 256;

struct InverseFrequencies {
    float values[kMaxPairs];  // (rotary_dim / 2)
};

inline InverseFrequencies inverse_frequencies(int rotary_dim, float base) {
    InverseFrequencies inv_freq{};
    for (int i = 0; i < rotary_dim / 2; ++i) {
        const float exponent = static_cast<float>(2 * i) / static_cast<float>(rotary_dim);
        const float power = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
        inv_freq.values[i] = 1.0f / power;
    }
    return inv_freq;
}

__device__ inline void rotary_sincos(float angle, float* sin_out, float* cos_out) {
    constexpr double kTwoPi = 6.283185307179586476925;
    const double reduced = static_cast<double>(angle) - kTwoPi * rint(static_cast<double>(angle) * (1.0 / kTwoPi));
    __sincosf(static_cast<float>(reduced), sin_out, cos_out);
}

template <typename T, int kWidth> struct alignas(kWidth * sizeof(T)) Pack {
    T elements[kWidth];
};

// One thread: one group of kWidth consecutive elements of the rotary part (non-interleaved: the
// group's first halves at [g*kWidth, +kWidth) and second halves rotary_dim/2 further; interleaved:
// kWidth/2 adjacent pairs at [g*kWidth, +kWidth)) of one position, for heads
// head_chunk, head_chunk + head_chunks, ... of the 2*NH q and k heads. sin_sign is +1 forward,
// -1 backward. `positions`: each row's position, or nullptr for row % seq_len.
template <typename T, int kWidth, bool kInterleaved>
__global__ void __launch_bounds__(kBlockThreads)
    rotary_kernel(T* qkv /*(B*seq_len, 3, NH, HD)*/, int rows, const int* positions /*(rows) or nullptr*/,
                  int seq_len, int NH, int HD, int rotary_dim, InverseFrequencies inv_freq, float sin_sign) {
    static_assert(!kInterleaved || kWidth % 2 == 0, "interleaved pairs need an even vector width");
    constexpr int kPairs = kInterleaved ? kWidth / 2 : kWidth;
    using PackT = Pack<T, kWidth>;
    const int half = rotary_dim / 2;
    const int groups = (kInterleaved ? rotary_dim : half) / kWidth;
    const int qk_heads = 2 * NH;  // q heads then k heads: contiguous in the packed layout
    constexpr int kHeads = heads_per_thread(kInterleaved);
    const int head_chunks = ceil_div(qk_heads, kHeads);

    // 32-bit index math (the launcher checks the thread count fits): 64-bit division costs ~5x.
    const int thread = blockIdx.x * blockDim.x + threadIdx.x;
    const int group = thread % groups;
    const int head_chunk = (thread / groups) % head_chunks;
    const int row = thread / groups / head_chunks;
    if (row >= rows) return;
    const int t = positions ? positions[row] : row % seq_len;

    float cos_values[kPairs], sin_values[kPairs];
    const int first_pair = kInterleaved ? group * kWidth / 2 : group * kWidth;
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
        rotary_sincos(static_cast<float>(t) * inv_freq.values[first_pair + j], &sin_values[j], &cos_values[j]);
        sin_values[j] *= sin_sign;
    }

    T* position_qk = qkv + static_cast<size_t>(row) * 3 * NH * HD;
    const int first_offset = group * kWidth;              // within a head
    const int second_offset = first_offset + half;        // non-interleaved only
    PackT first[kHeads], second[kHeads];  // second: non-interleaved only
#pragma unroll
    for (int u = 0; u < kHeads; ++u) {
        const int head = head_chunk + u * head_chunks;
        if (head >= qk_heads) continue;
        const T* head_base = position_qk + static_cast<size_t>(head) * HD;
        first[u] = *reinterpret_cast<const PackT*>(head_base + first_offset);
        if (!kInterleaved) second[u] = *reinterpret_cast<const PackT*>(head_base + second_offset);
    }
#pragma unroll
    for (int u = 0; u < kHeads; ++u) {
        const int head = head_chunk + u * head_chunks;
        if (head >= qk_heads) continue;
        T* head_base = position_qk + static_cast<size_t>(head) * HD;
        if constexpr (kInterleaved) {
#pragma unroll
            for (int j = 0; j < kPairs; ++j) {
                const float a = to_float(first[u].elements[2 * j]), b = to_float(first[u].elements[2 * j + 1]);
                first[u].elements[2 * j] = from_float<T>(a * cos_values[j] - b * sin_values[j]);
                first[u].elements[2 * j + 1] = from_float<T>(a * sin_values[j] + b * cos_values[j]);
            }
        } else {
#pragma unroll
            for (int j = 0; j < kPairs; ++j) {
                const float a = to_float(first[u].elements[j]), b = to_float(second[u].elements[j]);
                first[u].elements[j] = from_float<T>(a * cos_values[j] - b * sin_values[j]);
                second[u].elements[j] = from_float<T>(a * sin_values[j] + b * cos_values[j]);
            }
            *reinterpret_cast<PackT*>(head_base + second_offset) = second[u];
        }
        *reinterpret_cast<PackT*>(head_base + first_offset) = first[u];
    }
}

// Widest vector (elements) that tiles the rotary groups and keeps every access aligned.
inline int widest_vector(int HD, int rotary_dim, bool interleaved) {
    const int span = interleaved ? rotary_dim : rotary_dim / 2;
    for (int width = 8; width >= 2; width /= 2)
        if (HD % width == 0 && span % width == 0) return width;
    return interleaved ? 2 : 1;
}

// The width the public launchers use: the widest, except where a head's rotated bytes
// (rotary_dim elements) end inside a 32-byte sector and the head goes on: there a wide access
// that straddles the sector boundary costs more than narrow ones (dev/cuda/rotary measures both;
// the README's rotary table has the figures).
inline int launch_width(int HD, int rotary_dim, bool interleaved, size_t element_bytes) {
    const bool partial_sector = rotary_dim < HD && (static_cast<size_t>(rotary_dim) * element_bytes) % 32 != 0;
    if (partial_sector) return interleaved ? 2 : 1;
    return widest_vector(HD, rotary_dim, interleaved);
}

inline void check_shape(const void* qkv, int B, int seq_len, int NH, int HD, int rotary_dim, float base) {
    REQUIRE(qkv != nullptr && is_aligned16(qkv), "rotary: qkv must be a non-null, 16-byte aligned (B,T,3,NH,HD) tensor");
    REQUIRE(B > 0 && seq_len > 0 && NH > 0, "rotary: B = %d, T = %d, NH = %d must all be positive", B, seq_len, NH);
    REQUIRE(HD % 2 == 0 && HD > 0, "rotary: head dimension HD = %d must be a positive even number", HD);
    REQUIRE(rotary_dim >= 2 && rotary_dim % 2 == 0 && rotary_dim <= HD && rotary_dim <= 2 * kMaxPairs,
            "rotary: rotary_dim = %d must be an even number from 2 to min(HD = %d, %d)", rotary_dim, HD,
            2 * kMaxPairs);
    REQUIRE(base > 1.0f && std::isfinite(base), "rotary: base = %g must be a finite number greater than 1", base);
}

// Rotates q and k of qkv by +angle (sin_sign = 1) or -angle (sin_sign = -1), moving `width`
// elements per access (the dev workbench compares widths; the public launchers use launch_width).
// positions: (B*seq_len) on the device, each row's position, or nullptr for row % seq_len.
template <typename T>
void launch_rotary(int width, T* qkv, int B, int seq_len, int NH, int HD, int rotary_dim, float base, bool interleaved,
                   float sin_sign, cudaStream_t stream, const int* positions = nullptr) {
    check_shape(qkv, B, seq_len, NH, HD, rotary_dim, base);
    const int span = interleaved ? rotary_dim : rotary_dim / 2;
    REQUIRE((width == 1 || width == 2 || width == 4 || width == 8) && HD % width == 0 && span % width == 0 &&
                (!interleaved || width >= 2),
            "rotary: a vector width of %d elements does not tile HD = %d, rotary_dim = %d (%s)", width, HD,
            rotary_dim, interleaved ? "interleaved" : "rotate half");
    const InverseFrequencies inv_freq = inverse_frequencies(rotary_dim, base);
    const long long rows = static_cast<long long>(B) * seq_len;
    const long long threads = rows * (span / width) * ceil_div(2 * NH, heads_per_thread(interleaved));
    const long long blocks = ceil_div(threads, static_cast<long long>(kBlockThreads));
    REQUIRE(blocks * kBlockThreads <= INT32_MAX, "rotary: B*T = %lld positions x %d heads is too many for one launch",
            rows, NH);
    auto launch = [&](auto kernel) {
        kernel<<<static_cast<unsigned>(blocks), kBlockThreads, 0, stream>>>(
            qkv, static_cast<int>(rows), positions, seq_len, NH, HD, rotary_dim, inv_freq, sin_sign);
    };
    if (interleaved) {
        if (width == 8) launch(rotary_kernel<T, 8, true>);
        else if (width == 4) launch(rotary_kernel<T, 4, true>);
        else launch(rotary_kernel<T, 2, true>);
    } else {
        if (width == 8) launch(rotary_kernel<T, 8, false>);
        else if (width == 4) launch(rotary_kernel<T, 4, false>);
        else if (width == 2) launch(rotary_kernel<T, 2, false>);
        else launch(rotary_kernel<T, 1, false>);
    }
    CUDA_CHECK_LAUNCH();
}

}  // namespace rotary_detail

// ---------------------------------------------------------------------------------------------
// Public launchers (the trainer's contract). T in {__nv_bfloat16, __half}. Positions are
// 0..seq_len-1 within each sequence (seq_len is the contract's T, renamed so it does not shadow
// the storage type); rotary_dim even, <= HD and <= 128; qkv 16-byte aligned.

template <typename T>
void rotary_forward(T* qkv /*(B,seq_len,3,NH,HD) in place: q and k rotated*/, int B, int seq_len, int NH, int HD, int rotary_dim,
                    float base, bool interleaved, cudaStream_t stream) {
    const int width = rotary_detail::launch_width(HD, rotary_dim, interleaved, sizeof(T));
    rotary_detail::launch_rotary(width, qkv, B, seq_len, NH, HD, rotary_dim, base, interleaved, 1.0f, stream);
}

template <typename T>
void rotary_backward(T* dqkv /*(B,seq_len,3,NH,HD) in place: inverse rotation of dq and dk*/, int B, int seq_len, int NH, int HD,
                     int rotary_dim, float base, bool interleaved, cudaStream_t stream) {
    const int width = rotary_detail::launch_width(HD, rotary_dim, interleaved, sizeof(T));
    rotary_detail::launch_rotary(width, dqkv, B, seq_len, NH, HD, rotary_dim, base, interleaved, -1.0f, stream);
}

// One new token per sequence (generation): row n of qkv (N,3,NH,HD) rotated in place for
// position positions[n] (device, N ints).
template <typename T>
void rotary_forward_at_positions(T* qkv /*(N,3,NH,HD)*/, const int* positions /*(N)*/, int N, int NH, int HD,
                                 int rotary_dim, float base, bool interleaved, cudaStream_t stream) {
    REQUIRE(positions != nullptr, "rotary_forward_at_positions: the rows' positions are required");
    const int width = rotary_detail::launch_width(HD, rotary_dim, interleaved, sizeof(T));
    rotary_detail::launch_rotary(width, qkv, N, /*seq_len=*/1, NH, HD, rotary_dim, base, interleaved, 1.0f, stream,
                                 positions);
}
