// The GPT on the GPU: the list of layers its forward and backward passes compute. The parts:
//   model/param_layout.h      shape, tensor order and init (plain C++)
//   model/param_views.cuh     named pointers per block and for the embeddings
//   model/parameters.cuh      the 16-bit weights, this rank's fp32 master and AdamW shard
//   model/activations.cuh     what forward keeps for backward, planned once for (B, T)
//   model/block.cuh           attention and MLP, forward beside backward
//   model/residual_stream.cuh pre-norm or post-norm: LayerNorm and the residual joins
//   model/gradient_sink.h     where backward writes gradients (train/grad_sync.cuh provides it)
//   model/kv_cache.cuh        keys and values of generated sequences (prefill, decode_step)
// The loss writes its gradient over the logits, so backward starts from them in place.
// Generation runs the same layers: prefill() is the forward pass over a prompt that also fills
// the KV cache, decode_step() the pass over one new token per sequence that attends over it.
#pragma once

#include <memory>
#include <type_traits>
#include <vector>

#include "kernels/crossentropy.cuh"
#include "kernels/encoder.cuh"
#include "kernels/matmul.cuh"
#include "model/activations.cuh"
#include "model/block.cuh"
#include "model/gradient_sink.h"
#include "model/options.cuh"
#include "model/parameters.cuh"
#include "model/residual_stream.cuh"

