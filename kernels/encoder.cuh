// Token + position embedding: out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] (wpe absent with rotary).
//
// Forward: one 16-byte vector of one row per thread. Generation embeds one new token per
// sequence at that sequence's own position: the same kernel with the rows' positions given.
// Backward: dwte[v,:] += sum of dout over the positions holding token v, and dwpe[t,:] += sum of
// dout over the batch at position t, both without floating-point atomics, so that the result is
// bit-identical run to run. dwte needs the positions grouped by token: EncoderBackwardPlan builds
// that grouping on the CPU from the host copy of the batch (O(N + Vp), well under a millisecond,
// overlapping the GPU's forward pass) and uploads it. Each (token, 256-channel slice) is one
// block: its 8 warps take every 8th position of the token's bucket, then the 8 partial sums are
// added in warp order. Buckets are ordered by size, largest first, so the long ones start early.
#pragma once

#include <algorithm>
#include <vector>

#include "kernels/common.cuh"

// ---------------------------------------------------------------------------------------------
// Forward

// Row n's position: positions[n] where given, else n % seq_len (rows are B sequences of seq_len).
template <typename T>
__global__ void encoder_forward_kernel(T* out, const int* tokens, const int* positions, const T* wte, const T* wpe,
                                       int seq_len, int C, long long vectors) {
    const long long v = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (v >= vectors) return;
    const int vectors_per_row = C / Vec16<T>::size;
    const long long n = v / vectors_per_row;
    const int c = static_cast<int>(v % vectors_per_row) * Vec16<T>::size;
    Vec16<T> x = load16(wte + static_cast<size_t>(tokens[n]) * C + c);
    if (wpe) {
        const long long t = positions ? positions[n] : n % seq_len;
        const Vec16<T> p = load16(wpe + static_cast<size_t>(t) * C + c);
        for (int e = 0; e < Vec16<T>::size; ++e) x.set(e, x.get(e) + p.get(e));
    }
    store16(out + n * C + c, x);
}

namespace encoder_detail {
template <typename T>
void launch_forward(T* out, const int* tokens, const int* positions, const T* wte, const T* wpe, long long rows,
                    int seq_len, int C, cudaStream_t stream) {
    REQUIRE(is_aligned16(out) && is_aligned16(wte) && (wpe == nullptr || is_aligned16(wpe)),
            "encoder_forward: out, wte and wpe must be 16-byte aligned");
    const long long vectors = rows * C / Vec16<T>::size;
    constexpr int kThreads = 256;
    encoder_forward_kernel<<<ceil_div(vectors, static_cast<long long>(kThreads)), kThreads, 0, stream>>>(
        out, tokens, positions, wte, wpe, seq_len, C, vectors);
    CUDA_CHECK_LAUNCH();
}
}  // namespace encoder_detail

// out (B,T,C) = wte[tokens] + wpe[t]; tokens (B,T) must be < Vp (the data loader checks ids);
// wte (Vp,C); wpe (max_T,C) with max_T >= T, or nullptr (rotary: no learned positions).
template <typename T>
void encoder_forward(T* out, const int* tokens, const T* wte, const T* wpe, int B, int seq_len, int C,
                     cudaStream_t stream) {
    REQUIRE(B > 0 && seq_len > 0 && C > 0 && C % 8 == 0,
            "encoder_forward: B=%d, T=%d must be positive and C=%d a positive multiple of 8", B, seq_len, C);
    encoder_detail::launch_forward(out, tokens, nullptr, wte, wpe, static_cast<long long>(B) * seq_len, seq_len, C,
                                   stream);
}

// out (N,C) = wte[tokens[n]] + wpe[positions[n]]: N rows at their own positions (a generation
// step: one new token per sequence). positions (N) on the device, each < max_T of wpe.
template <typename T>
void encoder_forward_at_positions(T* out, const int* tokens, const int* positions, const T* wte, const T* wpe, int N,
                                  int C, cudaStream_t stream) {
    REQUIRE(N > 0 && C > 0 && C % 8 == 0 && positions != nullptr,
            "encoder_forward_at_positions: N=%d must be positive, C=%d a positive multiple of 8, positions given", N,
            C);
    encoder_detail::launch_forward(out, tokens, positions, wte, wpe, N, /*seq_len=*/1, C, stream);
}

// ---------------------------------------------------------------------------------------------
// Backward plan: positions grouped by token id.

