// The model checkpoint reader (host/checkpoint.h) on arbitrary files: header, weights,
// verification. It may only accept a well-formed file or throw std::runtime_error naming it.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "host/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static fuzz::MemoryFile file;
    const std::string& path = file.hold(data, size);
    try {
        const ModelFileHeader header = read_model_header(path);
        const int64_t total = ParamLayout(header.shape, 0.0).total();
        // The header checked the file's size against the shape: the weights fit in the input.
        if (total < 0 || total > static_cast<int64_t>(size / sizeof(float))) fuzz::property_failed("accepted a size the file lacks");
        std::vector<float> weights(static_cast<size_t>(total));
        read_model_params(path, header.shape, weights.data(), 0, total);
        verify_model_file(path);
    } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find(path) == std::string::npos) fuzz::property_failed("an error that does not name the file");
    }
    return 0;
}
