// The data_prep input readers (data_prep/src/inputs.h): plain text, JSONL, JSON, tar (nested)
// and every codec, on arbitrary bytes. First byte: the input's name (fuzz_support.h's
// kDocumentSuffixes); second byte: whether it was named on the command line and how plain text
// splits into documents. Reading may only succeed or throw std::runtime_error naming the input;
// document_text() may only throw InvalidDocument.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "data_prep/src/inputs.h"
#include "fuzz/fuzz_support.h"

namespace {

// A directory of links "input<suffix>" -> the memory file, one per suffix, removed at exit.
struct NamedInputs {
    fuzz::MemoryFile file;
    std::filesystem::path directory;
    NamedInputs() {
        directory = std::filesystem::temp_directory_path() / ("documents_fuzzer_" + std::to_string(getpid()));
        std::filesystem::create_directories(directory);
        for (std::string_view suffix : fuzz::kDocumentSuffixes)
            std::filesystem::create_symlink(file.path(), link(suffix));
    }
    ~NamedInputs() {
        std::error_code ignored;
        std::filesystem::remove_all(directory, ignored);
    }
    std::string link(std::string_view suffix) const { return (directory / ("input" + std::string(suffix))).string(); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static NamedInputs inputs;
    if (size < 2) return 0;
    const std::string path = inputs.link(fuzz::kDocumentSuffixes[data[0] % fuzz::kDocumentSuffixCount]);
    const bool named = data[1] & 1;
    data_prep::ReaderOptions options;
    options.text_split = static_cast<data_prep::DocumentSplit>((data[1] >> 1) % 3);
    options.collapse_newlines_and_strip = data[1] & 8;
    // A few input bytes can decompress to gigabytes: the limit makes such an input a quick,
    // clean error here instead of minutes of decoding.
    options.max_document_bytes = size_t(1) << 20;
    inputs.file.hold(data + 2, size - 2);
    try {
        data_prep::DocumentReader reader({data_prep::InputFile(path, named)}, options);
        reader.read_all([&](data_prep::RawDocument&& raw) {
            std::string storage;
            try {
                data_prep::document_text(raw, options, storage);
            } catch (const data_prep::InvalidDocument&) {
            }
            return true;
        });
    } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find(path) == std::string::npos) fuzz::property_failed("an error that does not name the input");
    }
    return 0;
}
