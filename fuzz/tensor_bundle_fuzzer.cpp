// The tensor bundle reader (host/tensor_bundle.h) on arbitrary files: it may only accept a
// well-formed bundle or throw std::runtime_error naming the file; what it accepts must be
// readable through its accessors.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fuzz/fuzz_support.h"
#include "host/tensor_bundle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static fuzz::MemoryFile file;
    const std::string& path = file.hold(data, size);
    try {
        const tensor_bundle::Bundle bundle = tensor_bundle::Bundle::load(path);
        for (const tensor_bundle::Tensor& tensor : bundle.tensors()) {
            if (!bundle.contains(tensor.name)) fuzz::property_failed("a loaded tensor is not found by name");
            if (tensor.dtype() != tensor_bundle::DType::kInt32) bundle.values_as_double(tensor.name, tensor.shape);
        }
    } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find(path) == std::string::npos) fuzz::property_failed("an error that does not name the file");
    }
    return 0;
}
