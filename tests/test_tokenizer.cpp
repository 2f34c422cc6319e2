// Unit tests of the GPT-2 tokenizer (host/tokenizer.h). Equality with tiktoken on large and
// adversarial texts is tests/tokenizer_vs_tiktoken.sh; here: the byte map, the Unicode classes,
// the pretokenizer on tricky cases, invalid UTF-8 replacement, BPE against a naive reference,
// multi-threaded = single-threaded, decoding, and the vocabulary's error messages.
// Expected values marked "tiktoken" were produced by tests/tokenizer/tiktoken_encode.js, those
// marked "Python" by bytes.decode("utf-8", errors="replace"), the pretokenizer's by the pattern
// in JavaScript with \s spelled out as White_Space.

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/tokenizer.h"
#include "host/unicode_classes.h"

namespace {

namespace fs = std::filesystem;
using Special = Gpt2Tokenizer::Special;

const Gpt2Tokenizer& tokenizer() {
    static const Gpt2Tokenizer loaded = Gpt2Tokenizer::load(Gpt2Tokenizer::default_vocab_dir());
    return loaded;
}

std::vector<std::string> pieces_of(std::string_view text) {
    std::vector<std::string> pieces;
    for (std::string_view piece : Gpt2Tokenizer::pretokenize(text)) pieces.emplace_back(piece);
    return pieces;
}

// Tiktoken's merge rule written as plainly as possible: a whole-token piece is that token; else
// repeatedly merge the leftmost adjacent pair whose concatenation has the lowest rank (= id).
std::vector<int> reference_bpe(const std::unordered_map<std::string, int>& ranks, const std::string& piece) {
    if (auto it = ranks.find(piece); it != ranks.end()) return {it->second};
    std::vector<std::string> parts;
    for (char byte : piece) parts.emplace_back(1, byte);
    for (;;) {
        int best = INT_MAX;
        size_t best_i = 0;
        for (size_t i = 0; i + 1 < parts.size(); ++i) {
            auto it = ranks.find(parts[i] + parts[i + 1]);
            if (it != ranks.end() && it->second < best) {
                best = it->second;
                best_i = i;
            }
        }
        if (best == INT_MAX) break;
        parts[best_i] += parts[best_i + 1];
        parts.erase(parts.begin() + best_i + 1);
    }
    std::vector<int> ids;
    for (const std::string& part : parts) ids.push_back(ranks.at(part));
    return ids;
}

const std::unordered_map<std::string, int>& reference_ranks() {
    static const std::unordered_map<std::string, int> ranks = [] {
        std::unordered_map<std::string, int> r;
        for (int id = 0; id < Gpt2Tokenizer::kEndOfText; ++id) r[tokenizer().decode_token(id)] = id;
        return r;
    }();
    return ranks;
}

// Random text over an alphabet that hits every pattern alternative and class boundary.
std::string random_text(std::mt19937& rng, size_t length) {
    static const std::vector<std::string> alphabet = {
        "a", "b", "e", "s", "t", "S", "T", "l", "r", "e", "v", "m", "d", "0", "7", "'", "'", "'", " ", " ", " ", " ",
        "\n", "\n", "\t", "\r\n", "!", ".", ",", "-", "\xC2\xA0", "\xE3\x80\x80", "\xE2\x80\xA8", "\xC2\x85",
        "\xE2\x80\x8B", "\xC3\xA9", "\xE4\xB8\xAD", "\xD9\xA3", "\xE2\x85\xA0", "\xC2\xB2", "\xCC\x81",
        "\xF0\x9F\x91\x8D", "\xF0\x9F\x8F\xBD", "\xE2\x80\x8D", "<|endoftext|>", "<|", "'s", "'ll", "  ", "\xEF\xBF\xBD"};
    std::string text;
    std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
    for (size_t i = 0; i < length; ++i) text += alphabet[pick(rng)];
    return text;
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_file(const fs::path& path, const std::string& contents) {
    std::ofstream(path, std::ios::binary) << contents;
}

// A scratch copy of the real vocabulary that a test may damage.
class ScratchVocab {
  public:
    ScratchVocab() : dir_(fs::temp_directory_path() / ("tokenizer_test_" + std::to_string(getpid()))) {
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        const fs::path good = Gpt2Tokenizer::default_vocab_dir();
        fs::copy_file(good / "encoder.json", encoder());
        fs::copy_file(good / "vocab.bpe", merges());
    }
    ~ScratchVocab() { fs::remove_all(dir_); }
    fs::path dir() const { return dir_; }
    fs::path encoder() const { return dir_ / "encoder.json"; }
    fs::path merges() const { return dir_ / "vocab.bpe"; }
    // The message of the error that loading throws ("" if it loads).
    std::string load_error() const {
        try {
            Gpt2Tokenizer::load(dir_.string());
        } catch (const std::runtime_error& e) {
            return e.what();
        }
        return "";
    }

  private:
    fs::path dir_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST(TokenizerByteMap, PrintableBytesStandForThemselvesOthersFollowU0100) {
    EXPECT_EQ(Gpt2Tokenizer::byte_to_unicode('!'), U'!');
    EXPECT_EQ(Gpt2Tokenizer::byte_to_unicode('~'), U'~');
    EXPECT_EQ(Gpt2Tokenizer::byte_to_unicode(0xA1), U'\u00A1');
    EXPECT_EQ(Gpt2Tokenizer::byte_to_unicode(0xFF), U'\u00FF');
    EXPECT_EQ(Gpt2Tokenizer::byte_to_unicode(0x00), U'\u0100');
    EXPECT_EQ(Gpt2Tokenizer::byte_to_unicode('\n'), U'\u010A');  // 'Ċ'
    EXPECT_EQ(Gpt2Tokenizer::byte_to_unicode(' '), U'\u0120');   // 'Ġ'
    EXPECT_EQ(Gpt2Tokenizer::byte_to_unicode(0x7F), U'\u0121');
    EXPECT_EQ(Gpt2Tokenizer::byte_to_unicode(0xA0), U'\u0142');
    EXPECT_EQ(Gpt2Tokenizer::byte_to_unicode(0xAD), U'\u0143');
    std::set<char32_t> seen;
    for (int b = 0; b < 256; ++b) seen.insert(Gpt2Tokenizer::byte_to_unicode(uint8_t(b)));
    EXPECT_EQ(seen.size(), 256u) << "the map must be one-to-one";
    EXPECT_EQ(*seen.rbegin(), U'\u0143');
}

TEST(TokenizerByteMap, OneByteTokensAreTheBytes) {
    for (int b = 0; b < 256; ++b) {
        const std::string byte(1, char(b));
        const std::vector<int> ids = tokenizer().encode(byte);
        if (Gpt2Tokenizer::is_valid_utf8(byte)) {
            ASSERT_EQ(ids.size(), 1u) << "byte " << b;
            EXPECT_EQ(tokenizer().decode_token(ids[0]), byte);
        }
    }
    EXPECT_EQ(tokenizer().decode_token(0), "!");
    EXPECT_EQ(tokenizer().decode_token(188), std::string(1, '\0'));
}

TEST(TokenizerUnicodeClasses, AsciiAndSelectedCodePoints) {
    using namespace unicode_classes;
    EXPECT_STREQ(kUnicodeVersion, "16.0.0");
    for (char32_t c = 0; c < 128; ++c) {
        const CharClass expected = std::isalpha(int(c)) ? kLetter
                                   : std::isdigit(int(c)) ? kNumber
                                   : (c == ' ' || (c >= '\t' && c <= '\r')) ? kWhitespace
                                                                              : kOther;
        EXPECT_EQ(char_class(c), expected) << "U+" << std::hex << uint32_t(c);
    }
    const std::vector<std::pair<char32_t, CharClass>> cases = {
        {0x85, kWhitespace},    {0xA0, kWhitespace},   {0x1680, kWhitespace}, {0x2000, kWhitespace},
        {0x200A, kWhitespace},  {0x2028, kWhitespace}, {0x2029, kWhitespace}, {0x202F, kWhitespace},
        {0x205F, kWhitespace},  {0x3000, kWhitespace}, {0x200B, kOther},      {0x180E, kOther},
        {0xFEFF, kOther},       {0x1C, kOther},        {0xAA, kLetter},       {0xB5, kLetter},
        {0x01C5, kLetter},      {0x02B0, kLetter},     {0x4E00, kLetter},     {0x3007, kNumber},
        {0x0661, kNumber},      {0x0967, kNumber},     {0xFF11, kNumber},     {0xB2, kNumber},
        {0xBD, kNumber},        {0x2160, kNumber},     {0x1D7CE, kNumber},    {0x0301, kOther},
        {0x0903, kOther},       {0x20DD, kOther},      {0x1F44D, kOther},     {0xFFFD, kOther},
        {0xE000, kOther},       {0x10FFFF, kOther},    {0xD800, kOther},      {0x0378, kOther},
        {0x2EBF0, kLetter},     // CJK Extension I, new in Unicode 15.1
        {0x10D50, kLetter},     // Garay, new in Unicode 16.0
        {0x16D70, kNumber},     // Kirat Rai digit zero, new in Unicode 16.0
    };
    for (const auto& [cp, cls] : cases) EXPECT_EQ(char_class(cp), cls) << "U+" << std::hex << uint32_t(cp);
}

TEST(TokenizerPretokenize, TrickyCases) {
    const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
        {"Hello world", {"Hello", " world"}},
        {"don't DON'T", {"don", "'t", " DON", "'", "T"}},
        {"I'LL we'll 'Re", {"I", "'", "LL", " we", "'ll", " '", "Re"}},
        {"'sup", {"'s", "up"}},
        {" 's", {" '", "s"}},
        {"!!!'s", {"!!!'", "s"}},
        {"a  b", {"a", " ", " b"}},
        {"a\n\nb", {"a", "\n", "\n", "b"}},
        {"a\n\n", {"a", "\n\n"}},
        {"a\r\n\r\nb", {"a", "\r\n\r", "\n", "b"}},
        {"a \t b", {"a", " \t", " b"}},
        {"a\t\tb", {"a", "\t", "\t", "b"}},
        {"  \n x", {"  \n", " x"}},
        {"x  ", {"x", "  "}},
        {"  ", {"  "}},
        {"", {}},
        {"a\u00A0b", {"a", "\u00A0", "b"}},                // NBSP is whitespace but not the optional ' '
        {"a \u00A0b", {"a", " ", "\u00A0", "b"}},
        {"a\u00A0 b", {"a", "\u00A0", " b"}},
        {"\u3000\u3000x", {"\u3000", "\u3000", "x"}},
        {"123abc 45", {"123", "abc", " 45"}},
        {"x\u00B2", {"x", "\u00B2"}},                      // superscript two is a number
        {"\u06634", {"\u06634"}},                          // Arabic-Indic and ASCII digits join
        {"e\u0301", {"e", "\u0301"}},                      // a combining mark is neither letter nor number
        {" \u0301x", {" \u0301", "x"}},
        {" \u4E2D\u6587 \u2160\u2161", {" \u4E2D\u6587", " \u2160\u2161"}},
        {"\U0001F44D \U0001F44D", {"\U0001F44D", " \U0001F44D"}},
        {"Hello<|endoftext|>", {"Hello", "<|", "endoftext", "|>"}},
    };
    for (const auto& [text, expected] : cases) EXPECT_EQ(pieces_of(text), expected) << "text: " << text;
}

TEST(TokenizerPretokenize, PiecesConcatenateToTheText) {
    std::mt19937 rng(2357);
    for (int i = 0; i < 200; ++i) {
        const std::string text = random_text(rng, 300);
        std::string joined;
        for (const std::string& piece : pieces_of(text)) {
            EXPECT_FALSE(piece.empty());
            joined += piece;
        }
        EXPECT_EQ(joined, text);
    }
}

TEST(TokenizerPretokenize, RejectsInvalidUtf8) {
    EXPECT_THROW(Gpt2Tokenizer::pretokenize("a\xFF"), std::invalid_argument);
}

TEST(TokenizerUtf8, ReplacementFollowsMaximalSubparts) {
    // Expected values: Python bytes.decode("utf-8", errors="replace").
    const std::string r = "\xEF\xBF\xBD";
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"a\x80" "b", "a" + r + "b"},                    // stray continuation byte
        {"\xE2\x82", r},                                 // truncated 3-byte sequence: one U+FFFD
        {"\xE0\x80", r + r},                             // E0 needs A0..BF next: overlong, byte by byte
        {"\xE0\x80\xAF", r + r + r},
        {"\xED\xA0\x80", r + r + r},                     // a UTF-16 surrogate
        {"\xF0\x9F\x98", r},                             // truncated emoji at the end
        {"\xF0\x9F\x98" "a", r + "a"},
        {"\xF4\x90\x80\x80", r + r + r + r},             // above U+10FFFF
        {"\xC0\xAF", r + r},                             // C0, C1 never start a sequence
        {"\xF5\x80", r + r},
        {"\xFF\xFE", r + r},
        {"\xC3\xC3\xA9", r + "\xC3\xA9"},                // the bad lead byte alone; the next starts over
        {"\xF0\x90\x80", r},
        {"\xEF\xBB\xBF", "\xEF\xBB\xBF"},                // a byte order mark is valid text
        {"ok \xE2\x82\xAC", "ok \xE2\x82\xAC"},
    };
    for (const auto& [input, expected] : cases) {
        EXPECT_EQ(Gpt2Tokenizer::replace_invalid_utf8(input), expected) << "input bytes: " << input;
        EXPECT_EQ(Gpt2Tokenizer::is_valid_utf8(input), input == expected);
        EXPECT_EQ(tokenizer().encode(input), tokenizer().encode(expected));
    }
    // tiktoken on "\xFF\xE2\x82 x" (decoded to U+FFFD U+FFFD " x"): "\uFFFD\uFFFD" is one token.
    EXPECT_EQ(tokenizer().encode("\xFF\xE2\x82 x"), (std::vector<int>{6353, 2124}));
}