class EncoderBackwardPlan {
  public:
    // Room for batches of up to max_tokens (= B*T) ids below Vp.
    EncoderBackwardPlan(int max_tokens, int Vp)
        : max_tokens_(max_tokens), max_buckets_(std::min(max_tokens, Vp)), Vp_(Vp), counts_(Vp), bucket_of_(Vp) {
        REQUIRE(max_tokens > 0 && Vp > 0, "EncoderBackwardPlan: max_tokens=%d and Vp=%d must be positive", max_tokens,
                Vp);
        const size_t ints = capacity_ints();
        CUDA_CHECK(cudaMallocHost(&host_, ints * sizeof(int)));
        CUDA_CHECK(cudaMalloc(&device_, ints * sizeof(int)));
        CUDA_CHECK(cudaEventCreateWithFlags(&uploaded_, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&consumed_, cudaEventDisableTiming));
    }
    ~EncoderBackwardPlan() {
        cudaEventDestroy(consumed_);
        cudaEventDestroy(uploaded_);
        cudaFree(device_);
        cudaFreeHost(host_);
    }
    EncoderBackwardPlan(const EncoderBackwardPlan&) = delete;
    EncoderBackwardPlan& operator=(const EncoderBackwardPlan&) = delete;

    // Groups the N = B*T ids of `host_tokens` (the batch the forward pass embeds) and uploads the
    // plan on `stream`. Waits (host) only for this plan's previous upload, and (on `stream`) for
    // the previous encoder_backward that read the device copy.
    void build(const int* host_tokens, int num_tokens, cudaStream_t stream) {
        REQUIRE(num_tokens > 0 && num_tokens <= max_tokens_,
                "EncoderBackwardPlan::build: %d tokens, but the plan was sized for at most %d (B*T)", num_tokens,
                max_tokens_);
        CUDA_CHECK(cudaEventSynchronize(uploaded_));  // the pinned buffer is free again
        std::fill(counts_.begin(), counts_.end(), 0);
        for (int n = 0; n < num_tokens; ++n) {
            const int token = host_tokens[n];
            REQUIRE(token >= 0 && token < Vp_,
                    "EncoderBackwardPlan::build: token id %d at position %d is outside [0, %d); the token shards "
                    "do not match this model's vocabulary",
                    token, n, Vp_);
            ++counts_[token];
        }
        std::vector<int> buckets;  // distinct tokens, largest bucket first, then by id
        for (int token = 0; token < Vp_; ++token)
            if (counts_[token] > 0) buckets.push_back(token);
        std::sort(buckets.begin(), buckets.end(),
                  [&](int a, int b) { return counts_[a] != counts_[b] ? counts_[a] > counts_[b] : a < b; });
        num_buckets_ = static_cast<int>(buckets.size());
        num_tokens_ = num_tokens;

        int* positions = host_;
        int* bucket_tokens = host_ + max_tokens_;
        int* bucket_offsets = bucket_tokens + max_buckets_;
        int offset = 0;
        for (int i = 0; i < num_buckets_; ++i) {
            bucket_tokens[i] = buckets[i];
            bucket_offsets[i] = offset;
            bucket_of_[buckets[i]] = offset;  // next free slot of the bucket while filling
            offset += counts_[buckets[i]];
        }
        bucket_offsets[num_buckets_] = offset;
        for (int n = 0; n < num_tokens; ++n) positions[bucket_of_[host_tokens[n]]++] = n;  // ascending per bucket

        CUDA_CHECK(cudaStreamWaitEvent(stream, consumed_, 0));
        CUDA_CHECK(cudaMemcpyAsync(device_, positions, num_tokens * sizeof(int), cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(cudaMemcpyAsync(device_ + max_tokens_, bucket_tokens,
                                   (2 * static_cast<size_t>(max_buckets_) + 1) * sizeof(int), cudaMemcpyHostToDevice,
                                   stream));
        CUDA_CHECK(cudaEventRecord(uploaded_, stream));
    }

    int num_tokens() const { return num_tokens_; }
    int num_buckets() const { return num_buckets_; }
    const int* positions() const { return device_; }                                  // (num_tokens)
    const int* bucket_tokens() const { return device_ + max_tokens_; }                // (num_buckets)
    const int* bucket_offsets() const { return device_ + max_tokens_ + max_buckets_; }  // (num_buckets + 1)
    cudaEvent_t uploaded() const { return uploaded_; }
    cudaEvent_t consumed() const { return consumed_; }

  private:
    size_t capacity_ints() const { return static_cast<size_t>(max_tokens_) + 2 * static_cast<size_t>(max_buckets_) + 1; }

    int max_tokens_, max_buckets_, Vp_;
    int num_tokens_ = 0, num_buckets_ = 0;
    std::vector<int> counts_, bucket_of_;  // (Vp) scratch of build()
    int* host_ = nullptr;                  // pinned: positions | bucket_tokens | bucket_offsets
    int* device_ = nullptr;                // same layout
    cudaEvent_t uploaded_ = nullptr, consumed_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Backward kernels

constexpr int kEncoderBackwardWarps = 8;
constexpr int kEncoderSliceChannels = 32 * 8;  // a warp's 32 lanes x one 16-byte vector of 8 channels
static_assert(kEncoderBackwardWarps * 32 == kEncoderSliceChannels, "one thread per channel in the final add");

// Block (bucket, slice): dwte[token, slice] += sum of dout rows at the bucket's positions.
template <typename T>
__global__ void __launch_bounds__(kEncoderBackwardWarps * 32)
    encoder_backward_wte_kernel(float* dwte, const T* dout, const int* positions, const int* bucket_tokens,
                                const int* bucket_offsets, int C) {
    __shared__ float warp_partials[kEncoderBackwardWarps][kEncoderSliceChannels];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int slice_start = blockIdx.y * kEncoderSliceChannels;
    const int c = slice_start + lane * Vec16<T>::size;
    const int begin = bucket_offsets[blockIdx.x], end = bucket_offsets[blockIdx.x + 1];
    float sums[Vec16<T>::size] = {};
    if (c < C) {
#pragma unroll 4
        for (int i = begin + warp; i < end; i += kEncoderBackwardWarps) {
            const Vec16<T> g = load16(dout + static_cast<size_t>(positions[i]) * C + c);
            for (int e = 0; e < Vec16<T>::size; ++e) sums[e] += g.get(e);
        }
    }
    for (int e = 0; e < Vec16<T>::size; ++e) warp_partials[warp][lane * Vec16<T>::size + e] = sums[e];
    __syncthreads();
    const int my_channel = slice_start + threadIdx.x;
    if (my_channel < C) {
        float total = 0.0f;
        for (int w = 0; w < kEncoderBackwardWarps; ++w) total += warp_partials[w][threadIdx.x];
        dwte[static_cast<size_t>(bucket_tokens[blockIdx.x]) * C + my_channel] += total;
    }
}

// dwpe[t, c..c+8) += (or =, GradWrite) sum over b of dout[b, t, c..c+8), one thread per (t, 8 channels).
template <typename T>
__global__ void encoder_backward_wpe_kernel(float* dwpe, const T* dout, int B, int seq_len, int C, GradWrite write) {
    const int vectors_per_row = C / Vec16<T>::size;
    const int v = blockIdx.x * blockDim.x + threadIdx.x;
    if (v >= seq_len * vectors_per_row) return;
    const int t = v / vectors_per_row, c = (v % vectors_per_row) * Vec16<T>::size;
    float sums[Vec16<T>::size] = {};
#pragma unroll 4
    for (int b = 0; b < B; ++b) {
        const Vec16<T> g = load16(dout + (static_cast<size_t>(b) * seq_len + t) * C + c);
        for (int e = 0; e < Vec16<T>::size; ++e) sums[e] += g.get(e);
    }
    float4* target = reinterpret_cast<float4*>(dwpe + static_cast<size_t>(t) * C + c);
    for (int half = 0; half < 2; ++half) {
        float4 value = write == GradWrite::add ? target[half] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        value.x += sums[4 * half + 0];
        value.y += sums[4 * half + 1];
        value.z += sums[4 * half + 2];
        value.w += sums[4 * half + 3];
        target[half] = value;
    }
}

// dwte (Vp,C) += and dwpe (max_T,C) += (nullptr: no learned positions) from dout (B,T,C), with
// `plan` built from this batch's tokens. `wpe_write` GradWrite::store stores rows 0..T-1 of dwpe
// instead; dwte is always added to, since only the batch's tokens' rows are written (the tied LM
// head's weight gradient writes all of them first).
template <typename T>
void encoder_backward(float* dwte, float* dwpe, const T* dout, EncoderBackwardPlan& plan, int B, int seq_len, int C,
                      GradWrite wpe_write, cudaStream_t stream) {
    REQUIRE(B > 0 && seq_len > 0 && C > 0 && C % 8 == 0 && C <= 65535 * kEncoderSliceChannels,
            "encoder_backward: B=%d, T=%d must be positive and C=%d a positive multiple of 8", B, seq_len, C);
    REQUIRE(plan.num_tokens() == B * seq_len,
            "encoder_backward: the plan holds %d tokens but B*T = %d; build it from this batch's tokens first",
            plan.num_tokens(), B * seq_len);
    REQUIRE(is_aligned16(dout) && is_aligned16(dwte) && (dwpe == nullptr || is_aligned16(dwpe)),
            "encoder_backward: dout, dwte and dwpe must be 16-byte aligned");
    CUDA_CHECK(cudaStreamWaitEvent(stream, plan.uploaded(), 0));
    const dim3 grid(plan.num_buckets(), ceil_div(C, kEncoderSliceChannels));
    encoder_backward_wte_kernel<<<grid, kEncoderBackwardWarps * 32, 0, stream>>>(
        dwte, dout, plan.positions(), plan.bucket_tokens(), plan.bucket_offsets(), C);
    CUDA_CHECK_LAUNCH();
    if (dwpe) {
        constexpr int kThreads = 256;
        const int vectors = seq_len * (C / Vec16<T>::size);
        encoder_backward_wpe_kernel<<<ceil_div(vectors, kThreads), kThreads, 0, stream>>>(dwpe, dout, B, seq_len, C,
                                                                                          wpe_write);
        CUDA_CHECK_LAUNCH();
    }
    CUDA_CHECK(cudaEventRecord(plan.consumed(), stream));
}
