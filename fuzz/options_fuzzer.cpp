// The trainer's command-line parser (host/config.h: parse_args) on arbitrary argument lists
// (NUL-separated). main() catches ConfigError only, so any other exception would end the
// trainer with std::terminate: here it crashes the fuzzer. What parses must print (--print-config
// and the start-up table).
#include <cstdint>
#include <string>
#include <vector>

#include "host/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    constexpr size_t kMaxArguments = 64;
    std::vector<std::string> args(1);
    for (size_t i = 0; i < size && args.size() <= kMaxArguments; ++i) {
        if (data[i] == 0) {
            args.emplace_back();
        } else {
            args.back() += static_cast<char>(data[i]);
        }
    }
    ParseContext context;
    context.data_dir_env = "data";
    context.now = 1700000000;
    try {
        const ParsedArgs parsed = parse_args(args, context);
        parsed.config.to_json();
        parsed.config.to_table();
    } catch (const ConfigError&) {
    }
    return 0;
}
