// The activation plan: every tensor the forward pass keeps for backward, and the scratch both
// passes share, as named slices of one device arena planned once for the largest (B, T).
//
// With recompute_gelu each layer keeps only its GELU input; backward's wide scratch tensors share
// the logits buffer, which is dead by then.
#pragma once

#include "kernels/attention.cuh"
#include "kernels/common.cuh"
#include "kernels/layernorm.cuh"
#include "model/options.cuh"

// A bump allocator over one cudaMalloc: the activation plan is a list of named slices.
class DeviceArena {
  public:
    DeviceArena() = default;
    DeviceArena(const DeviceArena&) = delete;
    DeviceArena& operator=(const DeviceArena&) = delete;
    ~DeviceArena() {
        if (base_) cudaFree(base_);
    }
    // Planning pass: reserve() only counts bytes; allocate() then makes the real buffer and
    // the same sequence of reserve() calls hands out pointers.
    template <typename X> X* reserve(size_t count) {
        const size_t offset = used_;
        used_ += (count * sizeof(X) + 255) / 256 * 256;  // 256-byte alignment for vector loads
        return base_ ? reinterpret_cast<X*>(base_ + offset) : nullptr;
    }
    size_t bytes() const { return used_; }
    template <typename X> X* base() const { return reinterpret_cast<X*>(base_); }
    void allocate() {
        CUDA_CHECK(cudaMalloc(&base_, used_));
        used_ = 0;
    }

  private:
    char* base_ = nullptr;
    size_t used_ = 0;
};

// What one layer keeps from forward for backward (N = B * T of the current pass).
template <typename T, typename R> struct LayerActivations {
    R* residual_attn;  // (N, C): pre-norm: residual stream entering LN1; post-norm: the LN1 input sum
    R* residual_mlp;   // (N, C): the same for LN2
    T* ln1;            // (N, C)
    float* ln1_mean;   // (N)
    float* ln1_rstd;   // (N)
    T* ln2;
    float* ln2_mean;
    float* ln2_rstd;
    T* qkv;            // (N, 3C), rotated when rotary
    T* att;            // (N, C)
    float* lse;        // (B, NH, T)
    T* pre_gelu;       // (N, 4C)
    T* gelu;           // (N, 4C): stored, or the shared gelu_scratch with recompute_gelu
};

// Residual type R: T, or float for the fp32 residual stream (pre-norm only).
template <typename T, typename R> struct Activations {
    int* tokens;          // (N)
    int* targets;         // (N)
    T* embedding;         // (N, C); in post-norm: after the embedding dropout
    R* residual_attn;     // (L, N, C), see LayerActivations
    R* residual_mlp;      // (L, N, C)
    R* residual_final;    // (N, C): the residual stream entering LNf (pre-norm)
    T* ln1;               // (L, N, C)
    float* ln1_mean;      // (L, N)
    float* ln1_rstd;
    T* ln2;
    float* ln2_mean;
    float* ln2_rstd;
    T* qkv;               // (L, N, 3C)
    T* att;               // (L, N, C)
    float* lse;           // (L, B, NH, T)
    T* pre_gelu;          // (L, N, 4C)
    T* gelu;              // (L, N, 4C); nullptr with recompute_gelu
    T* lnf;               // (N, C); nullptr in post-norm
    float* lnf_mean;
    float* lnf_rstd;
    T* sublayer_out;      // (N, C): the attention or MLP output projection, consumed at once
    T* logits;            // (N, Vp): overwritten in place by its gradient
    float* losses;        // (N)
    T* grad_a;            // (N, C)
    T* grad_b;            // (N, C)
    T* grad_wide;         // (N, 4C): d(pre_gelu), then d(qkv)
    T* gelu_scratch;      // (N, 4C): one layer's GELU output with recompute_gelu
    R* grad_residual;     // (N, C)
    float* ln_scratch;
    float* attention_scratch;
    bool recompute_gelu;

    // One slice per tensor, in a fixed order: a counting pass over an empty arena, then the same
    // pass over the allocated one.
    void plan(DeviceArena& a, const ModelOptions& options, int max_batch, int max_seq) {
        const ModelShape& s = options.shape;
        const size_t L = s.n_layer, C = s.n_embd, NH = s.n_head, HD = C / NH;
        const size_t N = (size_t)max_batch * max_seq;
        recompute_gelu = options.recompute_gelu;
        tokens = a.reserve<int>(N);
        targets = a.reserve<int>(N);
        embedding = a.reserve<T>(N * C);
        residual_attn = a.reserve<R>(L * N * C);
        residual_mlp = a.reserve<R>(L * N * C);
        residual_final = s.post_norm ? nullptr : a.reserve<R>(N * C);
        ln1 = a.reserve<T>(L * N * C);
        ln1_mean = a.reserve<float>(L * N);
        ln1_rstd = a.reserve<float>(L * N);
        ln2 = a.reserve<T>(L * N * C);
        ln2_mean = a.reserve<float>(L * N);
        ln2_rstd = a.reserve<float>(L * N);
        qkv = a.reserve<T>(L * N * 3 * C);
        att = a.reserve<T>(L * N * C);
        lse = a.reserve<float>(L * N * NH);
        pre_gelu = a.reserve<T>(L * N * 4 * C);
        gelu = options.recompute_gelu ? nullptr : a.reserve<T>(L * N * 4 * C);
        lnf = s.post_norm ? nullptr : a.reserve<T>(N * C);
        lnf_mean = a.reserve<float>(N);
        lnf_rstd = a.reserve<float>(N);
        sublayer_out = a.reserve<T>(N * C);
        logits = a.reserve<T>(N * s.padded_vocab_size);
        losses = a.reserve<float>(N);
        grad_a = a.reserve<T>(N * C);
        grad_b = a.reserve<T>(N * C);
        // The two (N, 4C) scratch tensors live inside the logits buffer when they fit (8C <= Vp,
        // true for every preset): the forward pass writes the logits only after its last use of
        // gelu_scratch, and backward uses both only after the LM head has consumed d(logits).
        if (8 * C <= (size_t)s.padded_vocab_size) {
            grad_wide = logits;
            gelu_scratch = logits ? logits + N * 4 * C : nullptr;
        } else {
            grad_wide = a.reserve<T>(N * 4 * C);
            gelu_scratch = options.recompute_gelu ? a.reserve<T>(N * 4 * C) : nullptr;
        }
        grad_residual = a.reserve<R>(N * C);
        ln_scratch = a.reserve<float>(layernorm_backward_scratch_floats<T, R>((int)N, (int)C));
        attention_scratch = a.reserve<float>(attention_backward_scratch_floats(max_batch, max_seq, (int)NH, (int)HD));
    }

    // Layer l's tensors for a pass over N tokens with C channels and NH heads.
    LayerActivations<T, R> layer(int l, int N, int C, int NH) const {
        const size_t nc = (size_t)N * C;
        return {residual_attn + l * nc,
                residual_mlp + l * nc,
                ln1 + l * nc,
                ln1_mean + (size_t)l * N,
                ln1_rstd + (size_t)l * N,
                ln2 + l * nc,
                ln2_mean + (size_t)l * N,
                ln2_rstd + (size_t)l * N,
                qkv + l * 3 * nc,
                att + l * nc,
                lse + (size_t)l * N * NH,
                pre_gelu + l * 4 * nc,
                recompute_gelu ? gelu_scratch : gelu + l * 4 * nc};
    }
};
