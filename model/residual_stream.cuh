// Where LayerNorm sits and how each sublayer's output joins the residual stream: the only place
// that knows pre-norm from post-norm. As the seed computes them (flash-attn's GPT, dropout at
// three sites):
//   pre-norm:  residual = dropout(emb)                         (inside block 0's first LN call)
//              per layer: h = LN1(residual); residual += dropout(attn(h));
//                         h = LN2(residual); residual += dropout(mlp(h))
//              logits = LNf(residual) @ wte^T
//   post-norm: h = dropout(emb)
//              per layer: h = LN1(h + dropout(attn(h))); h = LN2(h + dropout(mlp(h)))
//              logits = h @ wte^T
// Each "residual += dropout(x); LN(residual)" is one fused kernel (kernels/layernorm.cuh), which
// reads the sublayer output from the activations' sublayer_out.
//
// The forward pass calls, per layer: into_attention, (attention), into_mlp, (MLP), after_mlp;
// then into_final. Backward calls the *_backward steps in the reverse order; between them the
// gradient travels in grad_a (d of a sublayer's output) and grad_b (d of a sublayer's input or
// of the final hidden state), as each step's comment says. Bias gradients of the output
// projections come from the LayerNorm backward that writes d(sublayer output) (its column sums),
// never from the weight-gradient GEMMs (kernels/matmul.cuh says why).
#pragma once

#include "kernels/dropout.cuh"
#include "kernels/layernorm.cuh"
#include "model/activations.cuh"
#include "model/block.cuh"
#include "model/gradient_sink.h"

template <typename T, typename R> class ResidualStream {
  public:
    virtual ~ResidualStream() = default;

    // Forward. The inputs of the two sublayers and of the LM head, once the step before them ran.
    virtual void after_embedding(const Pass& pass) const = 0;
    virtual void into_attention(const Pass& pass, int layer) const = 0;
    virtual void into_mlp(const Pass& pass, int layer) const = 0;
    virtual void after_mlp(const Pass& pass, int layer) const = 0;
    virtual void into_final(const Pass& pass) const = 0;
    virtual const T* attention_input(const Pass& pass, int layer) const = 0;
    virtual const T* mlp_input(const Pass& pass, int layer) const = 0;
    virtual const T* final_hidden(const Pass& pass) const = 0;

    // Backward: the mirror of each forward step.
    virtual void into_final_backward(const Pass& pass, const GradientSink& grads) const = 0;      // grad_b -> grad_a
    virtual void after_mlp_backward(const Pass& pass, int layer, const GradientSink& grads) const = 0;  // grad_b -> grad_a
    virtual void into_mlp_backward(const Pass& pass, int layer, const GradientSink& grads) const = 0;   // grad_b -> grad_a
    virtual void into_attention_backward(const Pass& pass, int layer, const GradientSink& grads) const = 0;  // grad_b -> grad_a
    // After the last step above: grad_a = d(embedding output).
    virtual void after_embedding_backward(const Pass& pass) const = 0;
};

