// The text of a raw document (document_text() in inputs.h): a JSON line's text field, a JSON
// array's strings, or text, optionally cleaned up as the HuggingFace OpenWebText loader does.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "data_prep/src/inputs.h"

namespace data_prep {

namespace {

// Unicode White_Space as Python's str.isspace() sees it (what str.strip() removes).
bool is_python_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

// Length of the valid UTF-8 sequence at text[pos] and its code point; 0 if invalid.
size_t utf8_sequence(std::string_view text, size_t pos, uint32_t& cp) {
    const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
    const unsigned char lead = byte(pos);
    size_t length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xe ? 3 : (lead >> 3) == 0x1e ? 4 : 0;
    if (length == 0 || pos + length > text.size()) return 0;
    cp = length == 1 ? lead : lead & (0x7f >> length);
    for (size_t i = 1; i < length; i++) {
        if ((byte(pos + i) & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (byte(pos + i) & 0x3f);
    }
    return length;
}

// re.sub("\n\n\n+", "\n\n", text).strip() on the text as Python's text mode reads it ("\r\n"
// and a lone "\r" become "\n"), as the HuggingFace OpenWebText loader does.
std::string collapse_newlines_and_strip(std::string_view text) {
    std::string collapsed;
    collapsed.reserve(text.size());
    size_t newline_run = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '\r') {
            if (i + 1 < text.size() && text[i + 1] == '\n') continue;
            c = '\n';
        }
        newline_run = c == '\n' ? newline_run + 1 : 0;
        if (newline_run <= 2) collapsed += c;
    }
    size_t begin = 0;
    uint32_t cp = 0;
    for (size_t length; begin < collapsed.size() && (length = utf8_sequence(collapsed, begin, cp)) && is_python_space(cp);) {
        begin += length;
    }
    size_t end = collapsed.size();
    while (end > begin) {
        size_t start = end - 1;  // back up to the lead byte of the last character
        while (start > begin && (static_cast<unsigned char>(collapsed[start]) & 0xc0) == 0x80 && end - start < 4) start--;
        if (utf8_sequence(collapsed, start, cp) != end - start || !is_python_space(cp)) break;
        end = start;
    }
    return collapsed.substr(begin, end - begin);
}

std::string join_location(const std::string& location, int64_t line) {
    return line > 0 ? location + ":" + std::to_string(line) : location;
}

}  // namespace

std::string_view document_text(const RawDocument& raw, const ReaderOptions& options, std::string& storage) {
    using nlohmann::json;
    const auto invalid = [&](const std::string& what) {
        return InvalidDocument(join_location(*raw.location, raw.line) + ": " + what);
    };
    switch (raw.kind) {
        case RawDocument::Kind::kText:
            if (!options.collapse_newlines_and_strip) return raw.bytes;
            storage = collapse_newlines_and_strip(raw.bytes);
            return storage;
        case RawDocument::Kind::kJsonLine: {
            json object;
            try {
                object = json::parse(raw.bytes);
            } catch (const json::exception& e) {
                throw invalid(std::string("invalid JSON (") + e.what() +
                              "); pass --skip-invalid-json to skip and count such lines");
            }
            const auto field = object.is_object() ? object.find(options.text_field) : object.end();
            if (field == object.end() || !field->is_string()) {
                throw invalid("no string field \"" + options.text_field +
                              "\" in this JSON line (pass --text-field NAME to read another field)");
            }
            storage = field->get<std::string>();
            return storage;
        }
        case RawDocument::Kind::kJsonArray: {
            json array;
            try {
                array = json::parse(raw.bytes);
            } catch (const json::exception& e) {
                throw invalid(std::string("invalid JSON (") + e.what() + ")");
            }
            if (!array.is_array()) throw invalid("a .json input must be an array of strings (use .jsonl for one object per line)");
            storage.clear();
            for (size_t i = 0; i < array.size(); i++) {
                if (!array[i].is_string()) throw invalid("element " + std::to_string(i) + " of the JSON array is not a string");
                if (i > 0) storage += '\n';
                storage += array[i].get_ref<const std::string&>();
            }
            return storage;
        }
    }
    throw std::logic_error("unknown raw document kind");
}

}  // namespace data_prep
