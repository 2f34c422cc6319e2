// The tokenizer's public text building blocks (host/tokenizer.h): UTF-8 validation and repair
// (ill-formed subparts -> U+FFFD), pretokenize, and next_restart_point, where encode_parallel
// may cut a text. The scanners themselves are inline in host/tokenizer_utf8.h and
// host/tokenizer_pretokenizer.h.

#include <algorithm>
#include <stdexcept>

#include "host/tokenizer.h"
#include "host/tokenizer_pretokenizer.h"
#include "host/tokenizer_utf8.h"

using namespace tokenizer_internal;

constexpr char kReplacementUtf8[] = "\xEF\xBF\xBD";

bool Gpt2Tokenizer::is_valid_utf8(std::string_view text) {
    return first_invalid_utf8(reinterpret_cast<const uint8_t*>(text.data()), text.size()) == text.size();
}

std::string Gpt2Tokenizer::replace_invalid_utf8(std::string_view text) {
    const uint8_t* s = reinterpret_cast<const uint8_t*>(text.data());
    const size_t n = text.size();
    std::string out;
    out.reserve(n + n / 8);
    size_t done = 0;  // text[0, done) has been copied or replaced
    while (done < n) {
        const size_t bad = done + first_invalid_utf8(s + done, n - done);
        out.append(text.data() + done, bad - done);
        if (bad == n) break;
        out += kReplacementUtf8;
        done = bad + utf8_step(s, bad, n).length;
    }
    return out;
}

std::vector<std::string_view> Gpt2Tokenizer::pretokenize(std::string_view text) {
    if (!is_valid_utf8(text))
        throw std::invalid_argument("Gpt2Tokenizer::pretokenize: text is not well-formed UTF-8; pass it through "
                                    "replace_invalid_utf8 first");
    std::vector<std::string_view> pieces;
    for_each_pretoken(text, [&](size_t begin, size_t end) { pieces.push_back(text.substr(begin, end - begin)); });
    return pieces;
}

size_t Gpt2Tokenizer::next_restart_point(std::string_view text, size_t from) {
    const uint8_t* s = reinterpret_cast<const uint8_t*>(text.data());
    const size_t n = text.size();
    size_t pos = std::min(from, n);
    while (pos < n && (s[pos] & 0xC0) == 0x80) ++pos;  // to the next character boundary
    if (pos >= n) return n;
    CharClass previous = char_at(s, pos).cls;
    pos += char_at(s, pos).length;
    while (pos < n) {
        const Utf8Char c = char_at(s, pos);
        if ((previous == kLetter || previous == kNumber) && c.cls != previous) return pos;
        previous = c.cls;
        pos += c.length;
    }
    return n;
}
