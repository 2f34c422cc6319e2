// ./data_prep/tokenize: GPT-2 tokenization between stdin and stdout (the README's contract).
//
//   tokenize encode [--vocab DIR] [--threads N] [--allow-special] [--time] < in.txt
//       prints the ids of the whole input as decimal numbers separated by single spaces, then a
//       newline. The ids are tiktoken's `gpt2` ids, whatever the number of threads.
//   tokenize decode [--vocab DIR] < ids.txt
//       reads ids separated by whitespace and prints their bytes.

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "host/tokenizer.h"

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Config {
    std::string command;  // "encode" or "decode"
    std::string vocab_dir = Gpt2Tokenizer::default_vocab_dir();
    int threads = int(std::max(1u, std::thread::hardware_concurrency()));
    bool allow_special = false;
    bool time = false;
};

// The one table of options: it drives parsing and --help.
struct OptionSpec {
    const char* name;
    const char* value_name;  // nullptr for a flag
    bool encode_only;
    const char* help;
};
constexpr OptionSpec kOptions[] = {
    {"--vocab", "DIR", false, "directory holding encoder.json and vocab.bpe (default: $GPT2_VOCAB_DIR, else where "
                              "`make setup` puts them: data/vocab of this repository)"},
    {"--threads", "N", true, "encoding threads, N >= 1 (default: all hardware threads); the ids do not depend on N"},
    {"--allow-special", nullptr, true, "a literal <|endoftext|> in the text becomes id 50256 (tiktoken's "
                                       "allowed_special=\"all\"); by default it is ordinary text"},
    {"--time", nullptr, true, "print the encoding's bytes, tokens, seconds and MB/s to stderr (excludes loading the "
                              "vocabulary and I/O)"},
    {"--help", nullptr, false, "print this help"},
};

void print_usage(FILE* out) {
    std::fprintf(out,
                 "usage: tokenize encode [--vocab DIR] [--threads N] [--allow-special] [--time] < in.txt\n"
                 "       tokenize decode [--vocab DIR] < ids.txt\n"
                 "encode prints the GPT-2 ids (tiktoken's gpt2 encoding) of the whole input, separated by single\n"
                 "spaces, then a newline; invalid UTF-8 is read as U+FFFD (as Python's errors=\"replace\").\n"
                 "decode reads ids separated by whitespace and prints their bytes.\n\noptions:\n");
    for (const OptionSpec& option : kOptions) {
        std::string flag = option.name;
        if (option.value_name != nullptr) flag += std::string(" ") + option.value_name;
        std::fprintf(out, "  %-17s %s%s\n", flag.c_str(), option.encode_only ? "(encode) " : "", option.help);
    }
}

[[noreturn]] void usage_error(const std::string& message) {
    std::fprintf(stderr, "tokenize: %s\n\n", message.c_str());
    print_usage(stderr);
    std::exit(kExitUsage);
}

Config parse_args(int argc, char** argv) {
    Config config;
    if (argc < 2) usage_error("missing command: encode or decode");
    config.command = argv[1];
    if (config.command == "--help" || config.command == "-h") {
        print_usage(stdout);
        std::exit(0);
    }
    if (config.command != "encode" && config.command != "decode")
        usage_error("unknown command '" + config.command + "': expected encode or decode");
    for (int i = 2; i < argc; ++i) {
        std::string arg = argv[i];
        std::string value;
        bool has_inline_value = false;
        if (const size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            has_inline_value = true;
        }
        const OptionSpec* spec = nullptr;
        for (const OptionSpec& option : kOptions)
            if (arg == option.name) spec = &option;
        if (spec == nullptr) usage_error("unknown option '" + arg + "'");
        if (spec->encode_only && config.command != "encode") usage_error(arg + " applies to encode only");
        if (spec->value_name == nullptr && has_inline_value) usage_error(arg + " takes no value");
        if (spec->value_name != nullptr && !has_inline_value) {
            if (i + 1 >= argc) usage_error(arg + " needs a value: " + arg + " " + spec->value_name);
            value = argv[++i];
        }
        if (arg == "--help") {
            print_usage(stdout);
            std::exit(0);
        } else if (arg == "--vocab") {
            if (value.empty()) usage_error("--vocab needs a directory");
            config.vocab_dir = value;
        } else if (arg == "--threads") {
            int threads = 0;
            const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), threads);
            if (error != std::errc() || end != value.data() + value.size() || threads < 1 || threads > 4096)
                usage_error("--threads must be an integer from 1 to 4096, got '" + value + "'");
            config.threads = threads;
        } else if (arg == "--allow-special") {
            config.allow_special = true;
        } else if (arg == "--time") {
            config.time = true;
        }
    }
    return config;
}

