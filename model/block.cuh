// One transformer block's two sublayers, each forward beside its backward:
//   attention: qkv = x @ qkv_w^T + qkv_b; rotary(q, k); a = FlashAttention(qkv);
//              out = a @ attn_proj_w^T + attn_proj_b
//   MLP:       h = gelu(x @ fc_w^T + fc_b); out = h @ fc_proj_w^T + fc_proj_b
// Each writes its output into the activations' sublayer_out; how that joins the residual stream,
// and where LayerNorm sits, is model/residual_stream.cuh's business. The matmuls carry their bias
// (and GELU) in cuBLASLt epilogues; attention is our FlashAttention on the packed QKV tensor.
// Backward takes d(output) in grad_a and leaves d(input) in grad_b.
// A generation step (a Pass with a DecodeContext) is the same block over one new token per
// sequence, with attention over the KV cache instead of FlashAttention (decode_attention).
#pragma once

#include <cmath>

#include "kernels/attention.cuh"
#include "kernels/attention_decode.cuh"
#include "kernels/matmul.cuh"
#include "kernels/rotary.cuh"
#include "model/activations.cuh"
#include "model/kv_cache.cuh"
#include "model/param_views.cuh"

// One forward or backward pass over B sequences of T tokens; with `decode`, a generation step
// over B sequences of one new token each (seq = 1), at the positions the context gives. A backward
// pass writes the parameter gradients as `gradient_write` says (GradientSink::gradient_write).
struct Pass {
    MatmulContext& matmul;
    int B;
    int seq;
    DropoutSites dropout;
    cudaStream_t stream;
    const DecodeContext* decode = nullptr;
    GradWrite gradient_write = GradWrite::add;
    int tokens() const { return B * seq; }
};