TEST(TokenizerEncode, KnownIds) {
    // Expected values: tiktoken.
    EXPECT_EQ(tokenizer().encode("Hello world"), (std::vector<int>{15496, 995}));
    EXPECT_EQ(tokenizer().encode(" the"), (std::vector<int>{262}));
    EXPECT_EQ(tokenizer().encode("\n\n"), (std::vector<int>{628}));
    EXPECT_EQ(tokenizer().encode("a\n\nb"), (std::vector<int>{64, 198, 198, 65}));
    EXPECT_EQ(tokenizer().encode("don't"), (std::vector<int>{9099, 470}));
    EXPECT_EQ(tokenizer().encode(std::string(20, 'a')), (std::vector<int>{24794, 24794, 24794, 24794, 24794}));
    EXPECT_EQ(tokenizer().encode(""), std::vector<int>{});
}

TEST(TokenizerEncode, EndOfTextIsOrdinaryTextUnlessAllowed) {
    EXPECT_EQ(tokenizer().encode("<|endoftext|>"), (std::vector<int>{27, 91, 437, 1659, 5239, 91, 29}));
    std::vector<int> ids;
    tokenizer().encode_append("<|endoftext|>", ids, Special::kEndOfText);
    EXPECT_EQ(ids, std::vector<int>{Gpt2Tokenizer::kEndOfText});
    // Text on either side is encoded as separate texts (tiktoken: "x  <|endoftext|>  y").
    ids.clear();
    tokenizer().encode_append("Hello world, don't DON'T  <|endoftext|>  x", ids, Special::kEndOfText);
    EXPECT_EQ(ids, (std::vector<int>{15496, 995, 11, 836, 470, 23917, 6, 51, 220, 220, 50256, 220, 2124}));
}

