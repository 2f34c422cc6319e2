// The host side of --generate (host/generation.h): prompts from flags and a file, token-id
// prompts, the length check, and the JSON line of a completion.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/generation.h"
#include "tests/test_support.h"

namespace {

using Json = nlohmann::json;

TEST(GenerationPromptsTest, FlagsFirstThenTheFilesNonEmptyLines) {
    const test_support::ScratchDir scratch("test_generation");
    const std::string path = scratch.file("prompts.txt");
    std::ofstream(path, std::ios::binary) << "First line\r\n\nSecond  line \n   \nlast without newline";
    const std::vector<std::string> prompts = collect_prompts({"from a flag", ""}, path);
    EXPECT_EQ(prompts, (std::vector<std::string>{"from a flag", "", "First line", "Second  line ", "   ",
                                                 "last without newline"}));
    EXPECT_EQ(collect_prompts({"only"}, ""), std::vector<std::string>{"only"});
    try {
        collect_prompts({}, scratch.file("missing.txt"));
        FAIL() << "expected an error";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("--prompt-file " + scratch.file("missing.txt") + ": cannot open it"),
                  std::string::npos);
    }
}

TEST(GenerationPromptsTest, TokenPromptsAreIdsInTheVocabulary) {
    EXPECT_EQ(parse_prompt_tokens("50256 464  3290\t11\n", 50257, "prompt 1"), (std::vector<int>{50256, 464, 3290, 11}));
    EXPECT_TRUE(parse_prompt_tokens("   ", 50257, "prompt 1").empty());
    for (const char* bad : {"1 2 x", "50257", "-1", "+5", "3.5", "12abc", "99999999999999999999"}) {
        try {
            parse_prompt_tokens(bad, 50257, "prompt 4");
            FAIL() << "expected an error for " << bad;
        } catch (const std::runtime_error& e) {
            EXPECT_NE(std::string(e.what()).find("prompt 4: \""), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("is not a token id in [0, 50257)"), std::string::npos) << e.what();
        }
    }
}

TEST(GenerationPromptsTest, EachPromptMustLeaveRoomForTheNewTokens) {
    const std::vector<std::vector<int>> prompts = {{1, 2}, {1, 2, 3, 4, 5}};
    EXPECT_NO_THROW(check_prompt_lengths(prompts, 11, 16));
    try {
        check_prompt_lengths(prompts, 12, 16);
        FAIL() << "expected an error";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "prompt 2 has 5 tokens; with --max-new-tokens 12 it needs 17 positions, more than the model's "
                  "max_seq_len 16: shorten the prompt to at most 4 tokens or lower --max-new-tokens");
    }
}

TEST(GenerationOutputTest, CompletionIsOneJsonLine) {
    const std::string text = "Hi \xE2\x82";  // a token that ends inside a character
    const std::string line = completion_json(2, {50256, 17}, {40, 50256}, true, &text);
    EXPECT_EQ(line.find('\n'), std::string::npos);
    const Json json = Json::parse(line);
    EXPECT_EQ(json["prompt"], 2);
    EXPECT_EQ(json["prompt_tokens"], Json::array({50256, 17}));
    EXPECT_EQ(json["tokens"], Json::array({40, 50256}));
    EXPECT_EQ(json["finish"], "end_of_text");
    EXPECT_EQ(json["text"], "Hi \xEF\xBF\xBD");  // U+FFFD
    const Json ids_only = Json::parse(completion_json(0, {1}, {2, 3}, false, nullptr));
    EXPECT_EQ(ids_only["finish"], "length");
    EXPECT_FALSE(ids_only.contains("text"));
}

}  // namespace
