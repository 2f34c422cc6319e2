// The GPT model on the GPU: parameter, gradient and optimizer arenas, the activation plan, and
// the forward pass, backward pass and optimizer step as lists of fused-kernel calls.
//
// Two block forms, both as the seed computes them (flash-attn's GPT, dropout at three sites):
//   pre-norm:  residual = dropout(emb)                         (inside block 0's first LN call)
//              per layer: h = LN1(residual); residual += dropout(attn(h));
//                         h = LN2(residual); residual += dropout(mlp(h))
//              logits = LNf(residual) @ wte^T
//   post-norm: h = dropout(emb)
//              per layer: h = LN1(h + dropout(attn(h))); h = LN2(h + dropout(mlp(h)))
//              logits = h @ wte^T
// Each "residual += dropout(x); LN(residual)" is one fused kernel (kernels/layernorm.cuh), the
// QKV/FC/projection matmuls carry their bias (and GELU) in cuBLASLt epilogues, attention is our
// FlashAttention on the packed QKV tensor, and the loss writes its gradient over the logits.
//
// Bias gradients come from wherever their dout is already read or written, never from the weight-
// gradient GEMMs (cuBLASLt's BGRADB epilogue slowed those from 540-730 to 350-560 TFLOP/s on an
// H100, ~3-4 ms of a gpt2s step): attn_proj_b and fc_proj_b from the LayerNorm backward that
// writes d(sublayer output) (pre-norm: LN2 of the same layer, and LN1 of the next layer or LNf
// for fc_proj_b; post-norm: LN1 and LN2 of the same layer), fc_b and qkv_b from a column sum over
// d(pre_gelu) and d(qkv) right after they are written (kernels/matmul.cuh says why not epilogues).
//
// Memory: parameters in a few flat arenas (fp32 master, 16-bit compute copy, fp32 gradients,
// fp32 AdamW moments), each in ParamLayout order, so checkpoints are one write and ZeRO sharding
// is a range of offsets (ZeRO-2 keeps only the shard of the gradients, plus a few layer-sized
// buffers that backward writes into and the trainer reduces; OptimizerShard). Activations in one
// arena, planned once for (B, T); with recompute_gelu each layer keeps only its GELU input, and
// backward's wide scratch tensors share the logits buffer, which is dead by then.
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "host/checkpoint.h"
#include "kernels/adamw.cuh"
#include "kernels/attention.cuh"
#include "kernels/common.cuh"
#include "kernels/crossentropy.cuh"
#include "kernels/dropout.cuh"
#include "kernels/encoder.cuh"
#include "kernels/layernorm.cuh"
#include "kernels/matmul.cuh"
#include "kernels/random_init.cuh"
#include "kernels/rotary.cuh"

// What the forward/backward pass needs beyond the parameter layout.
struct ModelOptions {
    ModelShape shape;
    float layernorm_eps = 1e-5f;
    float dropout_embd = 0.0f;
    float dropout_resid = 0.0f;
    float dropout_attn = 0.0f;
    // Store only each MLP's GELU input and recompute gelu(pre_gelu) in backward (one element-wise
    // pass per layer) instead of keeping L x (N, 4C) GELU outputs.
    bool recompute_gelu = false;
};

// Where this micro-step's dropout masks come from. Every dropout site of every micro-step of
// every rank has its own Philox offset, so no two masks repeat and backward regenerates each.
//   micro = (step - 1) * grad_accum + micro_step
//   offset = (micro * world_size + rank) * (1 + 3 * n_layer) + site
//   site 0: embedding; for layer l: 1 + 3l attention probabilities, 2 + 3l after attention,
//   3 + 3l after the MLP. (dev/reference/philox.py computes the same.)
struct DropoutSchedule {
    uint64_t seed = 0;
    int64_t micro = 0;
    int world_size = 1;
    int rank = 0;
    bool training = true;

    DropoutParams site(float p, int n_layer, int site_index) const {
        DropoutParams params;
        params.p = training ? p : 0.0f;
        params.seed = seed;
        params.offset = (static_cast<uint64_t>(micro) * world_size + rank) * (1 + 3 * n_layer) + site_index;
        return params;
    }
};

// Named views of one flat arena in ParamLayout order; per-layer tensors are stacked, layer l of
// a tensor of per-layer size S starts at base + l * S.
template <typename P> struct ParamViews {
    P* wte = nullptr;
    P* wpe = nullptr;  // nullptr without learned positions
    P* ln1_w = nullptr;
    P* ln1_b = nullptr;
    P* qkv_w = nullptr;
    P* qkv_b = nullptr;
    P* attn_proj_w = nullptr;
    P* attn_proj_b = nullptr;
    P* ln2_w = nullptr;
    P* ln2_b = nullptr;
    P* fc_w = nullptr;
    P* fc_b = nullptr;
    P* fc_proj_w = nullptr;
    P* fc_proj_b = nullptr;
    P* lnf_w = nullptr;  // nullptr in post-norm
    P* lnf_b = nullptr;

    ParamViews() = default;
    ParamViews(P* base, const ParamLayout& layout)
        : ParamViews([&](const ParamTensor& tensor) { return base + tensor.offset; }, layout) {}
    // Each tensor the layout has, wherever `locate` puts it (nullptr: not stored there).
    template <typename Locate> ParamViews(const Locate& locate, const ParamLayout& layout) {
        auto view = [&](const char* name) -> P* {
            const ParamTensor* tensor = layout.find(name);
            return tensor ? locate(*tensor) : nullptr;
        };
        wte = view("wte");
        wpe = view("wpe");
        ln1_w = view("ln1_w");
        ln1_b = view("ln1_b");
        qkv_w = view("qkv_w");
        qkv_b = view("qkv_b");
        attn_proj_w = view("attn_proj_w");
        attn_proj_b = view("attn_proj_b");
        ln2_w = view("ln2_w");
        ln2_b = view("ln2_b");
        fc_w = view("fc_w");
        fc_b = view("fc_b");
        fc_proj_w = view("fc_proj_w");
        fc_proj_b = view("fc_proj_b");
        lnf_w = view("lnf_w");
        lnf_b = view("lnf_b");
    }
};

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