TEST(TokenizerEncode, EncodeAppendAppends) {
    std::vector<int> ids = {1, 2};
    tokenizer().encode_append("Hello world", ids);
    EXPECT_EQ(ids, (std::vector<int>{1, 2, 15496, 995}));
}

TEST(TokenizerBpe, MatchesNaiveReferenceOnShortAndLongPieces) {
    // Pieces longer than 192 bytes take the heap-based merge; both must equal the plain rule.
    std::vector<std::string> texts;
    for (size_t n : {2, 3, 20, 127, 191, 192, 193, 194, 300, 513}) texts.push_back(std::string(n, 'a'));
    texts.push_back(" " + std::string(300, 'a'));
    texts.push_back(std::string(300, '!'));
    texts.push_back(std::string(400, '7'));
    std::string cjk;
    for (int i = 0; i < 100; ++i) cjk += "\xE7\x9A\x84\xE6\x97\xA5";  // "的日"
    texts.push_back(cjk);
    std::mt19937 rng(7);
    for (int i = 0; i < 30; ++i) {  // long words over few letters: many competing merges
        std::string word = " ";
        const std::string letters = i % 2 ? "abcde" : "thesing";
        const size_t length = 50 + rng() % 550;
        for (size_t j = 0; j < length; ++j) word += letters[rng() % letters.size()];
        texts.push_back(word);
    }
    texts.push_back("The quick brown fox jumps over the lazy dog's back; unbelievably, antidisestablishmentarianism!");
    for (const std::string& text : texts) {
        std::vector<int> expected;
        for (const std::string& piece : pieces_of(text)) {
            const std::vector<int> ids = reference_bpe(reference_ranks(), piece);
            expected.insert(expected.end(), ids.begin(), ids.end());
        }
        EXPECT_EQ(tokenizer().encode(text), expected) << "text of " << text.size() << " bytes: " << text.substr(0, 40);
    }
}

