// prepare: turns a dataset into token shards. `./data_prep/prepare --help` for usage; the
// recipes are described in data_prep/src/recipes.h.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>

#include "data_prep/src/options.h"
#include "data_prep/src/recipes.h"

namespace {

using data_prep::DocumentSplit;
using data_prep::Option;
using data_prep::ParsedCommandLine;
using data_prep::UsageError;
using data_prep::parse_integer;
using data_prep::parse_number;

const char* const kUsage =
    "usage: ./data_prep/prepare <recipe> [options]\n"
    "\n"
    "Tokenizes a dataset with the GPT-2 tokenizer into shards of uint16 tokens,\n"
    "${DATA_DIR:-data}/<dir>/<dataset>_{train,val,test}_NNNNNN.bin, plus manifest.json (written last;\n"
    "it means the dataset is complete). A complete dataset is not rebuilt unless --force, or unless\n"
    "its inputs (paths, sizes, modification times) or settings differ from this run's; an\n"
    "interrupted run is restarted cleanly. Downloads resume where they stopped.\n"
    "\n"
    "recipes:\n"
    "  tiny         nlp-corpus from `make setup` (about 2M tokens), 2% val -> data/tiny\n"
    "  openwebtext  OpenWebText (download or --source-dir), the seed's 0.05% val holdout -> data/openwebtext\n"
    "  pile         The Pile's train/val/test .jsonl.zst (download or --source-dir) -> data/the_pile\n"
    "  text         your own text: --input PATH|DIR|GLOB ... --name NAME -> data/NAME\n"
    "               (.txt, .jsonl, .json; .gz/.xz/.zst/.bz2/.lzma compressed; tar archives, nested too)\n"
    "  hellaswag    HellaSwag's validation jsonl (download or --source-dir) tokenized for the evaluator\n"
    "               -> data/hellaswag/hellaswag_val.bin\n"
    "\n";

std::string format_fraction(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", value);
    return text;
}

int run(int argc, char** argv) {
    data_prep::PrepareOptions options;
    const char* data_dir = std::getenv("DATA_DIR");
    if (data_dir && *data_dir) options.data_dir = data_dir;
    options.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    bool help = false;

    const std::string common = "options (all recipes)";
    const std::string text = "text recipe (--text-field, --skip-invalid-json: pile too)";
    const std::string sources = "sources (tiny, openwebtext, pile, hellaswag)";
    const std::vector<Option> table = {
        {"--data-dir", "DIR", "parent of the dataset directories (default: $DATA_DIR, else ./data)",
         [&](const std::string& v) { options.data_dir = v; }, common},
        {"--shard-tokens", "N",
         "tokens per shard (default " + std::to_string(data_prep::default_shard_tokens("openwebtext")) + "; tiny " +
             std::to_string(data_prep::default_shard_tokens("tiny")) + ")",
         [&](const std::string& v) { options.shard_tokens = parse_integer(v, 1, INT32_MAX); }, common},
        {"--threads", "N", "tokenizer threads (default: all " + std::to_string(options.threads) + " cores)",
         [&](const std::string& v) { options.threads = static_cast<int>(parse_integer(v, 1, 4096)); }, common},
        {"--vocab", "DIR", "GPT-2 encoder.json + vocab.bpe (default: where `make setup` puts them)",
         [&](const std::string& v) { options.vocab_dir = v; }, common},
        {"--val-fraction", "F",
         "fraction of documents held out as val (default: tiny " + format_fraction(data_prep::default_val_fraction("tiny")) +
             ", openwebtext " + format_fraction(data_prep::default_val_fraction("openwebtext")) + ", text " +
             format_fraction(data_prep::default_val_fraction("text")) + ")",
         [&](const std::string& v) { options.val_fraction = parse_number(v, 0.0, 0.5); }, common},
        {"--seed", "N", "seed of the val holdout shuffle (default " + std::to_string(data_prep::kDefaultSeed) + ")",
         [&](const std::string& v) { options.seed = static_cast<uint64_t>(parse_integer(v, 0, INT64_MAX)); }, common},
        {"--force", "", "rebuild a dataset that is already complete", [&](const std::string&) { options.force = true; }, common},
        {"--help", "", "show this help", [&](const std::string&) { help = true; }, common},
        {"--input", "PATH", "a file, directory (recursive) or glob; repeatable",
         [&](const std::string& v) { options.inputs.push_back(v); }, text},
        {"--name", "NAME", "dataset name: output directory and shard prefix", [&](const std::string& v) { options.name = v; },
         text},
        {"--text-field", "NAME", "field of each .jsonl object holding the text (default \"text\")",
         [&](const std::string& v) { options.reader.text_field = v; }, text},
        {"--doc-split", "MODE",
         "documents in plain text: file (each file or archive member, default), line, or paragraph (blank-line separated)",
         [&](const std::string& v) {
             const std::map<std::string, DocumentSplit> modes = {
                 {"file", DocumentSplit::kWholeFile}, {"line", DocumentSplit::kLine}, {"paragraph", DocumentSplit::kBlankLine}};
             if (!modes.count(v)) throw std::invalid_argument("expected file, line or paragraph");
             options.reader.text_split = modes.at(v);
         },
         text},
        {"--skip-invalid-json", "", "skip (and count in manifest.json) .jsonl lines that are not valid JSON with a text field",
         [&](const std::string&) { options.skip_invalid_documents = true; }, text},
        {"--source-dir", "DIR",
         "where the source files are or get downloaded (default: data/<dir>/downloads; tiny: the npm package; "
         "openwebtext: openwebtext.tar.xz, or its urlsf_subset*.xz archives already extracted)",
         [&](const std::string& v) { options.source_dir = v; }, sources},
        {"--url", "URL",
         "openwebtext: the archive's URL (default $OPENWEBTEXT_URL, else " + data_prep::default_url("openwebtext") +
             "); pile: the base URL of train/NN.jsonl.zst, val.jsonl.zst, test.jsonl.zst (default $PILE_URL, else " +
             data_prep::default_url("pile") + "); hellaswag: the validation jsonl's URL (default $HELLASWAG_URL, else " +
             data_prep::default_url("hellaswag") + ")",
         [&](const std::string& v) { options.url = v; }, sources},
        {"--checksums", "FILE", "SHA-256 list (sha256sum format) to verify downloads and provided source files",
         [&](const std::string& v) { options.checksums_file = v; }, sources},
        {"--retries", "N", "download attempts after a failure, each resuming (default 5)",
         [&](const std::string& v) { options.download.retries = static_cast<int>(parse_integer(v, 0, 1000)); }, sources},
        {"--pile-train-files", "N", "use The Pile's first N train files of 30 (default 30)",
         [&](const std::string& v) { options.pile_train_files = static_cast<int>(parse_integer(v, 1, 30)); }, sources},
    };
    // Options that only make sense for some recipes; the others reject them instead of ignoring them.
    const std::map<std::string, std::vector<std::string>> recipes_of = {
        {"--val-fraction", {"tiny", "openwebtext", "text"}},
        {"--input", {"text"}},
        {"--name", {"text"}},
        {"--text-field", {"text", "pile"}},
        {"--doc-split", {"text"}},
        {"--skip-invalid-json", {"text", "pile"}},
        {"--source-dir", {"tiny", "openwebtext", "pile", "hellaswag"}},
        {"--url", {"openwebtext", "pile", "hellaswag"}},
        {"--checksums", {"openwebtext", "pile", "hellaswag"}},
        {"--retries", {"openwebtext", "pile", "hellaswag"}},
        {"--pile-train-files", {"pile"}},
    };

    const ParsedCommandLine parsed = data_prep::parse_options(argc, argv, table);
    if (help) {
        std::printf("%s%s", kUsage, data_prep::options_help(table).c_str());
        return 0;
    }
    if (parsed.positional.size() != 1) throw UsageError("name exactly one recipe (tiny, openwebtext, pile, text or hellaswag)");
    options.recipe = parsed.positional[0];
    const std::vector<std::string>& known = data_prep::recipe_names();
    if (std::find(known.begin(), known.end(), options.recipe) == known.end()) {
        throw UsageError("unknown recipe '" + options.recipe + "' (known: tiny, openwebtext, pile, text, hellaswag)");
    }
    for (const Option* option : parsed.given) {
        const auto restricted = recipes_of.find(option->name);
        if (restricted == recipes_of.end()) continue;
        const std::vector<std::string>& allowed = restricted->second;
        if (std::find(allowed.begin(), allowed.end(), options.recipe) == allowed.end()) {
            throw UsageError(option->name + " does not apply to the " + options.recipe + " recipe");
        }
    }
    data_prep::prepare_dataset(options);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    // A file-size limit (ulimit -f) then fails a write with EFBIG, reported with the file's
    // name like a full disk, instead of killing the process without a word.
    std::signal(SIGXFSZ, SIG_IGN);
    try {
        return run(argc, argv);
    } catch (const data_prep::UsageError& e) {
        std::fprintf(stderr, "prepare: %s\nRun ./data_prep/prepare --help for usage.\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "prepare: error: %s\n", e.what());
        return 1;
    }
}
