// Named pointers into storage laid out by ParamLayout: one transformer block's tensors
// (LayerParams) and the rest (NonLayerParams: embeddings and the final LayerNorm). The same views
// serve the 16-bit parameters, the fp32 gradients and any buffer that holds a subset of them
// (ZeRO-2's per-layer gradient buffers): `locate` says where each tensor's slice lives.
#pragma once

#include <vector>

#include "model/param_layout.h"

// Layer `layer`'s slice of every per-layer tensor (shapes in model/param_layout.h, without the
// leading n_layer).
template <typename P> struct LayerParams {
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

    // `locate(tensor, layer)` returns where layer `layer`'s slice of `tensor` is stored.
    template <typename Locate> static LayerParams at(const ParamLayout& layout, int layer, const Locate& locate) {
        auto view = [&](const char* name) -> P* { return locate(layout.get(name), layer); };
        LayerParams p;
        p.ln1_w = view("ln1_w");
        p.ln1_b = view("ln1_b");
        p.qkv_w = view("qkv_w");
        p.qkv_b = view("qkv_b");
        p.attn_proj_w = view("attn_proj_w");
        p.attn_proj_b = view("attn_proj_b");
        p.ln2_w = view("ln2_w");
        p.ln2_b = view("ln2_b");
        p.fc_w = view("fc_w");
        p.fc_b = view("fc_b");
        p.fc_proj_w = view("fc_proj_w");
        p.fc_proj_b = view("fc_proj_b");
        return p;
    }
};

// The tensors outside the blocks; wpe is nullptr without learned positions, lnf_* in post-norm.
template <typename P> struct NonLayerParams {
    P* wte = nullptr;
    P* wpe = nullptr;
    P* lnf_w = nullptr;
    P* lnf_b = nullptr;

    // `locate(tensor)` returns where `tensor` is stored.
    template <typename Locate> static NonLayerParams at(const ParamLayout& layout, const Locate& locate) {
        auto view = [&](const char* name) -> P* {
            const ParamTensor* tensor = layout.find(name);
            return tensor ? locate(*tensor) : nullptr;
        };
        NonLayerParams p;
        p.wte = view("wte");
        p.wpe = view("wpe");
        p.lnf_w = view("lnf_w");
        p.lnf_b = view("lnf_b");
        return p;
    }
};

// Every tensor of a flat arena in ParamLayout order (the parameters; the full gradient arena).
template <typename P> struct ArenaViews {
    NonLayerParams<P> non_layer;
    std::vector<LayerParams<P>> layers;  // [n_layer]

    ArenaViews() = default;
    ArenaViews(P* base, const ParamLayout& layout) {
        non_layer = NonLayerParams<P>::at(layout, [&](const ParamTensor& t) { return base + t.offset; });
        for (int l = 0; l < layout.n_layer(); ++l)
            layers.push_back(LayerParams<P>::at(
                layout, l, [&](const ParamTensor& t, int layer) { return base + layout.layer_offset(t, layer); }));
    }
};
