// GPT-2 byte-level BPE tokenizer, token for token identical to tiktoken's `gpt2` encoding.
// (Contract header: the implementation lives in tokenizer.cpp.)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

class Gpt2Tokenizer {
  public:
    static constexpr int kEndOfText = 50256;  // <|endoftext|>, separates documents
    static constexpr int kVocabSize = 50257;

    // Loads encoder.json + vocab.bpe from `vocab_dir`. Throws std::runtime_error whose message
    // names the missing or corrupt file and says how to get a good one (`make setup`).
    static Gpt2Tokenizer load(const std::string& vocab_dir);
    // Where the setup step puts the vocabulary: $GPT2_VOCAB_DIR if set, else data/vocab of the
    // repository that holds the running executable, else ./data/vocab.
    static std::string default_vocab_dir();

    // Encodes UTF-8 text. A literal "<|endoftext|>" in the text is ordinary text (as tiktoken's
    // encode_ordinary). Invalid UTF-8 sequences are first replaced by U+FFFD, as Python's
    // bytes.decode(errors="replace") does. Thread-safe (const).
    std::vector<int> encode(std::string_view text) const;
    // Appends to `out` instead of returning a new vector.
    void encode_append(std::string_view text, std::vector<int>& out) const;

    // Decodes ids to bytes (may be invalid UTF-8 where a token splits a character). Ids outside
    // the vocabulary throw std::out_of_range naming the id.
    std::string decode(const std::vector<int>& ids) const;
    std::string decode_token(int id) const;
};
