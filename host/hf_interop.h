// Hugging Face models both ways: a model checkpoint (host/checkpoint.h) to a directory that
// transformers loads with no custom code, and a transformers GPT-2 directory to a checkpoint the
// trainer starts from (-e FILE). Plain C++: no Python, no GPU. (hf_export.cpp and hf_import.cpp
// implement the two directions; hf_interop.cpp holds the tensor mapping they share.)
//
// Export. model.safetensors (F32) + config.json + generation_config.json, and the GPT-2
// tokenizer (vocab.json = encoder.json, merges.txt = vocab.bpe with its "#version" line,
// tokenizer_config.json naming GPT2Tokenizer) when the vocabulary is GPT-2's 50257 tokens.
//   - learned positions, no rotary -> GPT2LMHeadModel. transformers' Conv1D stores weights as
//     (in, out), so c_attn, c_proj, c_fc and mlp.c_proj are our (out, in) weights transposed;
//     c_attn's columns are (q, k, v) x (head, dim) like our qkv rows. lm_head is tied to wte
//     and not stored (as save_pretrained does).
//   - rotary, no learned positions -> GPTNeoXForCausalLM with use_parallel_residual false (our
//     sequential pre-norm block), rotary_pct = rotary_dim / head_dim, rotary_emb_base, tanh
//     GELU ("gelu_new"), tie_word_embeddings true (embed_out tied to embed_in and not stored;
//     transformers ties it on load). NeoX fuses q, k, v per head: row (h, {q,k,v}, d) of
//     query_key_value is our row ({q,k,v}, h, d). NeoX rotates halves (pairs d, d + r/2); an
//     interleaved-rotary model (pairs 2i, 2i+1) is exported exactly by reordering the first r
//     dims of every q and k head as (0, 2, 4, ..., r-2, 1, 3, ..., r-1): NeoX's pair i is then
//     our pair i at the same frequency base^(-2i/r), and q.k sums over all dims, so the order
//     of the dims within a head does not change the scores (v is left as it is).
//   - The extra 1/(layer+1) attention scaling: NeoX has none, and GPT-2's
//     scale_attn_by_inverse_layer_idx is honoured only by transformers' eager attention (its
//     SDPA and FlashAttention paths ignored it until transformers PR #44397), so by default it
//     is folded into the query rows of the QKV weight and bias: q' = fl(q / (layer + 1)), which
//     scales q.k by exactly 1/(layer+1) up to that one rounding. LayerScaling::flag writes
//     GPT-2's flag instead (the weights unchanged; exact with attn_implementation="eager").
//   - Padded vocabulary rows are dropped: no token id reaches them and their logits are never
//     computed (the trainer keeps them at their initial values; importing pads with zeros).
//   - Refused, with a message saying why: post-norm (no transformers architecture puts the
//     LayerNorm after the residual add and has no final LayerNorm), rotary with learned
//     positions, and neither (no position information).
//
// Import. config.json + model.safetensors (or a model.safetensors.index.json and its shards),
// F32, F16 or BF16. model_type "gpt2" (GPT2LMHeadModel: what users fine-tune from OpenAI's
// weights) and "gpt_neox" in the form export writes (sequential residual, tanh GELU, tied or
// identical embed_out), so that exported models come back. Every tensor's name and shape is
// checked; unknown tensors, other architectures and configurations our model cannot compute
// exactly are errors naming the file and the field. The vocabulary is padded with zero rows to
// a multiple of pad_vocab_to (the trainer's --pad-vocab-to, default 128); n_positions /
// max_position_embeddings become max_seq_len. A GPT-2 file's scale_attn_by_inverse_layer_idx
// becomes our flag; a model exported with folded scaling or interleaved rotary comes back as the
// equivalent plain model (scaling folded, rotate-half).
#pragma once

#include <string>
#include <vector>

#include "model/param_layout.h"

namespace hf {

enum class LayerScaling {
    fold,  // divide the query rows by (layer + 1): exact under every attention implementation
    flag,  // GPT-2 only: scale_attn_by_inverse_layer_idx true, weights as they are
};

struct ExportOptions {
    std::string vocab_dir;  // encoder.json + vocab.bpe; empty: Gpt2Tokenizer::default_vocab_dir()
    bool tokenizer = true;  // write the tokenizer files (GPT-2 vocabulary only)
    LayerScaling layer_scaling = LayerScaling::fold;
    double layernorm_eps = 1e-5;  // the trainer's --layernorm-eps (model files do not record it)
};

struct Summary {
    std::string architecture;        // "GPT2LMHeadModel" or "GPTNeoXForCausalLM"
    ModelShape shape;                // of the checkpoint exported or written
    std::vector<std::string> files;  // written
    std::vector<std::string> notes;  // what was transformed, what was left out
};

// Throws std::runtime_error naming the checkpoint (a model it cannot express) or the file
// that could not be written. Creates out_dir if needed; overwrites the files it writes.
Summary export_checkpoint(const std::string& checkpoint_path, const std::string& out_dir, const ExportOptions& options);

struct ImportOptions {
    int pad_vocab_to = 128;
};

// Throws std::runtime_error naming the file and what is wrong (missing or unexpected tensor,
// shape, unsupported architecture or setting).
Summary import_directory(const std::string& hf_dir, const std::string& checkpoint_path, const ImportOptions& options);

}  // namespace hf