// Pre-norm, with the residual stream in R (T, or fp32). The LN before layer l's attention adds
// layer l-1's MLP output (dropout site after_mlp(l-1)) to the stream; LNf adds the last one.
template <typename T, typename R> class PreNormResidual final : public ResidualStream<T, R> {
  public:
    PreNormResidual(const ModelOptions& options, const Activations<T, R>& act, const ArenaViews<T>& params)
        : options_(options), act_(act), params_(params) {}

    void after_embedding(const Pass&) const override {}  // its dropout is inside layer 0's LN1
    void into_attention(const Pass& pass, int l) const override {
        const LayerActivations<T, R> a = layer(pass, l);
        const T* x = l == 0 ? act_.embedding : act_.sublayer_out;
        const R* residual_in = l == 0 ? nullptr : layer(pass, l - 1).residual_mlp;
        const LayerParams<T>& p = params_.layers[l];
        fused_dropout_residual_layernorm_forward<T, R>(a.ln1, a.residual_attn, a.ln1_mean, a.ln1_rstd, x, residual_in,
                                                       p.ln1_w, p.ln1_b, added_before(pass, l), options_.layernorm_eps,
                                                       pass.tokens(), C(), pass.stream);
    }
    void into_mlp(const Pass& pass, int l) const override {
        const LayerActivations<T, R> a = layer(pass, l);
        const LayerParams<T>& p = params_.layers[l];
        fused_dropout_residual_layernorm_forward<T, R>(a.ln2, a.residual_mlp, a.ln2_mean, a.ln2_rstd, act_.sublayer_out,
                                                       a.residual_attn, p.ln2_w, p.ln2_b,
                                                       pass.dropout.after_attention(l), options_.layernorm_eps,
                                                       pass.tokens(), C(), pass.stream);
    }
    void after_mlp(const Pass&, int) const override {}  // joins the stream in the next LN
    void into_final(const Pass& pass) const override {
        const int L = options_.shape.n_layer;
        fused_dropout_residual_layernorm_forward<T, R>(
            act_.lnf, act_.residual_final, act_.lnf_mean, act_.lnf_rstd, act_.sublayer_out,
            layer(pass, L - 1).residual_mlp, params_.non_layer.lnf_w, params_.non_layer.lnf_b, added_before(pass, L),
            options_.layernorm_eps, pass.tokens(), C(), pass.stream);
    }
    const T* attention_input(const Pass& pass, int l) const override { return layer(pass, l).ln1; }
    const T* mlp_input(const Pass& pass, int l) const override { return layer(pass, l).ln2; }
    const T* final_hidden(const Pass&) const override { return act_.lnf; }

    // grad_b = d(LNf output) -> grad_a = d(last MLP output), whose column sums are the last
    // fc_proj bias gradient; grad_residual = d(residual stream before LNf).
    void into_final_backward(const Pass& pass, const GradientSink& grads) const override {
        const int L = options_.shape.n_layer;
        const NonLayerParams<float>& g = grads.non_layer_gradients();
        fused_dropout_residual_layernorm_backward<T, R>(
            act_.grad_a, act_.grad_residual, g.lnf_w, g.lnf_b, grads.layer_gradients(L - 1).fc_proj_b, act_.grad_b,
            act_.residual_final, act_.lnf_mean, act_.lnf_rstd, params_.non_layer.lnf_w, added_before(pass, L),
            /*d_residual_is_zero=*/true, pass.tokens(), C(), pass.gradient_write, act_.ln_scratch, pass.stream);
    }
    void after_mlp_backward(const Pass&, int, const GradientSink&) const override {}
    // grad_b = d(LN2 output) -> grad_a = d(attention output), its column sums into attn_proj's
    // bias gradient.
    void into_mlp_backward(const Pass& pass, int l, const GradientSink& grads) const override {
        const LayerActivations<T, R> a = layer(pass, l);
        const LayerParams<float>& g = grads.layer_gradients(l);
        fused_dropout_residual_layernorm_backward<T, R>(
            act_.grad_a, act_.grad_residual, g.ln2_w, g.ln2_b, g.attn_proj_b, act_.grad_b, a.residual_mlp, a.ln2_mean,
            a.ln2_rstd, params_.layers[l].ln2_w, pass.dropout.after_attention(l), /*d_residual_is_zero=*/false,
            pass.tokens(), C(), pass.gradient_write, act_.ln_scratch, pass.stream);
    }
    // grad_b = d(LN1 output) -> grad_a = d(previous MLP output), whose column sums are the
    // previous layer's fc_proj bias gradient (for layer 0: d(embedding), no bias).
    void into_attention_backward(const Pass& pass, int l, const GradientSink& grads) const override {
        const LayerActivations<T, R> a = layer(pass, l);
        const LayerParams<float>& g = grads.layer_gradients(l);
        fused_dropout_residual_layernorm_backward<T, R>(
            act_.grad_a, act_.grad_residual, g.ln1_w, g.ln1_b, l == 0 ? nullptr : grads.layer_gradients(l - 1).fc_proj_b,
            act_.grad_b, a.residual_attn, a.ln1_mean, a.ln1_rstd, params_.layers[l].ln1_w, added_before(pass, l),
            /*d_residual_is_zero=*/false, pass.tokens(), C(), pass.gradient_write, act_.ln_scratch, pass.stream);
    }
    void after_embedding_backward(const Pass&) const override {}  // LN1 of layer 0 wrote it into grad_a

  private:
    int C() const { return options_.shape.n_embd; }
    LayerActivations<T, R> layer(const Pass& pass, int l) const {
        return act_.layer(l, pass.tokens(), C(), options_.shape.n_head);
    }
    // The dropout of what the LN before layer l (l = n_layer: LNf) adds to the stream: the
    // embedding, or layer l-1's MLP output.
    DropoutParams added_before(const Pass& pass, int l) const {
        return l == 0 ? pass.dropout.embedding() : pass.dropout.after_mlp(l - 1);
    }
    const ModelOptions& options_;
    const Activations<T, R>& act_;
    const ArenaViews<T>& params_;
};

