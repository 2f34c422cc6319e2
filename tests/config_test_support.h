// What the configuration tests (tests/test_config*.cpp) share: parsing with a fixed context, the
// error a command line gives, bad command lines with the message they must get, the names of every
// experiment, and a small model file for the runs that start from one.
#pragma once

#include <string>
#include <vector>

#include "host/checkpoint.h"
#include "host/config.h"
#include "tests/test_support.h"

namespace config_test {

inline const ParseContext kContext{"/datasets", 1798400000};  // a fixed clock and DATA_DIR=/datasets

inline TrainConfig parse(std::vector<std::string> args) { return parse_args(args, kContext).config; }

inline std::string error_of(std::vector<std::string> args) {
    try {
        parse_args(args, kContext);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

inline std::vector<std::string> all_experiment_names() {
    std::vector<std::string> names;
    for (const std::string& base : preset_names())
        for (const char* variant : {"", "-rotary", "-8k", "-rotary-8k"}) names.push_back(base + variant);
    for (const char* seed_run : {"gpt3s-rotary-30B", "gpt3m-rotary-30B", "gpt3l-rotary-30B", "gpt3xl-rotary-60B",
                                 "gpt3-2.7B-hdim128", "gpt3-2.7B-hdim128-rotary", "gpt3-2.7B-hdim128-rotary-8k"})
        names.push_back(seed_run);
    return names;
}

// A command line that must fail, and a part of the message it must give.
struct BadInput {
    std::vector<std::string> args;
    std::string message;  // a part the error must contain
};

// A model file of one small layer (32 positions) in `scratch`, for the runs -e CHECKPOINT starts.
inline std::string small_checkpoint(const test_support::ScratchDir& scratch) {
    const TrainConfig source = parse({"-e", "d1", "--n-embd", "64", "--n-head", "1", "--max-seq-len", "32", "--seq-len", "32"});
    const std::vector<float> params(static_cast<size_t>(source.num_params), 0.5f);
    const std::string file = model_file_path(scratch.path.string(), 10);
    write_model_file(file, source.model_shape(), 10, params.data());
    return file;
}

}  // namespace config_test