TEST(TokenizerBpe, LongRunIsNotQuadratic) {
    // A single 1M-letter piece: quadratic merging would take hours; the heap takes well under a
    // second. The bound is loose on purpose (slow CI machines); it only catches O(n^2).
    const std::string text(1'000'000, 'a');
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int> ids = tokenizer().encode(text);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(tokenizer().decode(ids), text);
    EXPECT_LT(seconds, 20.0);
}

TEST(TokenizerDecode, RoundTrip) {
    std::mt19937 rng(11);
    for (int i = 0; i < 100; ++i) {
        const std::string text = random_text(rng, 200);
        EXPECT_EQ(tokenizer().decode(tokenizer().encode(text)), text);
        std::vector<int> ids;
        tokenizer().encode_append(text, ids, Special::kEndOfText);
        EXPECT_EQ(tokenizer().decode(ids), text);
    }
    // Invalid input comes back with its replacements.
    EXPECT_EQ(tokenizer().decode(tokenizer().encode("a\xFF" "b")), "a\xEF\xBF\xBD" "b");
    EXPECT_EQ(tokenizer().decode_token(Gpt2Tokenizer::kEndOfText), "<|endoftext|>");
    // A token may hold part of a character: U+1F44D is two tokens here.
    const std::vector<int> thumbs = tokenizer().encode("\U0001F44D");
    ASSERT_EQ(thumbs.size(), 2u);
    EXPECT_FALSE(Gpt2Tokenizer::is_valid_utf8(tokenizer().decode_token(thumbs[0])));
}

