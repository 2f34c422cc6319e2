#include "data_prep/src/options.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace data_prep {

ParsedCommandLine parse_options(int argc, char** argv, const std::vector<Option>& table) {
    ParsedCommandLine parsed;
    for (int i = 1; i < argc; i++) {
        const std::string arg = argv[i];
        if (arg.rfind("--", 0) != 0 || arg == "--") {
            parsed.positional.push_back(arg);
            continue;
        }
        const size_t equals = arg.find('=');
        const std::string name = arg.substr(0, equals);
        const auto option = std::find_if(table.begin(), table.end(), [&](const Option& o) { return o.name == name; });
        if (option == table.end()) throw UsageError("unknown option " + name);
        std::string value;
        if (option->value_name.empty()) {
            if (equals != std::string::npos) throw UsageError(name + " takes no value");
        } else if (equals != std::string::npos) {
            value = arg.substr(equals + 1);
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            throw UsageError(name + " needs a value (" + option->value_name + ")");
        }
        try {
            option->apply(value);
        } catch (const std::invalid_argument& e) {
            throw UsageError(name + " " + value + ": " + e.what());
        }
        parsed.given.push_back(&*option);
    }
    return parsed;
}

std::string options_help(const std::vector<Option>& table) {
    size_t width = 0;
    for (const Option& option : table) width = std::max(width, option.name.size() + 1 + option.value_name.size());
    std::string help, group;
    bool first = true;
    for (const Option& option : table) {
        if (first || option.group != group) {
            help += (first ? "" : "\n") + option.group + ":\n";
            group = option.group;
            first = false;
        }
        std::string flag = option.name + (option.value_name.empty() ? "" : " " + option.value_name);
        flag.resize(width, ' ');
        help += "  " + flag + "  " + option.help + "\n";
    }
    return help;
}

int64_t parse_integer(const std::string& text, int64_t min, int64_t max) {
    errno = 0;
    char* end = nullptr;
    const long long value = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE || value < min || value > max) {
        throw std::invalid_argument("expected an integer from " + std::to_string(min) + " to " + std::to_string(max));
    }
    return value;
}

double parse_number(const std::string& text, double min, double max) {
    errno = 0;
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(value) || value < min || value > max) {
        char range[64];
        std::snprintf(range, sizeof range, "%g to %g", min, max);
        throw std::invalid_argument(std::string("expected a number from ") + range);
    }
    return value;
}

}  // namespace data_prep