// The range of the flat parameter arrays whose AdamW state this rank owns (ZeRO-1 and 2), within
// arrays padded to `padded_total` so that equal shards tile them (host/rank_shard.h shard_of).
// Without sharding: [0, num_params) of padded_total = num_params.
// sharded_gradients (ZeRO-2): the model keeps the accumulated gradient of its shard only; backward
// writes each layer's gradients into one of a few rotating layer-sized buffers (and wte, wpe, lnf
// into one buffer of their own), which the caller reduces to the owning ranks every micro-step.
struct OptimizerShard {
    int64_t begin = 0;
    int64_t end = 0;
    int64_t padded_total = 0;
    bool sharded_gradients = false;
};

// A contiguous piece of one gradient bucket: `count` gradients of flat offset `offset` (in
// ParamLayout order), stored at `data` (in the full arena, or in a ZeRO-2 buffer).
struct GradientSlice {
    float* data;
    int64_t offset;
    int64_t count;
};

// Residual type R: T, or float for the fp32 residual stream (pre-norm only).
template <typename T, typename R> class Gpt2Model {
  public:
    // max_batch, max_seq: the largest B and T any forward pass will see.
    Gpt2Model(const ModelOptions& options, double base_init_std, int max_batch, int max_seq,
              const OptimizerShard& shard)
        : options_(options), layout_(options.shape, base_init_std), max_batch_(max_batch), max_seq_(max_seq),
          shard_(shard), gradient_plan_(layout_, shard_),
          encoder_plan_(max_batch * max_seq, options.shape.padded_vocab_size) {
        const ModelShape& s = options_.shape;
        REQUIRE(s.n_embd % s.n_head == 0, "n_embd %d must be a multiple of n_head %d", s.n_embd, s.n_head);
        REQUIRE(s.n_embd % 8 == 0, "n_embd %d must be a multiple of 8", s.n_embd);
        REQUIRE(!(s.post_norm && s.fp32_residual), "the fp32 residual stream is a pre-norm option");
        REQUIRE((std::is_same<R, T>::value) == !s.fp32_residual, "residual type does not match fp32_residual");
        num_params_ = layout_.total();
        REQUIRE(shard_.padded_total >= num_params_ && shard_.begin <= shard_.end && shard_.end <= shard_.padded_total,
                "optimizer shard [%lld, %lld) of %lld does not fit %lld parameters", (long long)shard_.begin,
                (long long)shard_.end, (long long)shard_.padded_total, (long long)num_params_);
        const int64_t owned = shard_.end - shard_.begin;
        CUDA_CHECK(cudaMalloc(&params_, shard_.padded_total * sizeof(T)));
        CUDA_CHECK(cudaMalloc(&grads_, gradient_plan_.total_floats() * sizeof(float)));
        CUDA_CHECK(cudaMalloc(&master_, owned * sizeof(float)));
        CUDA_CHECK(cudaMalloc(&adam_m_, owned * sizeof(float)));
        CUDA_CHECK(cudaMalloc(&adam_v_, owned * sizeof(float)));
        CUDA_CHECK(cudaMemset(params_, 0, shard_.padded_total * sizeof(T)));
        CUDA_CHECK(cudaMemset(grads_, 0, gradient_plan_.total_floats() * sizeof(float)));
        CUDA_CHECK(cudaMemset(master_, 0, owned * sizeof(float)));
        CUDA_CHECK(cudaMemset(adam_m_, 0, owned * sizeof(float)));
        CUDA_CHECK(cudaMemset(adam_v_, 0, owned * sizeof(float)));
        param_views_ = ParamViews<T>(params_, layout_);
        if (shard_.sharded_gradients) {
            // [shard accumulator | wte, wpe, lnf | kLayerGradBuffers x one layer]
            non_layer_grads_ = grads_ + gradient_plan_.shard_floats;
            layer_grads_ = non_layer_grads_ + gradient_plan_.non_layer_floats;
            grad_views_ = ParamViews<float>(
                [&](const ParamTensor& t) { return t.per_layer ? nullptr : non_layer_grads_ + offset_in_bucket(t); },
                layout_);
            for (cudaEvent_t& event : buffer_free_)
                CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
        } else {
            grad_views_ = ParamViews<float>(grads_, layout_);
        }
        plan_activations(act_, activations_, options_, max_batch_, max_seq_);
        activations_.allocate();
        plan_activations(act_, activations_, options_, max_batch_, max_seq_);
    }
    ~Gpt2Model() {
        cudaFree(params_);
        cudaFree(grads_);
        cudaFree(master_);
        cudaFree(adam_m_);
        cudaFree(adam_v_);
        cudaFree(staging_);
        for (cudaEvent_t event : buffer_free_)
            if (event) cudaEventDestroy(event);
    }
    Gpt2Model(const Gpt2Model&) = delete;
    Gpt2Model& operator=(const Gpt2Model&) = delete;

    // Device memory the model will take, before taking it (for the start-up plan and a clear
    // out-of-memory message): parameters, gradients and AdamW state; activations for (B, T).
    static size_t parameter_bytes(const ModelShape& shape, const OptimizerShard& shard) {
        const GradientPlan gradients(ParamLayout(shape, 0.02), shard);
        return shard.padded_total * sizeof(T) + gradients.total_floats() * sizeof(float) +
               3 * (shard.end - shard.begin) * sizeof(float);
    }
    static size_t activation_bytes(const ModelOptions& options, int max_batch, int max_seq) {
        Activations plan{};
        DeviceArena counter;
        plan_activations(plan, counter, options, max_batch, max_seq);
        return counter.bytes();
    }

    const ParamLayout& layout() const { return layout_; }
    const ModelOptions& options() const { return options_; }
    const OptimizerShard& shard() const { return shard_; }
    int64_t num_params() const { return num_params_; }
    T* params() { return params_; }
    // The whole gradient arena (padded_total, ParamLayout order); not with sharded_gradients.
    float* grads() {
        REQUIRE(!shard_.sharded_gradients, "grads(): with sharded gradients only shard_grads() exists");
        return grads_;
    }
    // The accumulated gradients of this rank's optimizer shard: [shard.begin, shard.end).
    float* shard_grads() { return shard_.sharded_gradients ? grads_ : grads_ + shard_.begin; }
    float* master() { return master_; }
    float* adam_m() { return adam_m_; }
    float* adam_v() { return adam_v_; }
    float* losses() { return act_.losses; }
    T* logits() { return act_.logits; }
    int* device_tokens() { return act_.tokens; }
    int* device_targets() { return act_.targets; }

    // Staging for full fp32 weights (num_params), used between steps only: the gradient arena,
    // which finish_weights() zeroes again, or with sharded gradients the activation arena when it
    // is large enough (it is dead between steps), else a buffer of its own.
    float* weight_staging() {
        if (!shard_.sharded_gradients) return grads_;
        if (activations_.bytes() >= (size_t)num_params_ * sizeof(float)) return activations_.base<float>();
        if (!staging_) CUDA_CHECK(cudaMalloc(&staging_, num_params_ * sizeof(float)));
        return staging_;
    }
    // Fresh weights into the staging buffer: each tensor by its init rule (ParamLayout), drawn
    // on the GPU from `seed` (identical on every rank).
    void init_weights_into_staging(uint64_t seed, cudaStream_t stream) {
        int64_t tensor_index = 0;
        float* staging = weight_staging();
        for (const ParamTensor& tensor : layout_.tensors()) {
            float* out = staging + tensor.offset;
            switch (tensor.init) {
                case ParamInit::normal:
                    fill_normal(out, tensor.numel, (float)tensor.init_std, seed, tensor_index, stream);
                    break;
                case ParamInit::zeros: fill_constant(out, tensor.numel, 0.0f, stream); break;
                case ParamInit::ones: fill_constant(out, tensor.numel, 1.0f, stream); break;
            }
            ++tensor_index;
        }
    }
    // Staged full fp32 weights -> the compute copy and this rank's master shard; clears staging.
    void finish_weights(cudaStream_t stream) {
        const float* staged = weight_staging();
        copy_master_to_params(params_, staged, num_params_, stream);
        const int64_t valid_end = std::min(shard_.end, num_params_);
        if (valid_end > shard_.begin)
            CUDA_CHECK(cudaMemcpyAsync(master_, staged + shard_.begin, (valid_end - shard_.begin) * sizeof(float),
                                       cudaMemcpyDeviceToDevice, stream));
        zero_grads(stream);
    }
    // Clears the accumulated gradients (the whole arena, or this rank's shard).
    void zero_grads(cudaStream_t stream) {
        const int64_t count = shard_.sharded_gradients ? shard_.end - shard_.begin : shard_.padded_total;
        CUDA_CHECK(cudaMemsetAsync(grads_, 0, count * sizeof(float), stream));
    }

    // Where backward leaves layer `layer`'s gradients (ParamLayout::layer_ranges), and wte, wpe and
    // lnf's (non_layer_ranges): in the arena, or with sharded gradients in the ZeRO-2 buffers.
    std::vector<GradientSlice> layer_gradient_slices(int layer) const {
        return slices(layout_.layer_ranges(layer), shard_.sharded_gradients ? layer_buffer(layer) : nullptr);
    }
    std::vector<GradientSlice> non_layer_gradient_slices() const {
        return slices(layout_.non_layer_ranges(), shard_.sharded_gradients ? non_layer_grads_ : nullptr);
    }
    // Sharded gradients: the caller has enqueued on `stream` everything that reads layer `layer`'s
    // buffer (or the non-layer buffer), which backward may then reuse once that work is done.
    void release_layer_gradients(int layer, cudaStream_t stream) {
        CUDA_CHECK(cudaEventRecord(buffer_free_[layer % kLayerGradBuffers], stream));
    }
    void release_non_layer_gradients(cudaStream_t stream) {
        CUDA_CHECK(cudaEventRecord(buffer_free_[kLayerGradBuffers], stream));
    }

    // ------------------------------------------------------------------------------------------
    // Forward: tokens (B, T) already in device_tokens(). With targets (B, T) in device_targets()
    // the per-token losses land in losses(); with `grad_scale` > 0 the logits are replaced by
    // d(loss * grad_scale)/d(logits) for backward().
    void forward(MatmulContext& matmul, int B, int seq, const DropoutSchedule& rng, bool with_targets, float grad_scale,
                 cudaStream_t stream) {
        REQUIRE(B <= max_batch_ && seq <= max_seq_, "batch %dx%d exceeds the planned %dx%d", B, seq, max_batch_, max_seq_);
        const ModelShape& s = options_.shape;
        const int L = s.n_layer, C = s.n_embd, NH = s.n_head, HD = C / NH, N = B * seq;
        const ParamViews<T>& p = param_views_;
        encoder_forward(act_.embedding, act_.tokens, p.wte, p.wpe, B, seq, C, stream);
        const DropoutParams embd_drop = rng.site(options_.dropout_embd, L, 0);
        if (s.post_norm) dropout_forward(act_.embedding, act_.embedding, embd_drop, (int64_t)N * C, stream);

        for (int l = 0; l < L; ++l) {
            const DropoutParams attn_drop = rng.site(options_.dropout_attn, L, 1 + 3 * l);
            const DropoutParams after_attn = rng.site(options_.dropout_resid, L, 2 + 3 * l);
            const DropoutParams after_mlp = rng.site(options_.dropout_resid, L, 3 + 3 * l);
            const size_t nc = (size_t)N * C;
            T* ln1 = act_.ln1 + l * nc;
            T* ln2 = act_.ln2 + l * nc;
            T* qkv = act_.qkv + l * 3 * nc;
            T* att = act_.att + l * nc;
            float* lse = act_.lse + (size_t)l * N * NH;
            T* pre_gelu = act_.pre_gelu + l * 4 * nc;
            T* gelu = options_.recompute_gelu ? act_.gelu_scratch : act_.gelu + l * 4 * nc;
            R* residual_attn = act_.residual_attn + l * nc;
            R* residual_mlp = act_.residual_mlp + l * nc;

            // Attention sublayer input: LN1 of the residual stream (pre-norm) or the hidden state.
            const T* attn_input;
            if (!s.post_norm) {
                const T* x = l == 0 ? act_.embedding : act_.sublayer_out;
                const R* residual_in = l == 0 ? nullptr : act_.residual_mlp + (l - 1) * nc;
                fused_dropout_residual_layernorm_forward<T, R>(ln1, residual_attn, act_.ln1_mean + l * N,
                                                               act_.ln1_rstd + l * N, x, residual_in,
                                                               p.ln1_w + l * C, p.ln1_b + l * C,
                                                               l == 0 ? embd_drop : after_mlp_prev(rng, l),
                                                               options_.layernorm_eps, N, C, stream);
                attn_input = ln1;
            } else {
                attn_input = l == 0 ? act_.embedding : act_.ln2 + (l - 1) * nc;
            }
            matmul_forward<T>(matmul, qkv, nullptr, attn_input, p.qkv_w + (size_t)l * 3 * C * C,
                              p.qkv_b + l * 3 * C, N, 3 * C, C, stream);
            if (s.rotary_dim > 0)
                rotary_forward<T>(qkv, B, seq, NH, HD, s.rotary_dim, (float)s.rotary_base, s.rotary_interleaved, stream);
            attention_forward<T>(att, lse, qkv, B, seq, NH, HD, softmax_scale(l), attn_drop, stream);
            matmul_forward<T>(matmul, act_.sublayer_out, nullptr, att, p.attn_proj_w + (size_t)l * C * C,
                              p.attn_proj_b + l * C, N, C, C, stream);

            // MLP sublayer input.
            const T* mlp_input;
            if (!s.post_norm) {
                fused_dropout_residual_layernorm_forward<T, R>(ln2, residual_mlp, act_.ln2_mean + l * N,
                                                               act_.ln2_rstd + l * N, act_.sublayer_out,
                                                               residual_attn, p.ln2_w + l * C, p.ln2_b + l * C,
                                                               after_attn, options_.layernorm_eps, N, C, stream);
                mlp_input = ln2;
            } else {
                fused_dropout_residual_layernorm_postnorm_forward<T>(
                    ln1, reinterpret_cast<T*>(residual_attn), act_.ln1_mean + l * N, act_.ln1_rstd + l * N,
                    act_.sublayer_out, attn_input, p.ln1_w + l * C, p.ln1_b + l * C, after_attn,
                    options_.layernorm_eps, N, C, stream);
                mlp_input = ln1;
            }
            matmul_forward<T>(matmul, gelu, pre_gelu, mlp_input, p.fc_w + (size_t)l * 4 * C * C, p.fc_b + l * 4 * C,
                              N, 4 * C, C, stream);
            matmul_forward<T>(matmul, act_.sublayer_out, nullptr, gelu, p.fc_proj_w + (size_t)l * 4 * C * C,
                              p.fc_proj_b + l * C, N, C, 4 * C, stream);
            if (s.post_norm) {
                fused_dropout_residual_layernorm_postnorm_forward<T>(
                    ln2, reinterpret_cast<T*>(residual_mlp), act_.ln2_mean + l * N, act_.ln2_rstd + l * N,
                    act_.sublayer_out, ln1, p.ln2_w + l * C, p.ln2_b + l * C, after_mlp, options_.layernorm_eps, N,
                    C, stream);
            }
        }

        const T* final_hidden;
        if (!s.post_norm) {
            fused_dropout_residual_layernorm_forward<T, R>(
                act_.lnf, act_.residual_final, act_.lnf_mean, act_.lnf_rstd, act_.sublayer_out,
                act_.residual_mlp + (size_t)(L - 1) * N * C, p.lnf_w, p.lnf_b, after_mlp_prev(rng, L),
                options_.layernorm_eps, N, C, stream);
            final_hidden = act_.lnf;
        } else {
            final_hidden = act_.ln2 + (size_t)(L - 1) * N * C;
        }
        const int Vp = s.padded_vocab_size;
        matmul_forward<T>(matmul, act_.logits, nullptr, final_hidden, p.wte, nullptr, N, Vp, C, stream);
        if (with_targets)
            fused_cross_entropy<T>(act_.logits, act_.losses, act_.targets, N, s.vocab_size, Vp, 0.0f, grad_scale,
                                   grad_scale > 0.0f, stream);
    }

    // ------------------------------------------------------------------------------------------
    // Backward, after forward(with_targets, grad_scale > 0) with the same B, T and rng:
    // accumulates (+=) every parameter's gradient into grads(); with sharded gradients it writes
    // this micro-step's gradients into the ZeRO-2 buffers (layer_gradient_slices) instead.
    // layer_grads_done(l), when given, is called for l = L-1 down to 0 once everything that writes
    // layer l's gradients (ParamLayout::layer_ranges(l)) is enqueued on `stream`, so the caller
    // can reduce them while the layers below are computed. Nothing later touches them; wte, wpe
    // and lnf (non_layer_ranges()) are final only when backward returns. With sharded gradients
    // the caller must reduce each layer there and release_layer_gradients() it.
    // The call for layer l + 1 comes just before layer l's attention backward, not as soon as
    // layer l + 1 is done: a collective started beside a GEMM takes SMs that the GEMM's persistent
    // CTAs (cuBLASLt's Hopper kernels launch one per SM) then wait for, while the attention
    // backward's many short CTAs make room for it. 4x H200, gpt2l B=16: 199.9 against 202.8 ms
    // per step, the mean of two runs each (layer 0 has no attention after it: its call comes last).
    void backward(MatmulContext& matmul, int B, int seq, const DropoutSchedule& rng, const int* host_tokens,
                  cudaStream_t stream, const std::function<void(int layer)>& layer_grads_done = nullptr) {
        REQUIRE(layer_grads_done || !shard_.sharded_gradients, "backward: sharded gradients need layer_grads_done");
        const ModelShape& s = options_.shape;
        const int L = s.n_layer, C = s.n_embd, NH = s.n_head, HD = C / NH, N = B * seq, Vp = s.padded_vocab_size;
        const size_t nc = (size_t)N * C;
        const ParamViews<T>& p = param_views_;
        const ParamViews<float>& g = grad_views_;  // wte, wpe, lnf; layers' through layer_grad_views
        T* grad_a = act_.grad_a;    // (N, C)
        T* grad_b = act_.grad_b;    // (N, C)
        T* grad_wide = act_.grad_wide;  // (N, 4C): d(pre_gelu) or d(qkv)

        // LM head: d(final hidden) into grad_b; the tied embedding's gradient accumulates here too.
        const T* final_hidden = s.post_norm ? act_.ln2 + (size_t)(L - 1) * nc : act_.lnf;
        begin_non_layer_gradients(stream);
        begin_layer_gradients(L - 1, stream);
        matmul_backward<T>(matmul, grad_b, nullptr, g.wte, nullptr, act_.logits, final_hidden, p.wte, nullptr, N, Vp,
                           C, stream);
        if (!s.post_norm) {
            // grad_a := d(last MLP output), whose column sums are the last fc_proj bias gradient;
            // grad_residual := d(residual stream before LNf).
            fused_dropout_residual_layernorm_backward<T, R>(
                grad_a, act_.grad_residual, g.lnf_w, g.lnf_b, layer_grad_views(L - 1).fc_proj_b, grad_b,
                act_.residual_final, act_.lnf_mean, act_.lnf_rstd, p.lnf_w, after_mlp_prev(rng, L),
                /*d_residual_is_zero=*/true, N, C, act_.ln_scratch, stream);
        }

        for (int l = L - 1; l >= 0; --l) {
            const DropoutParams attn_drop = rng.site(options_.dropout_attn, L, 1 + 3 * l);
            const DropoutParams after_attn = rng.site(options_.dropout_resid, L, 2 + 3 * l);
            const DropoutParams after_mlp = rng.site(options_.dropout_resid, L, 3 + 3 * l);
            const T* ln1 = act_.ln1 + l * nc;
            const T* ln2 = act_.ln2 + l * nc;
            const T* qkv = act_.qkv + l * 3 * nc;
            const T* att = act_.att + l * nc;
            const float* lse = act_.lse + (size_t)l * N * NH;
            const T* pre_gelu = act_.pre_gelu + l * 4 * nc;
            const T* gelu = options_.recompute_gelu ? act_.gelu_scratch : act_.gelu + l * 4 * nc;
            const ParamViews<float> gl = layer_grad_views(l);
            if (l > 0) begin_layer_gradients(l - 1, stream);  // this layer's LN1 backward writes into it
            if (options_.recompute_gelu) gelu_forward(act_.gelu_scratch, pre_gelu, (long long)N * 4 * C, stream);

            if (s.post_norm) {
                // grad_b: d(h_{l+1}) through the next layer's input; grad_residual: through its
                // residual path (absent for the last layer). -> grad_a = d(mlp output),
                // grad_residual = d(ln1 out) through the residual path.
                fused_dropout_residual_layernorm_postnorm_backward<T>(
                    grad_a, reinterpret_cast<T*>(act_.grad_residual), gl.ln2_w, gl.ln2_b, gl.fc_proj_b, grad_b,
                    l == L - 1 ? nullptr : reinterpret_cast<const T*>(act_.grad_residual),
                    reinterpret_cast<const T*>(act_.residual_mlp + l * nc), act_.ln2_mean + l * N,
                    act_.ln2_rstd + l * N, p.ln2_w + l * C, after_mlp, N, C, act_.ln_scratch, stream);
            }
            // MLP: grad_a = d(fc_proj output) (its column sums, fc_proj's bias gradient, were taken by
            // the LayerNorm backward that wrote it). grad_wide = d(pre_gelu), whose column sums are
            // fc's bias gradient.
            matmul_backward<T>(matmul, grad_wide, gl.fc_b, gl.fc_proj_w, nullptr,
                               grad_a, gelu, p.fc_proj_w + (size_t)l * 4 * C * C, pre_gelu, N, C, 4 * C, stream);
            const T* mlp_input = s.post_norm ? ln1 : ln2;
            matmul_backward<T>(matmul, grad_b, nullptr, gl.fc_w, nullptr, grad_wide, mlp_input,
                               p.fc_w + (size_t)l * 4 * C * C, nullptr, N, 4 * C, C, stream);
            // grad_b = d(MLP input). Through LN2 (pre-norm) or LN1 (post-norm) to d(attention output).
            if (!s.post_norm) {
                fused_dropout_residual_layernorm_backward<T, R>(
                    grad_a, act_.grad_residual, gl.ln2_w, gl.ln2_b, gl.attn_proj_b, grad_b,
                    act_.residual_mlp + l * nc, act_.ln2_mean + l * N, act_.ln2_rstd + l * N, p.ln2_w + l * C,
                    after_attn, /*d_residual_is_zero=*/false, N, C, act_.ln_scratch, stream);
            } else {
                fused_dropout_residual_layernorm_postnorm_backward<T>(
                    grad_a, reinterpret_cast<T*>(act_.grad_residual), gl.ln1_w, gl.ln1_b, gl.attn_proj_b, grad_b,
                    reinterpret_cast<const T*>(act_.grad_residual),
                    reinterpret_cast<const T*>(act_.residual_attn + l * nc), act_.ln1_mean + l * N,
                    act_.ln1_rstd + l * N, p.ln1_w + l * C, after_attn, N, C, act_.ln_scratch, stream);
            }
            // Attention: grad_a = d(attn_proj output), its column sums already in attn_proj's bias
            // gradient (taken by the LayerNorm backward above).
            matmul_backward<T>(matmul, grad_b, nullptr, gl.attn_proj_w, nullptr, grad_a, att,
                               p.attn_proj_w + (size_t)l * C * C, nullptr, N, C, C, stream);
            if (layer_grads_done && l + 1 < L) layer_grads_done(l + 1);
            attention_backward<T>(grad_wide, act_.attention_scratch, grad_b, qkv, att, lse, B, seq, NH, HD,
                                  softmax_scale(l), attn_drop, stream);
            if (s.rotary_dim > 0)
                rotary_backward<T>(grad_wide, B, seq, NH, HD, s.rotary_dim, (float)s.rotary_base, s.rotary_interleaved,
                                   stream);
            const T* attn_input =
                s.post_norm ? (l == 0 ? act_.embedding : act_.ln2 + (l - 1) * nc) : ln1;
            // grad_wide = d(qkv): no kernel of ours writes it with a column sum to spare, so qkv's bias
            // gradient is a separate pass over it (dbias).
            matmul_backward<T>(matmul, grad_b, nullptr, gl.qkv_w, gl.qkv_b,
                               grad_wide, attn_input, p.qkv_w + (size_t)l * 3 * C * C, nullptr, N, 3 * C, C, stream);
            // grad_b = d(attention input).
            if (!s.post_norm) {
                // Through LN1 to d(previous MLP output) in grad_a, whose column sums are the previous
                // layer's fc_proj bias gradient (for layer 0: d(embedding), no bias).
                fused_dropout_residual_layernorm_backward<T, R>(
                    grad_a, act_.grad_residual, gl.ln1_w, gl.ln1_b,
                    l == 0 ? nullptr : layer_grad_views(l - 1).fc_proj_b, grad_b, act_.residual_attn + l * nc,
                    act_.ln1_mean + l * N, act_.ln1_rstd + l * N, p.ln1_w + l * C,
                    l == 0 ? rng.site(options_.dropout_embd, L, 0) : after_mlp_prev(rng, l),
                    /*d_residual_is_zero=*/false, N, C, act_.ln_scratch, stream);
            }
        }
        if (layer_grads_done) layer_grads_done(0);
        // d(embedding output): grad_a in pre-norm (the embedding dropout was inside LN1 of layer 0);
        // in post-norm grad_b (input path) + grad_residual (residual path), through the dropout.
        const T* d_embedding = grad_a;
        if (s.post_norm) {
            dropout_add_backward<T>(grad_a, grad_b, reinterpret_cast<const T*>(act_.grad_residual),
                                    rng.site(options_.dropout_embd, L, 0), (int64_t)N * C, stream);
        }
        encoder_plan_.build(host_tokens, N, stream);
        encoder_backward<T>(g.wte, g.wpe, d_embedding, encoder_plan_, B, seq, C, stream);
    }

    // ------------------------------------------------------------------------------------------
    // AdamW over this rank's optimizer shard of the flat arrays,
    // tensor by tensor (weight decay is per tensor). `grad_scale` = clip factor / loss scale.
    void optimizer_step(float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                        int adam_step, cudaStream_t stream) {
        for (const ParamTensor& tensor : layout_.tensors()) {
            const int64_t begin = std::max(tensor.offset, shard_.begin);
            const int64_t end = std::min(tensor.offset + tensor.numel, shard_.end);
            if (begin >= end) continue;
            const int64_t local = begin - shard_.begin;
            adamw_update<T>(params_ + begin, master_ + local, shard_grads() + local, adam_m_ + local, adam_v_ + local,
                            static_cast<size_t>(end - begin), lr, beta1, beta2, eps,
                            tensor.weight_decay ? weight_decay : 0.0f, grad_scale, adam_step, stream);
        }
    }

  private:
    float softmax_scale(int layer) const {
        const int HD = options_.shape.n_embd / options_.shape.n_head;
        float scale = 1.0f / std::sqrt(static_cast<float>(HD));
        if (options_.shape.scale_attn_by_inverse_layer_idx) scale /= static_cast<float>(layer + 1);
        return scale;
    }
    // The residual dropout after layer (l-1)'s MLP, applied inside the LN call that opens layer l
    // (or LNf for l == n_layer).
    DropoutParams after_mlp_prev(const DropoutSchedule& rng, int l) const {
        return rng.site(options_.dropout_resid, options_.shape.n_layer, 3 + 3 * (l - 1));
    }

    // ------------------------------------------------------------------------------------------
    // Gradient storage

    // Backward writes layer l's gradients into buffer l % kLayerGradBuffers with sharded
    // gradients. Layer l's buffer is first written during layer l + 1 (pre-norm: fc_proj_b's
    // gradient comes from the next LN1's backward), and its reduction is enqueued on the comm
    // stream halfway through layer l - 1 (backward's layer_grads_done). Reusing the buffer for
    // layer l - K, which starts during layer l - K + 1, must wait for an event recorded after
    // that reduction, so it must be enqueued later: K >= 3. Four buffers leave two layers of
    // backward to hide each reduction.
    static constexpr int kLayerGradBuffers = 4;
    static_assert(kLayerGradBuffers >= 3, "a layer's buffer is reused before its reduction is enqueued");

    // Floats of gradient storage (GradientPlan(layout, shard).total_floats()).
    struct GradientPlan {
        int64_t shard_floats = 0;      // the accumulated gradients: the whole arena, or one shard
        int64_t non_layer_floats = 0;  // sharded: wte, wpe, lnf of one micro-step
        int64_t layer_floats = 0;      // sharded: one layer's tensors, per buffer
        GradientPlan(const ParamLayout& layout, const OptimizerShard& shard) {
            if (!shard.sharded_gradients) {
                shard_floats = shard.padded_total;
                return;
            }
            shard_floats = shard.end - shard.begin;
            for (const ParamRange& range : layout.non_layer_ranges()) non_layer_floats += range.count;
            for (const ParamRange& range : layout.layer_ranges(0)) layer_floats += range.count;
        }
        int64_t total_floats() const { return shard_floats + non_layer_floats + kLayerGradBuffers * layer_floats; }
    };

    // Where tensor t (its layer slice, if per-layer) starts inside a ZeRO-2 buffer: buffers hold
    // their tensors packed in ParamLayout order, as layer_ranges()/non_layer_ranges() list them.
    int64_t offset_in_bucket(const ParamTensor& t) const {
        int64_t offset = 0;
        for (const ParamTensor& other : layout_.tensors()) {
            if (&other == &t) return offset;
            if (other.per_layer == t.per_layer)
                offset += t.per_layer ? other.numel / options_.shape.n_layer : other.numel;
        }
        REQUIRE(false, "offset_in_bucket: %s is not in this layout", t.name.c_str());
        return 0;
    }
    float* layer_buffer(int layer) const {
        return layer_grads_ + (layer % kLayerGradBuffers) * gradient_plan_.layer_floats;
    }

    // `ranges` of the flat layout, at their arena offsets, or packed one after another from
    // `buffer` when given.
    std::vector<GradientSlice> slices(const std::vector<ParamRange>& ranges, float* buffer) const {
        std::vector<GradientSlice> out;
        int64_t packed = 0;
        for (const ParamRange& range : ranges) {
            out.push_back({buffer ? buffer + packed : grads_ + range.offset, range.offset, range.count});
            packed += range.count;
        }
        return out;
    }

    // The gradient views of layer `layer`'s tensors (the non-layer ones are nullptr).
    ParamViews<float> layer_grad_views(int layer) const {
        return ParamViews<float>(
            [&](const ParamTensor& t) -> float* {
                if (!t.per_layer) return nullptr;
                return shard_.sharded_gradients ? layer_buffer(layer) + offset_in_bucket(t)
                                                : grads_ + layout_.layer_offset(t, layer);
            },
            layout_);
    }

    // Sharded gradients: before backward's first write of a layer's (or the non-layer) buffer,
    // wait until the caller's reduction of its previous contents is done, then clear it (backward
    // accumulates). Without sharding the arena accumulates over micro-steps: nothing to do.
    void begin_layer_gradients(int layer, cudaStream_t stream) {
        if (!shard_.sharded_gradients) return;
        CUDA_CHECK(cudaStreamWaitEvent(stream, buffer_free_[layer % kLayerGradBuffers], 0));
        CUDA_CHECK(cudaMemsetAsync(layer_buffer(layer), 0, gradient_plan_.layer_floats * sizeof(float), stream));
    }
    void begin_non_layer_gradients(cudaStream_t stream) {
        if (!shard_.sharded_gradients) return;
        CUDA_CHECK(cudaStreamWaitEvent(stream, buffer_free_[kLayerGradBuffers], 0));
        CUDA_CHECK(cudaMemsetAsync(non_layer_grads_, 0, gradient_plan_.non_layer_floats * sizeof(float), stream));
    }

    struct Activations;
    // The activation plan: one slice per tensor, in a fixed order (a counting pass, then the
    // same pass over the allocated arena).
    static void plan_activations(Activations& act_, DeviceArena& a, const ModelOptions& options, int max_batch,
                                 int max_seq) {
        const ModelShape& s = options.shape;
        const size_t L = s.n_layer, C = s.n_embd, NH = s.n_head, HD = C / NH;
        const size_t N = (size_t)max_batch * max_seq;
        act_.tokens = a.reserve<int>(N);
        act_.targets = a.reserve<int>(N);
        act_.embedding = a.reserve<T>(N * C);
        act_.residual_attn = a.reserve<R>(L * N * C);
        act_.residual_mlp = a.reserve<R>(L * N * C);
        act_.residual_final = s.post_norm ? nullptr : a.reserve<R>(N * C);
        act_.ln1 = a.reserve<T>(L * N * C);
        act_.ln1_mean = a.reserve<float>(L * N);
        act_.ln1_rstd = a.reserve<float>(L * N);
        act_.ln2 = a.reserve<T>(L * N * C);
        act_.ln2_mean = a.reserve<float>(L * N);
        act_.ln2_rstd = a.reserve<float>(L * N);
        act_.qkv = a.reserve<T>(L * N * 3 * C);
        act_.att = a.reserve<T>(L * N * C);
        act_.lse = a.reserve<float>(L * N * NH);
        act_.pre_gelu = a.reserve<T>(L * N * 4 * C);
        act_.gelu = options.recompute_gelu ? nullptr : a.reserve<T>(L * N * 4 * C);
        act_.lnf = s.post_norm ? nullptr : a.reserve<T>(N * C);
        act_.lnf_mean = a.reserve<float>(N);
        act_.lnf_rstd = a.reserve<float>(N);
        act_.sublayer_out = a.reserve<T>(N * C);
        act_.logits = a.reserve<T>(N * s.padded_vocab_size);
        act_.losses = a.reserve<float>(N);
        act_.grad_a = a.reserve<T>(N * C);
        act_.grad_b = a.reserve<T>(N * C);
        // The two (N, 4C) scratch tensors live inside the logits buffer when they fit (8C <= Vp,
        // true for every preset): the forward pass writes the logits only after its last use of
        // gelu_scratch, and backward uses both only after the LM head has consumed d(logits).
        if (8 * C <= (size_t)s.padded_vocab_size) {
            act_.grad_wide = act_.logits;
            act_.gelu_scratch = act_.logits ? act_.logits + N * 4 * C : nullptr;
        } else {
            act_.grad_wide = a.reserve<T>(N * 4 * C);
            act_.gelu_scratch = options.recompute_gelu ? a.reserve<T>(N * 4 * C) : nullptr;
        }
        act_.grad_residual = a.reserve<R>(N * C);
        act_.ln_scratch = a.reserve<float>(layernorm_backward_scratch_floats<T, R>((int)N, (int)C));
        act_.attention_scratch =
            a.reserve<float>(attention_backward_scratch_floats(max_batch, max_seq, (int)NH, (int)HD));
    }

    struct Activations {
        int* tokens;
        int* targets;
        T* embedding;     // (N, C); in post-norm: after the embedding dropout
        R* residual_attn; // (L, N, C): pre-norm: residual stream entering LN1; post-norm: the LN1 input sum
        R* residual_mlp;  // (L, N, C): the same for LN2
        R* residual_final;
        T* ln1;           // (L, N, C)
        float* ln1_mean;  // (L, N)
        float* ln1_rstd;
        T* ln2;
        float* ln2_mean;
        float* ln2_rstd;
        T* qkv;       // (L, N, 3C), rotated when rotary
        T* att;       // (L, N, C)
        float* lse;   // (L, B, NH, T)
        T* pre_gelu;  // (L, N, 4C)
        T* gelu;      // (L, N, 4C); nullptr with recompute_gelu
        T* lnf;
        float* lnf_mean;
        float* lnf_rstd;
        T* sublayer_out;  // (N, C): the attention or MLP output projection, consumed at once
        T* logits;        // (N, Vp): overwritten in place by its gradient
        float* losses;    // (N)
        T* grad_a;
        T* grad_b;
        T* grad_wide;     // (N, 4C): d(pre_gelu), then d(qkv)
        T* gelu_scratch;  // (N, 4C): one layer's GELU output with recompute_gelu
        R* grad_residual;
        float* ln_scratch;
        float* attention_scratch;
    };

    ModelOptions options_;
    ParamLayout layout_;
    int max_batch_;
    int max_seq_;
    OptimizerShard shard_;
    GradientPlan gradient_plan_;
    int64_t num_params_ = 0;
    T* params_ = nullptr;
    float* grads_ = nullptr;  // the gradient arena, or with sharded gradients all their storage
    float* master_ = nullptr;
    float* adam_m_ = nullptr;
    float* adam_v_ = nullptr;
    // Sharded gradients (inside grads_, as gradient_plan_ sizes them): the non-layer buffer and
    // kLayerGradBuffers layer buffers; buffer_free_[i] is recorded when buffer i (the non-layer
    // buffer: i = kLayerGradBuffers) has been reduced.
    float* non_layer_grads_ = nullptr;
    float* layer_grads_ = nullptr;
    cudaEvent_t buffer_free_[kLayerGradBuffers + 1] = {};
    float* staging_ = nullptr;  // weight_staging() when the activation arena is too small
    ParamViews<T> param_views_;
    ParamViews<float> grad_views_;  // with sharded gradients: wte, wpe and lnf only
    DeviceArena activations_;
    Activations act_{};
    EncoderBackwardPlan encoder_plan_;
};