// Post-norm: the hidden state is the stream (stored in T; the fp32 residual is a pre-norm
// option, so R == T here). Layer l's LN1 sums its input and its attention output, LN2 the LN1
// output and its MLP output; the last LN2's output feeds the LM head.
template <typename T, typename R> class PostNormResidual final : public ResidualStream<T, R> {
  public:
    PostNormResidual(const ModelOptions& options, const Activations<T, R>& act, const ArenaViews<T>& params)
        : options_(options), act_(act), params_(params) {
        REQUIRE((std::is_same<R, T>::value), "the fp32 residual stream is a pre-norm option");
    }

    void after_embedding(const Pass& pass) const override {
        dropout_forward(act_.embedding, act_.embedding, pass.dropout.embedding(), (int64_t)pass.tokens() * C(),
                        pass.stream);
    }
    void into_attention(const Pass&, int) const override {}
    void into_mlp(const Pass& pass, int l) const override {
        const LayerActivations<T, R> a = layer(pass, l);
        const LayerParams<T>& p = params_.layers[l];
        fused_dropout_residual_layernorm_postnorm_forward<T>(
            a.ln1, stream_t(a.residual_attn), a.ln1_mean, a.ln1_rstd, act_.sublayer_out, attention_input(pass, l),
            p.ln1_w, p.ln1_b, pass.dropout.after_attention(l), options_.layernorm_eps, pass.tokens(), C(), pass.stream);
    }
    void after_mlp(const Pass& pass, int l) const override {
        const LayerActivations<T, R> a = layer(pass, l);
        const LayerParams<T>& p = params_.layers[l];
        fused_dropout_residual_layernorm_postnorm_forward<T>(
            a.ln2, stream_t(a.residual_mlp), a.ln2_mean, a.ln2_rstd, act_.sublayer_out, a.ln1, p.ln2_w, p.ln2_b,
            pass.dropout.after_mlp(l), options_.layernorm_eps, pass.tokens(), C(), pass.stream);
    }
    void into_final(const Pass&) const override {}
    const T* attention_input(const Pass& pass, int l) const override {
        return l == 0 ? act_.embedding : layer(pass, l - 1).ln2;
    }
    const T* mlp_input(const Pass& pass, int l) const override { return layer(pass, l).ln1; }
    const T* final_hidden(const Pass& pass) const override { return layer(pass, options_.shape.n_layer - 1).ln2; }

    void into_final_backward(const Pass&, const GradientSink&) const override {}  // grad_b already d(LN2 output)
    // grad_b = d(h_{l+1}) through the next layer's input, grad_residual = through its residual
    // path (absent for the last layer) -> grad_a = d(MLP output), grad_residual = d(LN1 output)
    // through the residual path.
    void after_mlp_backward(const Pass& pass, int l, const GradientSink& grads) const override {
        const LayerActivations<T, R> a = layer(pass, l);
        const LayerParams<float>& g = grads.layer_gradients(l);
        const bool last = l == options_.shape.n_layer - 1;
        fused_dropout_residual_layernorm_postnorm_backward<T>(
            act_.grad_a, stream_t(act_.grad_residual), g.ln2_w, g.ln2_b, g.fc_proj_b, act_.grad_b,
            last ? nullptr : stream_t(act_.grad_residual), stream_t(a.residual_mlp), a.ln2_mean, a.ln2_rstd,
            params_.layers[l].ln2_w, pass.dropout.after_mlp(l), pass.tokens(), C(), pass.gradient_write,
            act_.ln_scratch, pass.stream);
    }
    // grad_b = d(LN1 output) through the MLP, plus grad_residual -> grad_a = d(attention output),
    // grad_residual = d(layer input) through the residual path.
    void into_mlp_backward(const Pass& pass, int l, const GradientSink& grads) const override {
        const LayerActivations<T, R> a = layer(pass, l);
        const LayerParams<float>& g = grads.layer_gradients(l);
        fused_dropout_residual_layernorm_postnorm_backward<T>(
            act_.grad_a, stream_t(act_.grad_residual), g.ln1_w, g.ln1_b, g.attn_proj_b, act_.grad_b,
            stream_t(act_.grad_residual), stream_t(a.residual_attn), a.ln1_mean, a.ln1_rstd, params_.layers[l].ln1_w,
            pass.dropout.after_attention(l), pass.tokens(), C(), pass.gradient_write, act_.ln_scratch, pass.stream);
    }
    void into_attention_backward(const Pass&, int, const GradientSink&) const override {}
    // d(embedding output) = dropout'(grad_b + grad_residual), into grad_a.
    void after_embedding_backward(const Pass& pass) const override {
        dropout_add_backward<T>(act_.grad_a, act_.grad_b, stream_t(act_.grad_residual), pass.dropout.embedding(),
                                (int64_t)pass.tokens() * C(), pass.stream);
    }

  private:
    int C() const { return options_.shape.n_embd; }
    LayerActivations<T, R> layer(const Pass& pass, int l) const {
        return act_.layer(l, pass.tokens(), C(), options_.shape.n_head);
    }
    static T* stream_t(R* p) { return reinterpret_cast<T*>(p); }
    const ModelOptions& options_;
    const Activations<T, R>& act_;
    const ArenaViews<T>& params_;
};
