// The token shard reader (host/shard.h) on arbitrary files: it may only accept a well-formed
// shard or throw std::runtime_error naming the file.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fuzz/fuzz_support.h"
#include "host/shard.h"
#include "host/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static fuzz::MemoryFile file;
    const std::string& path = file.hold(data, size);
    try {
        const shard::ShardInfo info = shard::read_header(path);
        const std::vector<uint32_t> tokens = shard::read_tokens(path, Gpt2Tokenizer::kVocabSize);
        if (static_cast<int64_t>(tokens.size()) != info.num_tokens) fuzz::property_failed("token count differs from the header");
    } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find(path) == std::string::npos) fuzz::property_failed("an error that does not name the file");
    }
    return 0;
}
