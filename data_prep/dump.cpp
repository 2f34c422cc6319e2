// dump: a token shard's statistics and, optionally, its text.
//   ./data_prep/dump <shard.bin> [--text] [--vocab DIR] [--limit N]
#include <algorithm>
#include <cstdio>
#include <string>

#include "data_prep/src/options.h"
#include "host/shard.h"
#include "host/tokenizer.h"

namespace {

using data_prep::Option;
using data_prep::ParsedCommandLine;
using data_prep::UsageError;

const char* const kUsage =
    "usage: ./data_prep/dump <shard.bin> [options]\n"
    "\n"
    "Validates a token shard (header, size, every id < 50257) and prints its statistics: version,\n"
    "tokens, documents (the number of <|endoftext|> tokens), smallest and largest id. With --text\n"
    "it prints the decoded text on stdout (the statistics then go to stderr).\n"
    "\n";

int run(int argc, char** argv) {
    bool show_text = false, help = false;
    std::string vocab_dir;
    int64_t limit = -1;
    const std::string group = "options";
    const std::vector<Option> table = {
        {"--text", "", "print the decoded text", [&](const std::string&) { show_text = true; }, group},
        {"--vocab", "DIR", "GPT-2 encoder.json + vocab.bpe for --text (default: where `make setup` puts them)",
         [&](const std::string& v) { vocab_dir = v; }, group},
        {"--limit", "N", "decode only the first N tokens (default: all)",
         [&](const std::string& v) { limit = data_prep::parse_integer(v, 0, INT64_MAX); }, group},
        {"--help", "", "show this help", [&](const std::string&) { help = true; }, group},
    };
    const ParsedCommandLine parsed = data_prep::parse_options(argc, argv, table);
    if (help) {
        std::printf("%s%s", kUsage, data_prep::options_help(table).c_str());
        return 0;
    }
    if (parsed.positional.size() != 1) throw UsageError("name exactly one shard file");
    const std::string& path = parsed.positional[0];

    const shard::ShardInfo info = shard::read_header(path);
    const std::vector<uint32_t> tokens = shard::read_tokens(path, Gpt2Tokenizer::kVocabSize);
    const int64_t documents = std::count(tokens.begin(), tokens.end(), uint32_t(Gpt2Tokenizer::kEndOfText));
    std::FILE* stats = show_text ? stderr : stdout;
    std::fprintf(stats, "file       %s\n", path.c_str());
    std::fprintf(stats, "version    %d (%s tokens)\n", info.version, info.version == shard::kVersionUint16 ? "uint16" : "uint32");
    std::fprintf(stats, "tokens     %lld\n", static_cast<long long>(tokens.size()));
    std::fprintf(stats, "documents  %lld (<|endoftext|> tokens)\n", static_cast<long long>(documents));
    if (!tokens.empty()) {
        const auto [min_id, max_id] = std::minmax_element(tokens.begin(), tokens.end());
        std::fprintf(stats, "min id     %u\nmax id     %u\n", *min_id, *max_id);
    }
    if (show_text) {
        const Gpt2Tokenizer tokenizer = Gpt2Tokenizer::load(vocab_dir.empty() ? Gpt2Tokenizer::default_vocab_dir() : vocab_dir);
        const size_t count = limit < 0 ? tokens.size() : std::min<size_t>(tokens.size(), static_cast<size_t>(limit));
        const std::string text = tokenizer.decode_text(std::vector<int>(tokens.begin(), tokens.begin() + count));
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fputc('\n', stdout);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const data_prep::UsageError& e) {
        std::fprintf(stderr, "dump: %s\nRun ./data_prep/dump --help for usage.\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "dump: error: %s\n", e.what());
        return 1;
    }
}
