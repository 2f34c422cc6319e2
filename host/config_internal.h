// What the configuration's source files share with each other, and nobody else: the value
// syntax, the option table, and what the experiments tell resolution, parsing and --help.
// host/config.h is the interface; this header is for host/config*.cpp only.
//   config_options.cpp       value syntax, the option table, flag lookup and did-you-mean
//   config_presets.cpp       experiments: the seed presets and their variants, dN, checkpoint files
//   config_command_line.cpp  parse_args, the environment it reads, --help
//   config.cpp               resolve() (validation, derived fields), to_json / to_table
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/config.h"

namespace config_internal {

using Json = nlohmann::ordered_json;

constexpr int64_t kAutoWarmupSteps = -1;  // --warmup-steps auto: 1% of --steps (resolve() fills it in)

// ---- Value syntax (config_options.cpp)

// A whole decimal integer, nothing around it; false if not one or out of long long's range.
bool parse_integer(const std::string& text, long long* value);
// "" for UTF-8 text, else why the text cannot be a configuration value.
std::string utf8_problem(const std::string& text);
std::string lowercase(std::string text);
// The JSON rendering of a value, without quotes for strings: one formatter for the table, the
// help's defaults and error messages.
std::string display(const Json& value);
std::string format_number(double value);

// ---- The option table (config_options.cpp)

struct Option {
    std::string flag;        // "--n-layer"
    std::string key;         // "n_layer": JSON key and table label
    std::string section;
    std::string value_name;  // placeholder in --help
    std::string help;
    std::string valid;       // the valid values, in words
    std::string default_note;  // replaces the shown default where it depends on the run
    std::function<std::string(const TrainConfig&)> problem;  // "" when the value is valid
    std::function<void(TrainConfig&, const std::string&)> set;  // throws ConfigError
    std::function<Json(const TrainConfig&)> get;
};

// Every flag, in --help and print order.
const std::vector<Option>& options();
const Option* find_option(const std::string& flag);  // nullptr if there is none
// The error for a flag find_option does not know, with the flags it probably meant.
ConfigError unknown_flag(const std::string& flag);

// ---- Experiments (config_presets.cpp)

// Whether `experiment` (a resolved experiment name) is a seed run that the seed trains with
// ZeRO-1, which --zero-stage auto follows on more than one GPU.
bool seed_shards_optimizer_state(const std::string& experiment);
// Throws ConfigError if a flag changed the shape of the checkpoint config.init_from.
void check_checkpoint_shape(const TrainConfig& config);
// The "Experiments" section of --help: each preset, the variants, what all presets share.
std::string experiments_help();

// ---- Paths (config.cpp)

std::string join_path(const std::string& dir, const std::string& name);

}  // namespace config_internal