TEST(TokenizerDecode, TextForPeopleIsAlwaysUtf8) {
    // A sample cut after the first token of U+1F44D: its bytes are no character. The console and
    // JSON get U+FFFD (as tiktoken's decode), and whole characters come back as they were.
    const std::vector<int> thumbs = tokenizer().encode("ok \U0001F44D");
    std::vector<int> cut(thumbs.begin(), thumbs.end() - 1);
    const std::string text = tokenizer().decode_text(cut);
    EXPECT_TRUE(Gpt2Tokenizer::is_valid_utf8(text));
    EXPECT_EQ(text, "ok \xEF\xBF\xBD");
    EXPECT_EQ(tokenizer().decode_text(thumbs), "ok \U0001F44D");
}

TEST(TokenizerDecode, RejectsIdsOutsideTheVocabulary) {
    for (int bad : {-1, Gpt2Tokenizer::kVocabSize, 1 << 20}) {
        try {
            tokenizer().decode({15496, bad});
            FAIL() << "decode accepted id " << bad;
        } catch (const std::out_of_range& e) {
            EXPECT_NE(std::string(e.what()).find("token id " + std::to_string(bad)), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("[0, 50257)"), std::string::npos) << e.what();
        }
        EXPECT_THROW(tokenizer().decode_token(bad), std::out_of_range);
    }
}

