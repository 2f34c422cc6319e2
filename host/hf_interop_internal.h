// What Hugging Face export (hf_export.cpp) and import (hf_import.cpp) share: the two
// architectures' names, the mapping between their tensors and ours (one table serves both
// directions, hf_interop.cpp), a checkpoint's weights with named slices, and reading a text file.
// Internal to those files; host/hf_interop.h is the API.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/param_layout.h"

namespace hf::internal {

using Json = nlohmann::ordered_json;

const char* const kGpt2Architecture = "GPT2LMHeadModel";
const char* const kNeoxArchitecture = "GPTNeoXForCausalLM";
const char* const kGpt2Prefix = "transformer.";
const char* const kNeoxPrefix = "gpt_neox.";

// ---------------------------------------------------------------------------------------------
// Tensor layouts. Each Hugging Face tensor is a rearrangement of one tensor of ours (or one
// layer's slice of it); the same mapping serves both directions.

enum class Layout {
    copy,       // element i is our element i (the first hf-numel elements: unpadded wte rows)
    transpose,  // Conv1D: hf (K, R) is our (R, K) transposed
    neox_qkv,   // hf row (head, part, d) is our row (part, head, d); rows of `cols` elements
};

struct TensorMapping {
    std::string hf_name;
    std::vector<int64_t> hf_shape;
    std::string ours;
    int layer = -1;  // -1: the whole tensor
    Layout layout = Layout::copy;
    int64_t rows = 0, cols = 0;  // transpose: our (rows, cols); neox_qkv: 3C rows of cols elements
    int n_head = 0, head_dim = 0;
    int64_t numel() const {
        int64_t count = 1;
        for (int64_t dim : hf_shape) count *= dim;
        return count;
    }
};

// hf[i] from ours (to_hf) or ours from hf[i] (!to_hf); `ours` points at the tensor's slice.
void rearrange(const TensorMapping& m, float* ours, float* hf, bool to_hf);

// Whether `s` is GPT-2's kind of model (learned positions, no rotary); otherwise GPT-NeoX's.
bool is_gpt2_shape(const ModelShape& s);

// Every tensor of the Hugging Face model for `shape`, in the order export writes them. `prefix`:
// the base model's prefix ("transformer." / "gpt_neox."), or "" for files saved from the base
// model (OpenAI's gpt2 on the hub). `with_attention_bias`: NeoX's attention_bias.
std::vector<TensorMapping> tensor_mappings(const ModelShape& s, const std::string& prefix, bool with_attention_bias);

// A checkpoint's weights with the slices the mappings name.
struct Weights {
    ModelShape shape;
    ParamLayout layout;
    std::vector<float> values;

    explicit Weights(const ModelShape& model_shape)
        : shape(model_shape), layout(model_shape, 0.0), values(static_cast<size_t>(layout.total()), 0.0f) {}
    float* slice(const std::string& name, int layer) {
        const ParamTensor& tensor = layout.get(name);
        return values.data() + (layer < 0 ? tensor.offset : layout.layer_offset(tensor, layer));
    }
};

// The whole file; throws naming the file and `what` it is for if it cannot be read.
std::string read_text_file(const std::string& path, const std::string& what);

}  // namespace hf::internal