// Residual type R: T, or float for the fp32 residual stream (pre-norm only).
template <typename T, typename R> class Gpt2Model {
  public:
    // max_batch, max_seq: the largest B and T any pass will see. `shard`: the optimizer state this
    // rank keeps (OptimizerShard).
    Gpt2Model(const ModelOptions& options, double base_init_std, int max_batch, int max_seq,
              const OptimizerShard& shard)
        : options_(options), layout_(options.shape, base_init_std), max_batch_(max_batch), max_seq_(max_seq),
          parameters_(layout_, shard), encoder_plan_(max_batch * max_seq, options.shape.padded_vocab_size) {
        const ModelShape& s = options_.shape;
        REQUIRE(s.n_embd % s.n_head == 0, "n_embd %d must be a multiple of n_head %d", s.n_embd, s.n_head);
        REQUIRE(s.n_embd % 8 == 0, "n_embd %d must be a multiple of 8", s.n_embd);
        REQUIRE(!(s.post_norm && s.fp32_residual), "the fp32 residual stream is a pre-norm option");
        REQUIRE((std::is_same<R, T>::value) == !s.fp32_residual, "residual type does not match fp32_residual");
        act_.plan(arena_, options_, max_batch_, max_seq_);
        arena_.allocate();
        act_.plan(arena_, options_, max_batch_, max_seq_);
        if (s.post_norm)
            residual_ = std::make_unique<PostNormResidual<T, R>>(options_, act_, parameters_.views());
        else
            residual_ = std::make_unique<PreNormResidual<T, R>>(options_, act_, parameters_.views());
        for (int l = 0; l < s.n_layer; ++l) blocks_.emplace_back(options_, l, parameters_.views().layers[l], act_);
    }
    Gpt2Model(const Gpt2Model&) = delete;
    Gpt2Model& operator=(const Gpt2Model&) = delete;

    // Device memory the activations for (B, T) take, before taking it.
    static size_t activation_bytes(const ModelOptions& options, int max_batch, int max_seq) {
        Activations<T, R> plan{};
        DeviceArena counter;
        plan.plan(counter, options, max_batch, max_seq);
        return counter.bytes();
    }

    const ModelOptions& options() const { return options_; }
    const ParamLayout& layout() const { return layout_; }
    ModelParameters<T>& parameters() { return parameters_; }
    int* device_tokens() { return act_.tokens; }    // (B, T) inputs of the next pass
    int* device_targets() { return act_.targets; }  // (B, T)
    float* losses() { return act_.losses; }          // (B, T) per-token losses
    T* logits() { return act_.logits; }              // (B, T, Vp)
    // The activation arena as `floats` fp32 values, for use between passes (it holds nothing that
    // outlives a step); nullptr when it is smaller.
    float* activation_arena_between_steps(size_t floats) {
        return arena_.bytes() >= floats * sizeof(float) ? arena_.base<float>() : nullptr;
    }

    // Tokens already in device_tokens(). With targets in device_targets() the per-token losses
    // land in losses(); with `grad_scale` > 0 the logits are replaced by d(loss * grad_scale) /
    // d(logits) for backward().
    void forward(MatmulContext& matmul, int B, int seq, const DropoutSchedule& schedule, bool with_targets,
                 float grad_scale, cudaStream_t stream) {
        REQUIRE(B <= max_batch_ && seq <= max_seq_, "batch %dx%d exceeds the planned %dx%d", B, seq, max_batch_, max_seq_);
        const ModelShape& s = options_.shape;
        const int N = B * seq;
        const Pass pass{matmul, B, seq, DropoutSites(schedule, options_), stream};
        const NonLayerParams<T>& p = parameters_.views().non_layer;

        encoder_forward(act_.embedding, act_.tokens, p.wte, p.wpe, B, seq, s.n_embd, stream);
        layers_forward(pass);
        lm_head(pass, act_.logits, 0, N);
        if (with_targets)
            fused_cross_entropy<T>(act_.logits, act_.losses, act_.targets, N, s.vocab_size, s.padded_vocab_size, 0.0f,
                                   grad_scale, grad_scale > 0.0f, stream);
    }

    // Generation, step one for a prompt: its seq tokens (in device_tokens()) through the forward
    // pass without dropout, each layer's keys and values into sequence `slot` of `cache`
    // (positions 0..seq-1), and the logits of its last position into next_logits (Vp).
    void prefill(MatmulContext& matmul, int seq, KvCache& cache, int slot, T* next_logits, cudaStream_t stream) {
        REQUIRE(seq <= max_batch_ * max_seq_ && seq <= cache.max_seq() && slot >= 0 && slot < cache.slots(),
                "prefill: a prompt of %d tokens into sequence %d of a cache of %d x %d (activations for %d tokens)",
                seq, slot, cache.slots(), cache.max_seq(), max_batch_ * max_seq_);
        const Pass pass{matmul, 1, seq, DropoutSites(inference(), options_), stream};
        const NonLayerParams<T>& p = parameters_.views().non_layer;
        encoder_forward(act_.embedding, act_.tokens, p.wte, p.wpe, 1, seq, options_.shape.n_embd, stream);
        layers_forward(pass);
        for (const TransformerBlock<T, R>& block : blocks_) block.store_prompt(pass, cache, slot);
        lm_head(pass, next_logits, seq - 1, 1);
    }

    // Generation, every further token: sequences 0..B-1 of `cache` take one new token each (B ids
    // in device_tokens()) at positions (device, B; the largest is max_position), attending over
    // their cached keys and values, which gain the new token's; next_logits (B, Vp).
    void decode_step(MatmulContext& matmul, int B, KvCache& cache, const int* positions, int max_position,
                     T* next_logits, cudaStream_t stream) {
        REQUIRE(B <= max_batch_ * max_seq_ && B <= cache.slots() && max_position < cache.max_seq(),
                "decode_step: %d sequences up to position %d in a cache of %d x %d (activations for %d tokens)", B,
                max_position, cache.slots(), cache.max_seq(), max_batch_ * max_seq_);
        const DecodeContext decode{&cache, positions, max_position};
        const Pass pass{matmul, B, 1, DropoutSites(inference(), options_), stream, &decode};
        const NonLayerParams<T>& p = parameters_.views().non_layer;
        encoder_forward_at_positions(act_.embedding, act_.tokens, positions, p.wte, p.wpe, B, options_.shape.n_embd,
                                     stream);
        layers_forward(pass);
        lm_head(pass, next_logits, 0, B);
    }

    // After forward(with_targets, grad_scale > 0) with the same B, T and schedule: adds (or stores,
    // GradientSink::gradient_write) every parameter's gradient into `grads`, calling its hooks as
    // model/gradient_sink.h says.
    // host_tokens: the (B, T) inputs, for the embedding backward's plan.
    void backward(MatmulContext& matmul, int B, int seq, const DropoutSchedule& schedule, const int* host_tokens,
                  GradientSink& grads, cudaStream_t stream) {
        backward_to_embedding(matmul, B, seq, schedule, grads, stream);
        embedding_backward(B, seq, host_tokens, grads, stream);
    }

    // backward() in two parts. The first, down to d(embedding output), launches the same kernels
    // with the same arguments for every batch, so a CUDA graph can replay it (train/step_graph.cuh).
    // The second adds the embedding lookups' gradients to wte and wpe; its plan groups the batch's
    // positions by token on the host (EncoderBackwardPlan), so it runs eagerly, after the first.
    void backward_to_embedding(MatmulContext& matmul, int B, int seq, const DropoutSchedule& schedule,
                               GradientSink& grads, cudaStream_t stream) {
        const ModelShape& s = options_.shape;
        const int L = s.n_layer, C = s.n_embd, N = B * seq, Vp = s.padded_vocab_size;
        const Pass pass{matmul, B, seq, DropoutSites(schedule, options_), stream, nullptr, grads.gradient_write()};
        const NonLayerParams<T>& p = parameters_.views().non_layer;
        const NonLayerParams<float>& g = grads.non_layer_gradients();
        const ResidualStream<T, R>& residual = *residual_;

        grads.before_non_layer_writes(stream);
        grads.before_layer_writes(L - 1, stream);
        // LM head: d(final hidden) into grad_b; the tied embedding's gradient, all of its rows, is
        // written here first (the embedding backward adds the batch's tokens' rows to it).
        matmul_backward<T>(matmul, act_.grad_b, nullptr, g.wte, nullptr, act_.logits, residual.final_hidden(pass), p.wte,
                           nullptr, N, Vp, C, pass.gradient_write, stream);
        residual.into_final_backward(pass, grads);
        for (int l = L - 1; l >= 0; --l) {
            if (l > 0) grads.before_layer_writes(l - 1, stream);
            const LayerParams<float>& layer_grads = grads.layer_gradients(l);
            residual.after_mlp_backward(pass, l, grads);
            blocks_[l].mlp_backward(pass, residual.mlp_input(pass, l), layer_grads);
            residual.into_mlp_backward(pass, l, grads);
            // The layer above has been complete since this layer began; it is handed off just
            // before this layer's attention core (TransformerBlock::attention_backward says why).
            blocks_[l].attention_backward(pass, residual.attention_input(pass, l), layer_grads, [&] {
                if (l + 1 < L) grads.layer_ready(l + 1, stream);
            });
            residual.into_attention_backward(pass, l, grads);
        }
        grads.layer_ready(0, stream);
        residual.after_embedding_backward(pass);
    }
    void embedding_backward(int B, int seq, const int* host_tokens, GradientSink& grads, cudaStream_t stream) {
        const NonLayerParams<float>& g = grads.non_layer_gradients();
        encoder_plan_.build(host_tokens, B * seq, stream);
        encoder_backward<T>(g.wte, g.wpe, act_.grad_a /*d(embedding output)*/, encoder_plan_, B, seq,
                            options_.shape.n_embd, grads.gradient_write(), stream);
    }

  private:
    // Every block, from the embedding in act_.embedding to the final hidden state.
    void layers_forward(const Pass& pass) const {
        const ResidualStream<T, R>& residual = *residual_;
        residual.after_embedding(pass);
        for (int l = 0; l < options_.shape.n_layer; ++l) {
            residual.into_attention(pass, l);
            blocks_[l].attention_forward(pass, residual.attention_input(pass, l));
            residual.into_mlp(pass, l);
            blocks_[l].mlp_forward(pass, residual.mlp_input(pass, l));
            residual.after_mlp(pass, l);
        }
        residual.into_final(pass);
    }
    // logits (rows, Vp) = rows first_row.. of the final hidden state @ wte^T (the tied LM head).
    void lm_head(const Pass& pass, T* logits, int first_row, int rows) const {
        const ModelShape& s = options_.shape;
        const T* hidden = residual_->final_hidden(pass) + (size_t)first_row * s.n_embd;
        matmul_forward<T>(pass.matmul, logits, nullptr, hidden, parameters_.views().non_layer.wte, nullptr, rows,
                          s.padded_vocab_size, s.n_embd, pass.stream);
    }
    static DropoutSchedule inference() {
        DropoutSchedule schedule;
        schedule.training = false;
        return schedule;
    }

    ModelOptions options_;
    ParamLayout layout_;
    int max_batch_;
    int max_seq_;
    ModelParameters<T> parameters_;
    DeviceArena arena_;
    Activations<T, R> act_{};
    std::unique_ptr<ResidualStream<T, R>> residual_;
    std::vector<TransformerBlock<T, R>> blocks_;
    EncoderBackwardPlan encoder_plan_;
};