TEST(TokenizerParallel, EveryChunkingGivesTheSequentialIds) {
    std::mt19937 rng(99);
    std::string text;
    for (int i = 0; i < 20; ++i) text += random_text(rng, 150);
    text += "\n\n  \n" + std::string(500, ' ') + "word" + std::string(300, 'x') + "\xE3\x80\x80\xE3\x80\x80" +
            "DON'T stop<|endoftext|><|endoftext|>'s\n\n";
    for (Special special : {Special::kOrdinary, Special::kEndOfText}) {
        std::vector<int> expected;
        tokenizer().encode_append(text, expected, special);
        for (size_t chunk_bytes : {1, 2, 5, 16, 100, 4096}) {
            for (int threads : {1, 2, 4, 7}) {
                EXPECT_EQ(tokenizer().encode_parallel(text, threads, special, chunk_bytes), expected)
                    << "threads " << threads << ", chunk_bytes " << chunk_bytes;
            }
        }
    }
    EXPECT_EQ(tokenizer().encode_parallel("a\xFF" "b c", 2, Special::kOrdinary, 1), tokenizer().encode("a\xFF" "b c"));
    EXPECT_EQ(tokenizer().encode_parallel("", 4), std::vector<int>{});
    EXPECT_THROW(tokenizer().encode_parallel("x", 0), std::invalid_argument);
}

TEST(TokenizerParallel, RestartPointsSplitThePretokensExactly) {
    std::mt19937 rng(5);
    for (int i = 0; i < 60; ++i) {
        const std::string text = random_text(rng, 120);
        const std::vector<std::string> whole = pieces_of(text);
        for (size_t from = 0; from <= text.size();) {
            const size_t p = Gpt2Tokenizer::next_restart_point(text, from);
            ASSERT_LE(p, text.size());
            ASSERT_GE(p, from);
            std::vector<std::string> split = pieces_of(std::string_view(text).substr(0, p));
            const std::vector<std::string> rest = pieces_of(std::string_view(text).substr(p));
            split.insert(split.end(), rest.begin(), rest.end());
            EXPECT_EQ(split, whole) << "split at " << p << " of: " << text;
            from = p + 1;
        }
    }
    // Whitespace boundaries are not restart points: "a\n\n" alone ends in one "\n\n" piece.
    EXPECT_EQ(Gpt2Tokenizer::next_restart_point("a\n\nb", 1), 4u);
    EXPECT_EQ(Gpt2Tokenizer::next_restart_point("ab c", 0), 2u);
    EXPECT_EQ(Gpt2Tokenizer::next_restart_point("12ab", 0), 2u);
}

TEST(TokenizerVocab, DefaultDirFollowsTheEnvironment) {
    const char* previous = std::getenv("GPT2_VOCAB_DIR");
    const std::string saved = previous ? previous : "";
    setenv("GPT2_VOCAB_DIR", "/somewhere/vocab", 1);
    EXPECT_EQ(Gpt2Tokenizer::default_vocab_dir(), "/somewhere/vocab");
    unsetenv("GPT2_VOCAB_DIR");
    const std::string found = Gpt2Tokenizer::default_vocab_dir();
    EXPECT_TRUE(fs::exists(fs::path(found) / "encoder.json")) << found << ": run make setup";
    if (previous) setenv("GPT2_VOCAB_DIR", saved.c_str(), 1);
}

