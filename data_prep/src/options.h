// Command-line options of the data tools: one table drives parsing, validation and --help, so
// the help text cannot drift from what the parser accepts.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace data_prep {

struct Option {
    std::string name;        // "--threads"
    std::string value_name;  // "N"; empty for a switch (apply gets "")
    std::string help;
    // Stores the value; throws std::invalid_argument saying what a valid value is.
    std::function<void(const std::string& value)> apply;
    std::string group;  // heading in --help; callers may also restrict options by group
};

// A wrong command line (unknown option, missing or invalid value); main() exits with status 2.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct ParsedCommandLine {
    std::vector<std::string> positional;
    std::vector<const Option*> given;  // options that appeared, in order
};

// Parses argv[1..]: "--name value", "--name=value", switches, and positional arguments (anything
// not starting with "--"). Throws UsageError naming the option on any error.
ParsedCommandLine parse_options(int argc, char** argv, const std::vector<Option>& table);

// The options of `table` as aligned help lines, grouped under their group headings.
std::string options_help(const std::vector<Option>& table);

// Value parsers for Option::apply; they throw std::invalid_argument saying what is expected.
int64_t parse_integer(const std::string& text, int64_t min, int64_t max);
double parse_number(const std::string& text, double min, double max);

}  // namespace data_prep
