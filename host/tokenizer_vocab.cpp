// Loading the GPT-2 vocabulary: encoder.json (spelled token -> id, read through nlohmann-json's
// SAX interface) and vocab.bpe (the merges, checked against encoder.json), decoded from GPT-2's
// byte-to-unicode spelling into the hash tables of host/tokenizer_tables.h; and where the setup
// step puts the vocabulary. Every corrupt or missing file is an error that names the file and
// says how to get a good one.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "host/tokenizer.h"
#include "host/tokenizer_tables.h"
#include "host/tokenizer_utf8.h"

using namespace tokenizer_internal;

namespace {

std::string vocab_error(const std::string& path, const std::string& what) {
    return "GPT-2 vocabulary file " + path + ": " + what +
           ". Run `make setup` to (re)install data/vocab/encoder.json and data/vocab/vocab.bpe, or pass "
           "--vocab DIR naming a directory that holds good copies of both.";
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(vocab_error(path, std::string("cannot open it (") + std::strerror(errno) + ")"));
    std::ostringstream contents;
    contents << in.rdbuf();
    if (in.bad()) throw std::runtime_error(vocab_error(path, "read error"));
    return contents.str();
}

// Decodes a token as spelled in encoder.json / vocab.bpe (one character per byte, see
// byte_to_unicode) into its bytes; false if some character stands for no byte.
bool unicode_spelling_to_bytes(const std::string& spelled, const std::array<int, 512>& byte_of_char,
                               std::string& bytes) {
    bytes.clear();
    const uint8_t* s = reinterpret_cast<const uint8_t*>(spelled.data());
    size_t i = 0;
    while (i < spelled.size()) {
        const Utf8Step step = utf8_step(s, i, spelled.size());
        if (!step.valid || step.length > 2) return false;  // the alphabet is U+0021..U+0143
        const char32_t cp = step.length == 1 ? s[i] : (char32_t(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
        if (cp >= byte_of_char.size() || byte_of_char[cp] < 0) return false;
        bytes.push_back(char(byte_of_char[cp]));
        i += step.length;
    }
    return !bytes.empty();
}

// Reads encoder.json's {"spelled token": id, ...} through nlohmann-json's SAX interface: the
// same parser and error messages as building a json value, without the std::map of 50k entries
// that took most of the load time.
class EncoderJsonReader final : public nlohmann::json_sax<nlohmann::json> {
  public:
    std::vector<std::pair<std::string, int64_t>> entries;  // in file order
    std::string error;                                     // why parsing stopped

    bool start_object(std::size_t) override { return depth_++ == 0 || fail("an object"); }
    bool end_object() override {
        --depth_;
        return true;
    }
    bool key(string_t& key) override {
        key_ = std::move(key);
        return true;
    }
    bool number_integer(number_integer_t value) override { return add(value); }
    bool number_unsigned(number_unsigned_t value) override { return add(int64_t(std::min<number_unsigned_t>(value, INT64_MAX))); }
    bool number_float(number_float_t, const string_t& spelled) override { return fail(spelled); }
    bool null() override { return fail("null"); }
    bool boolean(bool value) override { return fail(value ? "true" : "false"); }
    bool string(string_t& value) override { return fail("\"" + value + "\""); }
    bool binary(binary_t&) override { return fail("binary data"); }
    bool start_array(std::size_t) override { return fail("an array"); }
    bool end_array() override { return true; }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
        error = std::string("not valid JSON, truncated or corrupt (") + e.what() + ")";
        return false;
    }

  private:
    bool add(int64_t id) {
        if (depth_ != 1) return fail(std::to_string(id));
        entries.emplace_back(std::move(key_), id);
        return true;
    }
    bool fail(const std::string& found) {
        if (depth_ == 0) {
            error = "expected a JSON object of " + std::to_string(Gpt2Tokenizer::kVocabSize) + " tokens, found " + found;
        } else {
            error = "token \"" + key_ + "\" has id " + found + ", expected an integer in [0, " +
                    std::to_string(Gpt2Tokenizer::kVocabSize) + ")";
        }
        return false;
    }
    int depth_ = 0;
    std::string key_;
};

}  // namespace

Gpt2Tokenizer::Gpt2Tokenizer(std::shared_ptr<const Vocab> vocab) : vocab_(std::move(vocab)) {}

char32_t Gpt2Tokenizer::byte_to_unicode(uint8_t byte) {
    const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
    if (printable) return byte;
    // The non-printable bytes are numbered in byte order: 0x00..0x20 are 0..32, 0x7F..0xA0 are
    // 33..66, 0xAD is 67.
    const int rank = byte <= 0x20 ? byte : byte <= 0xA0 ? 33 + (byte - 0x7F) : 67;
    return char32_t(256 + rank);
}

Gpt2Tokenizer Gpt2Tokenizer::load(const std::string& vocab_dir) {
    const std::string encoder_path = vocab_dir + "/encoder.json";
    const std::string merges_path = vocab_dir + "/vocab.bpe";

    std::array<int, 512> byte_of_char;  // inverse of byte_to_unicode; -1 for other characters
    byte_of_char.fill(-1);
    for (int b = 0; b < 256; ++b) byte_of_char[byte_to_unicode(uint8_t(b))] = b;

    // encoder.json: {spelled token: id}.
    EncoderJsonReader reader;
    const std::string encoder_text = read_file(encoder_path);
    if (!nlohmann::json::sax_parse(encoder_text, &reader)) throw std::runtime_error(vocab_error(encoder_path, reader.error));
    if (reader.entries.size() != size_t(kVocabSize)) {
        throw std::runtime_error(vocab_error(encoder_path, "expected a JSON object of " + std::to_string(kVocabSize) +
                                                               " tokens, found " + std::to_string(reader.entries.size())));
    }
    std::vector<std::string> tokens(kVocabSize);
    std::vector<bool> seen(kVocabSize, false);
    std::string bytes;
    for (const auto& [spelled, value] : reader.entries) {
        if (value < 0 || value >= kVocabSize) {
            throw std::runtime_error(vocab_error(encoder_path, "token \"" + spelled + "\" has id " + std::to_string(value) +
                                                                   ", expected an integer in [0, " +
                                                                   std::to_string(kVocabSize) + ")"));
        }
        const int id = int(value);
        if (seen[id]) throw std::runtime_error(vocab_error(encoder_path, "id " + std::to_string(id) + " appears twice"));
        seen[id] = true;
        if (id == kEndOfText) {
            if (spelled != kEndOfTextString)
                throw std::runtime_error(vocab_error(encoder_path, "id 50256 is \"" + spelled + "\", expected <|endoftext|>"));
            tokens[id] = spelled;
        } else if (!unicode_spelling_to_bytes(spelled, byte_of_char, tokens[id])) {
            throw std::runtime_error(vocab_error(encoder_path, "token \"" + spelled + "\" (id " + std::to_string(id) +
                                                                   ") is not spelled in GPT-2's byte alphabet"));
        }
    }

    // vocab.bpe: "#version" line, then merge i as "left right" (spelled tokens). It must agree
    // with encoder.json: the 256 one-byte tokens have ids 0..255 and merge i makes id 256 + i,
    // which is what makes a token's BPE rank equal to its id. A file that disagrees is corrupt.
    const std::string merges_text = read_file(merges_path);
    std::istringstream merges(merges_text);
    std::string line;
    if (!std::getline(merges, line) || line.rfind("#version", 0) != 0)
        throw std::runtime_error(vocab_error(merges_path, "does not start with a \"#version\" line"));
    const int num_merges = kEndOfText - 256;
    int merge = 0;
    std::string left, right;
    for (int line_number = 2; std::getline(merges, line); ++line_number) {
        if (line.empty()) continue;
        const size_t space = line.find(' ');
        const auto bad_line = [&](const std::string& what) {
            return std::runtime_error(vocab_error(merges_path, "line " + std::to_string(line_number) + " (\"" + line +
                                                                   "\"): " + what));
        };
        if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
            throw bad_line("expected two tokens separated by one space");
        if (merge >= num_merges) throw bad_line("more than " + std::to_string(num_merges) + " merges");
        if (!unicode_spelling_to_bytes(line.substr(0, space), byte_of_char, left) ||
            !unicode_spelling_to_bytes(line.substr(space + 1), byte_of_char, right))
            throw bad_line("not spelled in GPT-2's byte alphabet");
        if (left + right != tokens[256 + merge])
            throw bad_line("merges into a different token than encoder.json's id " + std::to_string(256 + merge));
        ++merge;
    }
    if (merge != num_merges)
        throw std::runtime_error(vocab_error(merges_path, "has " + std::to_string(merge) + " merges, expected " +
                                                              std::to_string(num_merges) + " (truncated?)"));

    auto vocab = std::make_shared<Vocab>();
    static std::atomic<uint64_t> next_instance_id{1};  // only ever incremented: identifies vocabularies
    vocab->instance_id = next_instance_id++;
    vocab->token_offsets.resize(kVocabSize + 1);
    for (int id = 0; id < kVocabSize; ++id) {
        vocab->token_offsets[id] = uint32_t(vocab->token_bytes.size());
        vocab->token_bytes += tokens[id];
        if (id < 256 && tokens[id].size() != 1)
            throw std::runtime_error(vocab_error(encoder_path, "id " + std::to_string(id) +
                                                                   " should be a one-byte token (ids 0..255 are the bytes)"));
        if (id < 256) vocab->byte_token[uint8_t(tokens[id][0])] = uint16_t(id);
    }
    vocab->token_offsets[kVocabSize] = uint32_t(vocab->token_bytes.size());
    static_assert(kVocabSize <= 65535, "PairTable packs two ids into 32 bits");
    std::vector<std::string_view> mergeable(kEndOfText);  // every token but <|endoftext|>
    for (int id = 0; id < kEndOfText; ++id) {
        mergeable[id] = vocab->token(id);
        if (mergeable[id].size() > PieceTable::kMaxTokenBytes)
            throw std::runtime_error(vocab_error(encoder_path, "token " + std::to_string(id) + " is longer than " +
                                                                   std::to_string(PieceTable::kMaxTokenBytes) + " bytes"));
    }
    vocab->piece_table.build(mergeable);

    // Every way to split a token into two tokens is a pair that merges into it: tiktoken ranks a
    // pair by its concatenation, not by vocab.bpe's list, so splits that vocab.bpe never lists
    // count too.
    std::vector<PairTable::Entry> pairs;
    const uint8_t* all = reinterpret_cast<const uint8_t*>(vocab->token_bytes.data());
    for (int id = 256; id < kEndOfText; ++id) {
        const uint8_t* p = all + vocab->token_offsets[id];
        const size_t n = vocab->token_offsets[id + 1] - vocab->token_offsets[id];
        for (size_t k = 1; k < n; ++k) {
            const int a = vocab->piece_table.find(make_piece_key(p, k, p + n));
            const int b = vocab->piece_table.find(make_piece_key(p + k, n - k, p + n));
            if (a >= 0 && b >= 0) pairs.push_back({PairTable::key(uint32_t(a), uint32_t(b)), uint32_t(id)});
        }
    }
    vocab->pair_table.build(pairs);
    return Gpt2Tokenizer(std::move(vocab));
}

std::string Gpt2Tokenizer::default_vocab_dir() {
    if (const char* env = std::getenv("GPT2_VOCAB_DIR"); env != nullptr && *env != '\0') return env;
    namespace fs = std::filesystem;
    std::error_code error;
    const fs::path executable = fs::read_symlink("/proc/self/exe", error);
    if (!error) {
        for (fs::path dir = executable.parent_path(); !dir.empty(); dir = dir.parent_path()) {
            if (fs::is_directory(dir / "data" / "vocab", error)) return (dir / "data" / "vocab").string();
            if (dir == dir.parent_path()) break;
        }
    }
    return "data/vocab";
}
