// data_prep's command-line option table (data_prep/src/options.h): parsing, values, help and the
// messages for bad command lines.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data_prep/src/options.h"
#include "tests/data_prep_test_support.h"

using namespace data_prep;
using namespace data_prep_test;

TEST(DataPrepOptions, ParsesTheTableAndRejectsBadCommandLines) {
    int64_t threads = 0;
    bool force = false;
    std::string name;
    const std::vector<Option> table = {
        {"--threads", "N", "", [&](const std::string& v) { threads = parse_integer(v, 1, 64); }, "g"},
        {"--force", "", "", [&](const std::string&) { force = true; }, "g"},
        {"--name", "NAME", "", [&](const std::string& v) { name = v; }, "g"},
    };
    std::vector<std::string> args = {"prepare", "text", "--threads", "8", "--force", "--name=x"};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    const ParsedCommandLine parsed = parse_options(static_cast<int>(argv.size()), argv.data(), table);
    EXPECT_EQ(parsed.positional, std::vector<std::string>{"text"});
    EXPECT_EQ(threads, 8);
    EXPECT_TRUE(force);
    EXPECT_EQ(name, "x");
    const auto parse = [&](std::vector<std::string> words) {
        std::vector<char*> pointers;
        for (std::string& word : words) pointers.push_back(word.data());
        return error_of([&] { parse_options(static_cast<int>(pointers.size()), pointers.data(), table); });
    };
    EXPECT_CONTAINS(parse({"p", "--bogus"}), "unknown option --bogus");
    EXPECT_CONTAINS(parse({"p", "--threads"}), "--threads needs a value");
    EXPECT_CONTAINS(parse({"p", "--threads", "0"}), "--threads 0: expected an integer from 1 to 64");
    EXPECT_CONTAINS(parse({"p", "--threads", "4x"}), "--threads 4x");
    EXPECT_CONTAINS(parse({"p", "--force=1"}), "--force takes no value");
    EXPECT_CONTAINS(options_help(table), "--threads N");
}
