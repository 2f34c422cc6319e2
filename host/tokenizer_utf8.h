// UTF-8 scanning for the GPT-2 tokenizer: the well-formedness step of Unicode Table 3-7 (which
// finds ill-formed subparts to replace) and the pretokenizer's view of a character, its class
// and length. Header-only and inline because they run on every byte the tokenizer encodes.
// Internal to the tokenizer's implementation (host/tokenizer*.cpp); host/tokenizer.h is the API.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "host/unicode_classes.h"

namespace tokenizer_internal {

using unicode_classes::CharClass;
using unicode_classes::kLetter;
using unicode_classes::kNumber;
using unicode_classes::kOther;
using unicode_classes::kWhitespace;

// The well-formed sequence starting at s[i] (valid = true, length = its bytes), or the maximal
// ill-formed subpart there (valid = false, length = the lead byte plus the continuation bytes
// that were still acceptable), per the byte ranges of Unicode Table 3-7.
struct Utf8Step {
    uint32_t length;
    bool valid;
};
inline Utf8Step utf8_step(const uint8_t* s, size_t i, size_t n) {
    const uint8_t lead = s[i];
    if (lead < 0x80) return {1, true};
    uint32_t continuation_bytes;
    uint8_t lo = 0x80, hi = 0xBF;  // range of the first continuation byte
    if (lead >= 0xC2 && lead <= 0xDF) {
        continuation_bytes = 1;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        continuation_bytes = 2;
        if (lead == 0xE0) lo = 0xA0;  // no overlongs
        if (lead == 0xED) hi = 0x9F;  // no surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        continuation_bytes = 3;
        if (lead == 0xF0) lo = 0x90;  // no overlongs
        if (lead == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    } else {
        return {1, false};  // a stray continuation byte, C0, C1 or F5..FF
    }
    for (uint32_t k = 1; k <= continuation_bytes; ++k) {
        if (i + k >= n || s[i + k] < lo || s[i + k] > hi) return {k, false};
        lo = 0x80;
        hi = 0xBF;
    }
    return {continuation_bytes + 1, true};
}

// Offset of the first byte of the first ill-formed subpart, or n.
inline size_t first_invalid_utf8(const uint8_t* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        // Eight ASCII bytes at a time: the common case, and the reason this pass is nearly free.
        if (i + 8 <= n) {
            uint64_t word;
            std::memcpy(&word, s + i, 8);
            if ((word & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        const Utf8Step step = utf8_step(s, i, n);
        if (!step.valid) return i;
        i += step.length;
    }
    return n;
}

// Class and length of the character at s[i] of well-formed UTF-8.
struct Utf8Char {
    CharClass cls;
    uint32_t length;
};
constexpr std::array<uint8_t, 128> make_ascii_classes() {
    std::array<uint8_t, 128> classes{};
    for (int c = 0; c < 128; ++c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) classes[c] = kLetter;
        else if (c >= '0' && c <= '9') classes[c] = kNumber;
        else if (c == ' ' || (c >= '\t' && c <= '\r')) classes[c] = kWhitespace;
        else classes[c] = kOther;
    }
    return classes;
}
constexpr std::array<uint8_t, 128> kAsciiClasses = make_ascii_classes();

inline Utf8Char char_at(const uint8_t* s, size_t i) {
    const uint8_t lead = s[i];
    if (lead < 0x80) return {CharClass(kAsciiClasses[lead]), 1};
    char32_t cp;
    uint32_t length;
    if (lead < 0xE0) {
        cp = (char32_t(lead & 0x1F) << 6) | (s[i + 1] & 0x3F);
        length = 2;
    } else if (lead < 0xF0) {
        cp = (char32_t(lead & 0x0F) << 12) | (char32_t(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
        length = 3;
    } else {
        cp = (char32_t(lead & 0x07) << 18) | (char32_t(s[i + 1] & 0x3F) << 12) | (char32_t(s[i + 2] & 0x3F) << 6) |
             (s[i + 3] & 0x3F);
        length = 4;
    }
    return {unicode_classes::char_class(cp), length};
}

}  // namespace tokenizer_internal
