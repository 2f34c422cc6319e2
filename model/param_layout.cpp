#include "model/param_layout.h"

#include <cmath>
#include <stdexcept>
#include <tuple>

namespace {
auto shape_fields(const ModelShape& s) {
    return std::tie(s.n_layer, s.n_embd, s.n_head, s.max_seq_len, s.vocab_size, s.padded_vocab_size, s.learned_pos_emb,
                    s.post_norm, s.rotary_interleaved, s.scale_attn_by_inverse_layer_idx, s.fp32_residual,
                    s.rotary_dim, s.rotary_base);
}
}  // namespace

bool ModelShape::operator==(const ModelShape& other) const { return shape_fields(*this) == shape_fields(other); }

double residual_projection_init_std(double base_std, int n_layer) { return base_std / std::sqrt(2.0 * n_layer); }

ParamLayout::ParamLayout(const ModelShape& shape, double base_init_std) : n_layer_(shape.n_layer) {
    const int64_t L = shape.n_layer, C = shape.n_embd;
    const double projection_std = residual_projection_init_std(base_init_std, shape.n_layer);
    auto add = [&](const char* name, std::vector<int64_t> dims, bool per_layer, ParamInit init, double std,
                   bool decay) {
        ParamTensor tensor;
        tensor.name = name;
        tensor.numel = 1;
        for (int64_t d : dims) tensor.numel *= d;
        tensor.shape = std::move(dims);
        tensor.offset = total_;
        tensor.per_layer = per_layer;
        tensor.weight_decay = decay;
        tensor.init = init;
        tensor.init_std = init == ParamInit::normal ? std : 0.0;
        total_ += tensor.numel;
        tensors_.push_back(std::move(tensor));
    };
    const auto normal = ParamInit::normal, zeros = ParamInit::zeros, ones = ParamInit::ones;
    add("wte", {shape.padded_vocab_size, C}, false, normal, base_init_std, false);
    if (shape.learned_pos_emb) add("wpe", {shape.max_seq_len, C}, false, normal, base_init_std, false);
    add("ln1_w", {L, C}, true, ones, 0, false);
    add("ln1_b", {L, C}, true, zeros, 0, false);
    add("qkv_w", {L, 3 * C, C}, true, normal, base_init_std, true);
    add("qkv_b", {L, 3 * C}, true, zeros, 0, false);
    add("attn_proj_w", {L, C, C}, true, normal, projection_std, true);
    add("attn_proj_b", {L, C}, true, zeros, 0, false);
    add("ln2_w", {L, C}, true, ones, 0, false);
    add("ln2_b", {L, C}, true, zeros, 0, false);
    add("fc_w", {L, 4 * C, C}, true, normal, base_init_std, true);
    add("fc_b", {L, 4 * C}, true, zeros, 0, false);
    add("fc_proj_w", {L, C, 4 * C}, true, normal, projection_std, true);
    add("fc_proj_b", {L, C}, true, zeros, 0, false);
    if (!shape.post_norm) {
        add("lnf_w", {C}, false, ones, 0, false);
        add("lnf_b", {C}, false, zeros, 0, false);
    }
}

const ParamTensor* ParamLayout::find(std::string_view name) const {
    for (const ParamTensor& tensor : tensors_)
        if (tensor.name == name) return &tensor;
    return nullptr;
}

const ParamTensor& ParamLayout::get(std::string_view name) const {
    const ParamTensor* tensor = find(name);
    if (!tensor) throw std::out_of_range("this model has no parameter tensor '" + std::string(name) + "'");
    return *tensor;
}

int64_t ParamLayout::layer_offset(const ParamTensor& tensor, int layer) const {
    if (!tensor.per_layer) throw std::invalid_argument(tensor.name + " is not a per-layer tensor");
    if (layer < 0 || layer >= n_layer_)
        throw std::out_of_range("layer " + std::to_string(layer) + " of " + tensor.name + " (n_layer " +
                                std::to_string(n_layer_) + ")");
    return tensor.offset + layer * (tensor.numel / n_layer_);
}

namespace {
void append_merged(std::vector<ParamRange>& ranges, int64_t offset, int64_t count) {
    if (!ranges.empty() && ranges.back().offset + ranges.back().count == offset) ranges.back().count += count;
    else ranges.push_back({offset, count});
}
}  // namespace

std::vector<ParamRange> ParamLayout::layer_ranges(int layer) const {
    std::vector<ParamRange> ranges;
    for (const ParamTensor& tensor : tensors_)
        if (tensor.per_layer) append_merged(ranges, layer_offset(tensor, layer), tensor.numel / n_layer_);
    return ranges;
}

std::vector<ParamRange> ParamLayout::non_layer_ranges() const {
    std::vector<ParamRange> ranges;
    for (const ParamTensor& tensor : tensors_)
        if (!tensor.per_layer) append_merged(ranges, tensor.offset, tensor.numel);
    return ranges;
}
