// Configuration of the generation runs (--generate, --prompt-file, --generate-bench): prompts,
// sampling and outputs parse, and every bad combination is a ConfigError naming the flags.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "host/config.h"
#include "tests/config_test_support.h"
#include "tests/test_support.h"

using Json = nlohmann::json;
using namespace config_test;

namespace {

TEST(ConfigGenerationTest, PromptsSamplingAndOutputsParse) {
    const test_support::ScratchDir scratch("test_config");
    const std::string file = small_checkpoint(scratch);

    const TrainConfig c = parse({"-e", file, "--generate", "Once upon", "--generate", "", "--generate=--dashes",
                                 "--prompt-file", "p.txt", "--prompt-format", "tokens", "--max-new-tokens", "31",
                                 "--temperature", "0", "--top-k", "0", "--top-p", "0.9", "--generate-out", "o.jsonl",
                                 "--generate-logits-out", "l.bin"});
    EXPECT_EQ(c.generate, (std::vector<std::string>{"Once upon", "", "--dashes"}));
    EXPECT_EQ(c.prompt_file, "p.txt");
    EXPECT_EQ(c.prompt_format, PromptFormat::tokens);
    EXPECT_EQ(c.max_new_tokens, 31);
    EXPECT_EQ(c.temperature, 0.0);  // greedy
    EXPECT_EQ(c.top_p, 0.9);
    EXPECT_EQ(c.generate_out, "o.jsonl");
    EXPECT_EQ(c.generate_logits_out, "l.bin");
    EXPECT_TRUE(c.generation_run());
    EXPECT_EQ(Json::parse(c.to_json())["generate"], Json::array({"Once upon", "", "--dashes"}));
    EXPECT_TRUE(parse({"-e", file, "--prompt-file", "p.txt"}).generation_run());
    EXPECT_FALSE(parse({"-e", file}).generation_run());
    // The default length leaves a short model's prompt one position; an explicit one is checked.
    EXPECT_EQ(parse({"-e", file, "--prompt-file", "p.txt"}).max_new_tokens, 31);
    // The benchmark also takes a preset's random weights.
    const TrainConfig bench = parse({"-e", "gpt2s", "--generate-bench", "8", "--max-new-tokens", "256"});
    EXPECT_EQ(bench.generate_bench, 8);
    EXPECT_TRUE(bench.generation_run());
    const TrainConfig defaults = parse({"-e", "d2"});
    EXPECT_EQ(defaults.top_p, 1.0);
    EXPECT_EQ(defaults.max_new_tokens, 128);
    EXPECT_EQ(defaults.prompt_format, PromptFormat::text);
    EXPECT_TRUE(defaults.generate.empty());
    EXPECT_TRUE(defaults.generate_cuda_graph);
    EXPECT_FALSE(parse({"-e", file, "--generate", "Hi", "--generate-cuda-graph", "0"}).generate_cuda_graph);
    const std::string help = help_text();
    for (const char* flag : {"--generate TEXT", "--prompt-file FILE", "--prompt-format text|tokens", "--max-new-tokens N",
                             "--top-p X", "--generate-out FILE", "--generate-logits-out FILE", "--generate-bench N",
                             "--generate-cuda-graph 0|1"})
        EXPECT_NE(help.find(flag), std::string::npos) << flag;
}

TEST(ConfigGenerationTest, BadGenerationRunsAreClearErrors) {
    const test_support::ScratchDir scratch("test_config");
    const std::string file = small_checkpoint(scratch);
    const std::vector<BadInput> cases = {
        {{"-e", "d2", "--generate", "Hi"},
         "--generate continues text with a trained model: give its checkpoint with -e model_SSSSSSSS.bin"},
        {{"-e", "d2", "--prompt-file", "p.txt"}, "--prompt-file continues text with a trained model"},
        {{"-e", file, "--generate", "Hi", "--max-new-tokens", "32"},
         "--max-new-tokens 32 leaves no position for a prompt: the model takes --max-seq-len 32 tokens in all"},
        {{"-e", "gpt2s", "--generate-bench", "4", "--max-new-tokens", "1024"}, "--max-new-tokens 1024 leaves no position"},
        {{"-e", file, "--generate", "Hi", "--nproc", "2"}, "--generate runs on one GPU: drop --nproc and mpirun"},
        {{"-e", file, "--generate", "Hi", "--eval-only", "1"}, "--generate and --eval-only are two runs"},
        {{"-e", file, "--generate", "Hi", "--hellaswag-only", "1"}, "--hellaswag-only and --generate are two runs"},
        {{"-e", file, "--generate", "Hi", "--generate-bench", "2"},
         "--generate and --generate-bench are two runs: give one of them (--generate-bench times its own prompts)"},
        {{"-e", file, "--generate", "Hi", "--logits-in", "t.bin", "--logits-out", "l.bin"},
         "--logits-out and --generate are two runs"},
        {{"-e", file, "--generate-out", "o.jsonl"},
         "--generate-out writes the completions of prompts: give them with --generate TEXT or --prompt-file FILE"},
        {{"-e", "gpt2s", "--generate-bench", "2", "--generate-logits-out", "l.bin"}, "--generate-logits-out writes the"},
        {{"-e", file, "--generate", "Hi", "--top-p", "0"}, "--top-p 0 is out of range: valid is a number in (0.0, 1.0]"},
        {{"-e", file, "--generate", "Hi", "--top-p", "1.5"}, "--top-p 1.5 is out of range"},
        {{"-e", file, "--generate", "Hi", "--temperature", "-1"}, "--temperature -1 is out of range: valid is a number in [0.0, 100.0]"},
        {{"-e", file, "--generate", "Hi", "--max-new-tokens", "0"}, "--max-new-tokens 0 is out of range"},
        {{"-e", file, "--generate", "Hi", "--prompt-format", "ids"}, "--prompt-format: 'ids' is not one of text|tokens"},
        {{"-e", "gpt2s", "--generate-bench", "65536"}, "--generate-bench 65536 is out of range"},
        {{"--generate"}, "--generate needs a value"},
        {{"-e", file, "--generate", "caf\xe9"}, "--generate is not UTF-8 text"},
    };
    for (const BadInput& c : cases) {
        const std::string message = error_of(c.args);
        EXPECT_NE(message.find(c.message), std::string::npos)
            << "args: " << ::testing::PrintToString(c.args) << "\n  got: " << message;
    }
}

}  // namespace
