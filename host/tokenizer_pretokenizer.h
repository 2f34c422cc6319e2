// The GPT-2 pretokenizer, a hand-written scanner for tiktoken's pattern (see for_each_pretoken).
// Header-only so that the callback inlines into the encoding loop: the scan and the per-piece
// work are one loop over the text. Internal to the tokenizer's implementation
// (host/tokenizer*.cpp); host/tokenizer.h is the API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "host/tokenizer_utf8.h"

namespace tokenizer_internal {

// Pretokenizer: calls emit(begin, end) for each match of
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// in order, on well-formed UTF-8. The regex tries alternatives in order at each start, so:
//  - a contraction wins wherever an apostrophe starts one (lower case only, as in the pattern);
//  - otherwise a letter, number or other character starts a run of its class, and one ASCII
//    space directly before such a character joins that run;
//  - a whitespace run that reaches the end of the text is one piece; one followed by a
//    non-space gives up its last character (\s+(?!\S) backtracks by one), which then is either
//    a space that joins the next run, or (any other whitespace) a piece of its own by \s+.

template <class Emit>
void for_each_pretoken(std::string_view text, Emit&& emit) {
    const uint8_t* s = reinterpret_cast<const uint8_t*>(text.data());
    const size_t n = text.size();
    size_t pos = 0;
    while (pos < n) {
        const size_t start = pos;
        if (s[pos] == '\'' && pos + 1 < n) {
            const uint8_t c1 = s[pos + 1];
            const uint8_t c2 = pos + 2 < n ? s[pos + 2] : 0;
            size_t length = 0;
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') length = 2;
            else if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) length = 3;
            if (length != 0) {
                emit(start, start + length);
                pos += length;
                continue;
            }
        }
        Utf8Char first = char_at(s, pos);
        size_t run_start = pos;
        if (s[pos] == ' ' && pos + 1 < n) {
            const Utf8Char next = char_at(s, pos + 1);
            if (next.cls != kWhitespace) {
                first = next;
                run_start = pos + 1;
            }
        }
        if (first.cls != kWhitespace) {
            pos = run_start + first.length;
            while (pos < n) {
                const Utf8Char c = char_at(s, pos);
                if (c.cls != first.cls) break;
                pos += c.length;
            }
            emit(start, pos);
            continue;
        }
        size_t end = pos, last_char = pos;
        while (end < n) {
            const Utf8Char c = char_at(s, end);
            if (c.cls != kWhitespace) break;
            last_char = end;
            end += c.length;
        }
        // A single whitespace character before a non-space is not a space here (that case
        // joined the next run above), so \s+ takes it alone.
        pos = (end == n || last_char == start) ? end : last_char;
        emit(start, pos);
    }
}

}  // namespace tokenizer_internal
