// GPT-2 byte-level BPE tokenizer, token for token identical to tiktoken's `gpt2` encoding.
// (Contract header. The implementation: tokenizer.cpp encodes and decodes, tokenizer_vocab.cpp
// loads the vocabulary, tokenizer_pretokenizer.cpp holds the UTF-8 and pretokenizer functions
// below; the inline internals they share are tokenizer_utf8.h, tokenizer_pretokenizer.h and
// tokenizer_tables.h.)
//
// Encoding = (1) invalid UTF-8 replaced by U+FFFD, (2) pretokenization by tiktoken's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (hand-written scanner, Unicode 16.0 classes from unicode_classes.h), (3) per piece: the piece's
// id if the whole piece is a token, else byte-pair merging where, as in tiktoken, the adjacent
// pair whose concatenation is the lowest-ranked token merges first (leftmost on ties). In GPT-2 a
// token's rank is its id.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

class Gpt2Tokenizer {
  public:
    static constexpr int kEndOfText = 50256;  // <|endoftext|>, separates documents
    static constexpr int kVocabSize = 50257;
    static constexpr std::string_view kEndOfTextString = "<|endoftext|>";

    // What a literal "<|endoftext|>" in the text becomes.
    enum class Special {
        kOrdinary,   // ordinary text, as tiktoken's encode_ordinary(text)
        kEndOfText,  // the id kEndOfText, as tiktoken's encode(text, allowed_special="all")
    };

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
    // The same, with the choice of what "<|endoftext|>" becomes.
    void encode_append(std::string_view text, std::vector<int>& out, Special special) const;

    // Exactly encode_append(text, out, special)'s ids, computed by up to `num_threads` threads on
    // chunks of at least `chunk_bytes` that are cut only at pretokenizer restart points (see
    // next_restart_point), so no pretoken and hence no merge ever spans two chunks.
    static constexpr size_t kDefaultChunkBytes = size_t(1) << 20;
    std::vector<int> encode_parallel(std::string_view text, int num_threads, Special special = Special::kOrdinary,
                                     size_t chunk_bytes = kDefaultChunkBytes) const;

    // Decodes ids to bytes (may be invalid UTF-8 where a token splits a character). Ids outside
    // the vocabulary throw std::out_of_range naming the id.
    std::string decode(const std::vector<int>& ids) const;
    std::string decode_token(int id) const;
    // decode() for people and text files (console samples, generations): UTF-8 always, the bytes
    // of a character that the ids split (a sample cut off mid-character) each U+FFFD as
    // replace_invalid_utf8 gives them, as tiktoken's decode (errors="replace") does.
    std::string decode_text(const std::vector<int>& ids) const;

    // ---- Building blocks, public for the tests and tools ----

    // GPT-2's byte-to-unicode map, which spells every byte of encoder.json / vocab.bpe tokens as
    // a printable character: '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for themselves,
    // the other 68 bytes for U+0100.. in byte order (so ' ' is 'Ġ' U+0120, '\n' is 'Ċ' U+010A).
    static char32_t byte_to_unicode(uint8_t byte);

    // Whether `text` is well-formed UTF-8 (no surrogates, overlongs or code points > U+10FFFF).
    static bool is_valid_utf8(std::string_view text);
    // `text` with every maximal ill-formed subpart replaced by U+FFFD (the Unicode "maximal
    // subpart" practice, which Python's errors="replace" and the WHATWG TextDecoder follow): a
    // lead byte with a proper prefix of its continuation bytes is one U+FFFD, any other bad byte
    // is one U+FFFD each. E.g. "\xE2\x82" -> U+FFFD, "\xE0\x80" -> U+FFFD U+FFFD.
    static std::string replace_invalid_utf8(std::string_view text);

    // The pretokens of well-formed UTF-8 `text` (throws std::invalid_argument otherwise), as
    // views into `text`. Concatenated they give `text` back.
    static std::vector<std::string_view> pretokenize(std::string_view text);
    // The first offset p >= from where the pretokenizer provably restarts: the character before p
    // is a letter or a number and the character at p is of another class (letter / number /
    // whitespace / other). The pretoken holding a letter can only be ` ?\p{L}+` or a contraction,
    // one holding a number only ` ?\p{N}+`, and neither extends over a character of another
    // class, so a pretoken ends at p; and no pattern alternative looks behind its start, so
    // pretokenizing text[0, p) and text[p, end) separately gives the pretokens of the whole.
    // (A whitespace boundary would not do: "a\n\nb" -> "a" "\n" "\n" "b", but "a\n\n" alone ->
    // "a" "\n\n", because \s+(?!\S) backs off one character only before a non-space.)
    // Returns text.size() if there is none. `text` must be well-formed UTF-8.
    static size_t next_restart_point(std::string_view text, size_t from);

  private:
    struct Vocab;
    explicit Gpt2Tokenizer(std::shared_ptr<const Vocab> vocab);
    // Encodes well-formed UTF-8 (the caller has replaced invalid sequences).
    void encode_valid(std::string_view text, std::vector<int>& out, Special special) const;

    std::shared_ptr<const Vocab> vocab_;  // immutable after load; copies of the tokenizer share it
};