TEST(TokenizerVocab, ScratchCopyLoadsAndEncodes) {
    ScratchVocab vocab;
    ASSERT_EQ(vocab.load_error(), "");
    EXPECT_EQ(Gpt2Tokenizer::load(vocab.dir().string()).encode("Hello world"), (std::vector<int>{15496, 995}));
}

TEST(TokenizerVocab, MissingFilesNameTheFileAndTheFix) {
    ScratchVocab vocab;
    fs::remove(vocab.merges());
    std::string error = vocab.load_error();
    EXPECT_NE(error.find(vocab.merges().string() + ": cannot open it"), std::string::npos) << error;
    EXPECT_NE(error.find("make setup"), std::string::npos) << error;
    EXPECT_NE(error.find("--vocab DIR"), std::string::npos) << error;
    fs::remove(vocab.encoder());
    error = vocab.load_error();
    EXPECT_NE(error.find(vocab.encoder().string() + ": cannot open it"), std::string::npos) << error;
}

TEST(TokenizerVocab, CorruptEncoderJsonIsRejected) {
    ScratchVocab vocab;
    const std::string good = read_file(vocab.encoder());
    write_file(vocab.encoder(), good.substr(0, good.size() / 2));
    EXPECT_NE(vocab.load_error().find("encoder.json: not valid JSON, truncated or corrupt"), std::string::npos)
        << vocab.load_error();

    write_file(vocab.encoder(), "[1, 2, 3]");
    EXPECT_NE(vocab.load_error().find("expected a JSON object of 50257 tokens, found an array"), std::string::npos)
        << vocab.load_error();

    nlohmann::json json = nlohmann::json::parse(good);
    json["!"] = 1;  // "\"" has id 1 too
    write_file(vocab.encoder(), json.dump());
    EXPECT_NE(vocab.load_error().find("id 1 appears twice"), std::string::npos) << vocab.load_error();

    json = nlohmann::json::parse(good);
    json["!"] = "zero";
    write_file(vocab.encoder(), json.dump());
    EXPECT_NE(vocab.load_error().find("token \"!\" has id \"zero\""), std::string::npos) << vocab.load_error();
}

TEST(TokenizerVocab, CorruptOrTruncatedMergesAreRejected) {
    ScratchVocab vocab;
    const std::string good = read_file(vocab.merges());
    std::vector<std::string> lines;
    std::istringstream in(good);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    const auto join = [](const std::vector<std::string>& ls) {
        std::string s;
        for (const std::string& l : ls) s += l + "\n";
        return s;
    };

    write_file(vocab.merges(), join(std::vector<std::string>(lines.begin(), lines.begin() + 1001)));
    EXPECT_NE(vocab.load_error().find("vocab.bpe: has 1000 merges, expected 50000 (truncated?)"), std::string::npos)
        << vocab.load_error();

    std::vector<std::string> swapped = lines;
    std::swap(swapped[1], swapped[2]);
    write_file(vocab.merges(), join(swapped));
    EXPECT_NE(vocab.load_error().find("vocab.bpe: line 2 (\"" + lines[2] + "\"): merges into a different token"),
              std::string::npos)
        << vocab.load_error();

    std::vector<std::string> malformed = lines;
    malformed[5] = "abc";
    write_file(vocab.merges(), join(malformed));
    EXPECT_NE(vocab.load_error().find("line 6 (\"abc\"): expected two tokens separated by one space"), std::string::npos)
        << vocab.load_error();

    write_file(vocab.merges(), join(std::vector<std::string>(lines.begin() + 1, lines.end())));
    EXPECT_NE(vocab.load_error().find("does not start with a \"#version\" line"), std::string::npos)
        << vocab.load_error();
}
