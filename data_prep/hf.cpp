// hf: Hugging Face models to and from model checkpoints (host/hf_interop.h), without Python or a GPU.
//   ./data_prep/hf export CHECKPOINT OUT_DIR [--vocab DIR] [--no-tokenizer] [--layer-scaling fold|flag]
//   ./data_prep/hf import HF_DIR OUT_CHECKPOINT [--pad-vocab-to N]
#include <cstdio>
#include <string>

#include "data_prep/src/options.h"
#include "host/hf_interop.h"

namespace {

using data_prep::Option;
using data_prep::ParsedCommandLine;
using data_prep::UsageError;

const char* const kUsage =
    "usage: ./data_prep/hf export CHECKPOINT OUT_DIR [options]\n"
    "       ./data_prep/hf import HF_DIR OUT_CHECKPOINT [options]\n"
    "\n"
    "export: a model_SSSSSSSS.bin written by train_gpt2cu -> OUT_DIR/model.safetensors, config.json,\n"
    "  generation_config.json and the GPT-2 tokenizer files, loadable by transformers'\n"
    "  AutoModelForCausalLM.from_pretrained(OUT_DIR) with no custom code: learned positions as\n"
    "  GPT2LMHeadModel, rotary as GPTNeoXForCausalLM. Post-norm models cannot be exported.\n"
    "import: a Hugging Face GPT-2 directory (config.json + model.safetensors; F32, F16 or BF16), or a\n"
    "  GPT-NeoX one written by export -> a model checkpoint; train from it with\n"
    "  ./train_gpt2cu -e OUT_CHECKPOINT --dataset ...\n"
    "\n";

void print_summary(const char* verb, const hf::Summary& summary) {
    const ModelShape& s = summary.shape;
    std::printf("%s %s: %d layers, n_embd %d, %d heads, max_seq_len %d, vocab %d (padded %d)%s\n", verb,
                summary.architecture.c_str(), s.n_layer, s.n_embd, s.n_head, s.max_seq_len, s.vocab_size,
                s.padded_vocab_size, s.rotary_dim ? (", rotary_dim " + std::to_string(s.rotary_dim)).c_str() : "");
    for (const std::string& note : summary.notes) std::printf("  note: %s\n", note.c_str());
    for (const std::string& file : summary.files) std::printf("  wrote %s\n", file.c_str());
}

int run(int argc, char** argv) {
    hf::ExportOptions export_options;
    hf::ImportOptions import_options;
    bool help = false;
    const std::string common = "options", for_export = "export", for_import = "import";
    const std::vector<Option> table = {
        {"--help", "", "show this help", [&](const std::string&) { help = true; }, common},
        {"--vocab", "DIR", "GPT-2 encoder.json + vocab.bpe for the tokenizer files (default: where `make setup` puts them)",
         [&](const std::string& v) { export_options.vocab_dir = v; }, for_export},
        {"--no-tokenizer", "", "write no tokenizer files", [&](const std::string&) { export_options.tokenizer = false; },
         for_export},
        {"--layer-scaling", "fold|flag",
         "the extra 1/(layer+1) attention scaling: fold it into the query weights (default; exact under every "
         "transformers attention implementation) or, for GPT-2, set scale_attn_by_inverse_layer_idx (weights "
         "unchanged; needs attn_implementation=\"eager\" in transformers before PR #44397)",
         [&](const std::string& v) {
             if (v != "fold" && v != "flag") throw std::invalid_argument("expected fold or flag");
             export_options.layer_scaling = v == "fold" ? hf::LayerScaling::fold : hf::LayerScaling::flag;
         },
         for_export},
        {"--layernorm-eps", "EPS", "the LayerNorm epsilon the model was trained with (default 1e-5)",
         [&](const std::string& v) { export_options.layernorm_eps = data_prep::parse_number(v, 1e-12, 1.0); }, for_export},
        {"--pad-vocab-to", "N", "pad the vocabulary to a multiple of N rows, as the trainer's --pad-vocab-to (default 128)",
         [&](const std::string& v) { import_options.pad_vocab_to = static_cast<int>(data_prep::parse_integer(v, 1, 65536)); },
         for_import},
    };
    const ParsedCommandLine parsed = data_prep::parse_options(argc, argv, table);
    if (help) {
        std::printf("%s%s", kUsage, data_prep::options_help(table).c_str());
        return 0;
    }
    if (parsed.positional.size() != 3 || (parsed.positional[0] != "export" && parsed.positional[0] != "import"))
        throw UsageError("expected export CHECKPOINT OUT_DIR or import HF_DIR OUT_CHECKPOINT");
    const std::string& command = parsed.positional[0];
    for (const Option* option : parsed.given)
        if (option->group != common && option->group != command)
            throw UsageError(option->name + " applies to " + option->group + ", not " + command);
    if (command == "export")
        print_summary("exported", hf::export_checkpoint(parsed.positional[1], parsed.positional[2], export_options));
    else
        print_summary("imported", hf::import_directory(parsed.positional[1], parsed.positional[2], import_options));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "hf: %s\nRun ./data_prep/hf --help for usage.\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hf: error: %s\n", e.what());
        return 1;
    }
}