std::string read_stdin() {
    std::string data;
    size_t size = 0;
    for (;;) {
        data.resize(std::max<size_t>(size + (size_t(1) << 20), data.size()));
        const size_t got = std::fread(data.data() + size, 1, data.size() - size, stdin);
        size += got;
        if (got == 0) break;
    }
    if (std::ferror(stdin)) throw std::runtime_error(std::string("reading stdin failed: ") + std::strerror(errno));
    data.resize(size);
    return data;
}

void write_stdout(std::string_view bytes) {
    if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size())
        throw std::runtime_error(std::string("writing stdout failed: ") + std::strerror(errno));
}

void write_ids(const std::vector<int>& ids) {
    std::string buffer;
    constexpr size_t kFlushBytes = size_t(1) << 20;
    buffer.reserve(kFlushBytes + 16);
    char digits[16];
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) buffer += ' ';
        const auto result = std::to_chars(digits, digits + sizeof(digits), ids[i]);
        buffer.append(digits, result.ptr);
        if (buffer.size() >= kFlushBytes) {
            write_stdout(buffer);
            buffer.clear();
        }
    }
    buffer += '\n';
    write_stdout(buffer);
}

// Ids separated by ASCII whitespace; anything else is an error naming where it is.
std::vector<int> parse_ids(std::string_view text) {
    std::vector<int> ids;
    size_t i = 0;
    const auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
    while (i < text.size()) {
        if (is_space(text[i])) {
            ++i;
            continue;
        }
        size_t end = i;
        while (end < text.size() && !is_space(text[end])) ++end;
        const std::string_view word = text.substr(i, end - i);
        int id = 0;
        const auto [parsed_end, error] = std::from_chars(word.data(), word.data() + word.size(), id);
        if (error != std::errc() || parsed_end != word.data() + word.size() || id < 0 || id >= Gpt2Tokenizer::kVocabSize) {
            throw std::runtime_error("stdin: '" + std::string(word.substr(0, 40)) + "' (number " +
                                     std::to_string(ids.size() + 1) + ", at byte " + std::to_string(i) +
                                     ") is not a GPT-2 token id: expected decimal ids from 0 to " +
                                     std::to_string(Gpt2Tokenizer::kVocabSize - 1) + " separated by whitespace");
        }
        ids.push_back(id);
        i = end;
    }
    return ids;
}

void run_encode(const Config& config, const Gpt2Tokenizer& tokenizer) {
    const std::string text = read_stdin();
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int> ids = tokenizer.encode_parallel(
        text, config.threads, config.allow_special ? Gpt2Tokenizer::Special::kEndOfText : Gpt2Tokenizer::Special::kOrdinary);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    write_ids(ids);
    if (config.time) {
        std::fprintf(stderr, "tokenize: encoded %zu bytes into %zu tokens in %.4f s: %.2f MB/s with %d threads\n",
                     text.size(), ids.size(), seconds, seconds > 0 ? text.size() / seconds / 1e6 : 0.0, config.threads);
    }
}

void run_decode(const Gpt2Tokenizer& tokenizer) {
    // Every id is checked before anything is printed, so bad input leaves no partial output.
    const std::vector<int> ids = parse_ids(read_stdin());
    write_stdout(tokenizer.decode(ids));
}

}  // namespace

int main(int argc, char** argv) {
    const Config config = parse_args(argc, argv);
    try {
        const Gpt2Tokenizer tokenizer = Gpt2Tokenizer::load(config.vocab_dir);
        if (config.command == "encode") run_encode(config, tokenizer);
        else run_decode(tokenizer);
        if (std::fflush(stdout) != 0) throw std::runtime_error(std::string("writing stdout failed: ") + std::strerror(errno));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tokenize %s: %s\n", config.command.c_str(), e.what());
        return kExitFailure;
    }
    return 0;
}
