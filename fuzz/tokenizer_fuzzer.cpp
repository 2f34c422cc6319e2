// The GPT-2 tokenizer (host/tokenizer.h) on arbitrary bytes. First byte: the mode.
//   0: encode; decoding gives the text back (invalid UTF-8 as U+FFFD), and the chunked parallel
//      encoder (chunks of 1..64 bytes, second byte) gives the same ids
//   1: encode with <|endoftext|> special; decoding gives the text back too
//   2: decode the rest as little-endian uint16 ids; an id outside the vocabulary is the only
//      error allowed (std::out_of_range)
// Needs the vocabulary of `make setup` ($GPT2_VOCAB_DIR, else data/vocab).
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "host/tokenizer.h"

namespace {

const Gpt2Tokenizer& tokenizer() {
    static const Gpt2Tokenizer loaded = Gpt2Tokenizer::load(Gpt2Tokenizer::default_vocab_dir());
    return loaded;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    tokenizer();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const int mode = data[0] % 3;
    const size_t chunk_bytes = 1 + data[1] % 64;
    const std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
    if (mode == 0 || mode == 1) {
        const auto special = mode == 0 ? Gpt2Tokenizer::Special::kOrdinary : Gpt2Tokenizer::Special::kEndOfText;
        std::vector<int> ids;
        tokenizer().encode_append(text, ids, special);
        if (tokenizer().decode(ids) != Gpt2Tokenizer::replace_invalid_utf8(text))
            fuzz::property_failed("decode(encode(text)) differs from the text");
        if (tokenizer().encode_parallel(text, 1, special, chunk_bytes) != ids)
            fuzz::property_failed("encode_parallel differs from encode");
        return 0;
    }
    std::vector<int> ids;
    for (size_t i = 0; i + 1 < text.size(); i += 2)
        ids.push_back(static_cast<uint8_t>(text[i]) | static_cast<uint8_t>(text[i + 1]) << 8);
    bool out_of_vocabulary = false;
    for (int id : ids) out_of_vocabulary |= id >= Gpt2Tokenizer::kVocabSize;
    try {
        tokenizer().decode(ids);
        if (out_of_vocabulary) fuzz::property_failed("decode accepted an id outside the vocabulary");
    } catch (const std::out_of_range&) {
        if (!out_of_vocabulary) fuzz::property_failed("decode rejected ids of the vocabulary");
    }
    return 0;
}
