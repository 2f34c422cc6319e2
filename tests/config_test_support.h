// What the configuration tests (tests/test_config*.cpp) share: parsing with a fixed context, the
// error a command line gives, and the names of every experiment.
#pragma once

#include <string>
#include <vector>

#include "host/config.h"

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

}  // namespace config_test
