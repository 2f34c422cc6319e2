// The optimizer state file reader (host/checkpoint.h) on arbitrary files. The expected run is
// the seed corpus's (fuzz/make_seeds.cpp: state_run_identity), so mutations of a valid file get
// past the identity checks. It may only accept a well-formed file or throw std::runtime_error
// naming it.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "fuzz/seed_shapes.h"
#include "host/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static fuzz::MemoryFile file;
    const std::string& path = file.hold(data, size);
    try {
        verify_state_file(path);
    } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find(path) == std::string::npos) fuzz::property_failed("an error that does not name the file");
    }
    std::vector<float> master(fuzz::kSeedStateFloats), m(fuzz::kSeedStateFloats), v(fuzz::kSeedStateFloats);
    try {
        read_state_file(path, fuzz::seed_run_identity(),
                        {{"master", master.data(), fuzz::kSeedStateFloats},
                         {"adam_m", m.data(), fuzz::kSeedStateFloats},
                         {"adam_v", v.data(), fuzz::kSeedStateFloats}});
    } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find(path) == std::string::npos) fuzz::property_failed("an error that does not name the file");
    }
    return 0;
}