template <typename T, typename R> class TransformerBlock {
  public:
    TransformerBlock(const ModelOptions& options, int layer, const LayerParams<T>& params, const Activations<T, R>& act)
        : shape_(options.shape),
          attention_kernel_(resolve_attention_kernel(options.attention_kernel)),
          layer_(layer),
          p_(params),
          act_(act) {}

    // ---- Attention ----------------------------------------------------------------------------

    void attention_forward(const Pass& pass, const T* input /*(N, C)*/) const {
        const LayerActivations<T, R> a = activations(pass);
        const int N = pass.tokens(), C = shape_.n_embd, NH = shape_.n_head, HD = C / NH;
        matmul_forward<T>(pass.matmul, a.qkv, nullptr, input, p_.qkv_w, p_.qkv_b, N, 3 * C, C, pass.stream);
        if (pass.decode) {
            decode_attention(pass, a);
        } else {
            if (shape_.rotary_dim > 0)
                rotary_forward<T>(a.qkv, pass.B, pass.seq, NH, HD, shape_.rotary_dim, (float)shape_.rotary_base,
                                  shape_.rotary_interleaved, pass.stream);
            attention_forward_using<T>(attention_kernel_, a.att, a.lse, a.qkv, pass.B, pass.seq, NH, HD,
                                       softmax_scale(), pass.dropout.attention_probs(layer_), pass.stream);
        }
        matmul_forward<T>(pass.matmul, act_.sublayer_out, nullptr, a.att, p_.attn_proj_w, p_.attn_proj_b, N, C, C,
                          pass.stream);
    }

    // grad_a = d(output), whose column sums the LayerNorm backward that wrote it already added to
    // attn_proj's bias gradient -> grad_b = d(input). `before_attention_core()` runs between the
    // output projection's backward and the attention backward: a collective started there (the
    // layer above's gradients) shares the GPU with the attention kernels' many short CTAs, not
    // with a GEMM whose persistent CTAs (one per SM) would wait for the SMs it holds.
    template <typename Callback>
    void attention_backward(const Pass& pass, const T* input, const LayerParams<float>& g,
                            const Callback& before_attention_core) const {
        const LayerActivations<T, R> a = activations(pass);
        const int N = pass.tokens(), C = shape_.n_embd, NH = shape_.n_head, HD = C / NH;
        matmul_backward<T>(pass.matmul, act_.grad_b, nullptr, g.attn_proj_w, nullptr, act_.grad_a, a.att,
                           p_.attn_proj_w, nullptr, N, C, C, pass.gradient_write, pass.stream);
        before_attention_core();
        attention_backward_using<T>(attention_kernel_, act_.grad_wide, act_.attention_scratch, act_.grad_b, a.qkv,
                                    a.att, a.lse, pass.B, pass.seq, NH, HD, softmax_scale(),
                                    pass.dropout.attention_probs(layer_), pass.stream);
        if (shape_.rotary_dim > 0)
            rotary_backward<T>(act_.grad_wide, pass.B, pass.seq, NH, HD, shape_.rotary_dim, (float)shape_.rotary_base,
                               shape_.rotary_interleaved, pass.stream);
        // grad_wide = d(qkv): no kernel of ours writes it with a column sum to spare, so qkv's
        // bias gradient is a separate pass over it.
        matmul_backward<T>(pass.matmul, act_.grad_b, nullptr, g.qkv_w, g.qkv_b, act_.grad_wide, input, p_.qkv_w,
                           nullptr, N, 3 * C, C, pass.gradient_write, pass.stream);
    }

    // ---- MLP ----------------------------------------------------------------------------------

    void mlp_forward(const Pass& pass, const T* input /*(N, C)*/) const {
        const LayerActivations<T, R> a = activations(pass);
        const int N = pass.tokens(), C = shape_.n_embd;
        matmul_forward<T>(pass.matmul, a.gelu, a.pre_gelu, input, p_.fc_w, p_.fc_b, N, 4 * C, C, pass.stream);
        matmul_forward<T>(pass.matmul, act_.sublayer_out, nullptr, a.gelu, p_.fc_proj_w, p_.fc_proj_b, N, C, 4 * C,
                          pass.stream);
    }

    // grad_a = d(output), its column sums (fc_proj's bias gradient) taken by the LayerNorm
    // backward that wrote it -> grad_b = d(input). grad_wide = d(pre_gelu) on the way, whose
    // column sums are fc's bias gradient.
    void mlp_backward(const Pass& pass, const T* input, const LayerParams<float>& g) const {
        const LayerActivations<T, R> a = activations(pass);
        const int N = pass.tokens(), C = shape_.n_embd;
        if (act_.recompute_gelu) gelu_forward(a.gelu, a.pre_gelu, (long long)N * 4 * C, pass.stream);
        matmul_backward<T>(pass.matmul, act_.grad_wide, g.fc_b, g.fc_proj_w, nullptr, act_.grad_a, a.gelu,
                           p_.fc_proj_w, a.pre_gelu, N, C, 4 * C, pass.gradient_write, pass.stream);
        matmul_backward<T>(pass.matmul, act_.grad_b, nullptr, g.fc_w, nullptr, act_.grad_wide, input, p_.fc_w, nullptr,
                           N, 4 * C, C, pass.gradient_write, pass.stream);
    }

    // After a prompt's forward pass (Gpt2Model::prefill, B = 1): this layer's keys and values of
    // its seq positions (rotated where rotary) into sequence `slot` of the cache.
    void store_prompt(const Pass& pass, KvCache& cache, int slot) const {
        const int NH = shape_.n_head, HD = shape_.n_embd / NH;
        kv_cache_store_prompt<T>(cache.keys<T>(layer_), cache.values<T>(layer_), activations(pass).qkv, slot, pass.seq,
                                 NH, HD, cache.max_seq(), pass.stream);
    }

  private:
    // One new token per sequence: q and k rotated at the sequences' positions, k and v appended
    // to the cache, then the query attends over the sequence's cached keys (its own included).
    void decode_attention(const Pass& pass, const LayerActivations<T, R>& a) const {
        const DecodeContext& decode = *pass.decode;
        const int NH = shape_.n_head, HD = shape_.n_embd / NH, max_seq = decode.cache->max_seq();
        if (shape_.rotary_dim > 0)
            rotary_forward_at_positions<T>(a.qkv, decode.positions, pass.B, NH, HD, shape_.rotary_dim,
                                           (float)shape_.rotary_base, shape_.rotary_interleaved, pass.stream);
        T* keys = decode.cache->keys<T>(layer_);
        T* values = decode.cache->values<T>(layer_);
        kv_cache_append<T>(keys, values, a.qkv, decode.positions, pass.B, NH, HD, max_seq, pass.stream);
        attention_decode<T>(a.att, decode.cache->scratch(), a.qkv, keys, values, decode.positions, pass.B, NH, HD,
                            max_seq, decode.max_position, softmax_scale(), pass.stream);
    }
    LayerActivations<T, R> activations(const Pass& pass) const {
        return act_.layer(layer_, pass.tokens(), shape_.n_embd, shape_.n_head);
    }
    // 1/sqrt(HD), and the extra 1/(layer+1) of scale_attn_by_inverse_layer_idx.
    float softmax_scale() const {
        const int HD = shape_.n_embd / shape_.n_head;
        float scale = 1.0f / std::sqrt(static_cast<float>(HD));
        if (shape_.scale_attn_by_inverse_layer_idx) scale /= static_cast<float>(layer_ + 1);
        return scale;
    }

    ModelShape shape_;
    AttentionKernel attention_kernel_;
    int layer_;
    LayerParams<T> p_;
    const Activations<T, R>& act_;
};
