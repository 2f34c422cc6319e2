// HellaSwag (host/hellaswag.h, data_prep/src/hellaswag_recipe.h): llm.c's completion scoring,
// the items file round trip and its validation, and the jsonl parser's tokenization.
// Runs from the repository root with the vocabulary of `make setup`, as the data_prep tests do.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "data_prep/src/hellaswag_recipe.h"
#include "host/hellaswag.h"
#include "tests/test_support.h"

namespace {

using test_support::error_of;
using test_support::ScratchDir;

TEST(HellaSwag, SumPicksTheLikeliestEndingMeanNormalizesByLength) {
    // Ending 1 has the smallest total loss (1.5) but over 1 token; ending 2 has the smallest mean
    // (0.4 over 5 tokens, total 2.0). The label's ending is 2.
    const std::array<std::vector<float>, 4> losses = {std::vector<float>{1.0f, 1.0f},
                                                      {1.5f},
                                                      {0.4f, 0.4f, 0.4f, 0.4f, 0.4f},
                                                      {3.0f, 0.1f}};
    const hellaswag::Choice choice = hellaswag::choose_ending(losses);
    EXPECT_EQ(choice.by_sum, 1);
    EXPECT_EQ(choice.by_mean, 2);
    hellaswag::Tally tally;
    tally.add(2, choice);
    tally.add(1, choice);
    tally.add(0, hellaswag::choose_ending({std::vector<float>{0.5f}, {0.5f}, {0.5f}, {0.5f}}));  // ties: the first
    EXPECT_EQ(tally.count(), 3);
    EXPECT_DOUBLE_EQ(tally.acc(), 2.0 / 3.0);       // items 2 (by sum 1) and 3
    EXPECT_DOUBLE_EQ(tally.acc_norm(), 2.0 / 3.0);  // items 1 and 3
    EXPECT_NE(error_of([] { hellaswag::choose_ending({std::vector<float>{1.0f}, {}, {1.0f}, {1.0f}}); })
                  .find("ending 1 has no token losses"),
              std::string::npos);
}

std::vector<hellaswag::Item> sample_items() {
    hellaswag::Item a;
    a.index = 24;
    a.label = 3;
    a.context = {32, 582, 318};
    a.endings = {std::vector<int32_t>{318}, {318, 11}, {2}, {50256, 7, 7}};
    hellaswag::Item b = a;
    b.index = 92;
    b.label = 0;
    b.context = {1, 2, 3, 4, 5, 6};
    return {a, b};
}

TEST(HellaSwag, ItemsFileRoundTripAndValidation) {
    ScratchDir dir("test_hellaswag");
    const std::string path = dir.file("items.bin");
    const std::vector<hellaswag::Item> items = sample_items();
    hellaswag::write_items(path, items, 50257);
    const std::vector<hellaswag::Item> back = hellaswag::read_items(path);
    ASSERT_EQ(back.size(), 2u);
    EXPECT_EQ(back[0].index, 24);
    EXPECT_EQ(back[0].label, 3);
    EXPECT_EQ(back[0].context, items[0].context);
    EXPECT_EQ(back[0].endings[3], items[0].endings[3]);
    EXPECT_EQ(back[1].context, items[1].context);
    EXPECT_EQ(hellaswag::longest_row(back), 9);

    std::vector<int32_t> ints(std::filesystem::file_size(path) / 4);
    std::ifstream(path, std::ios::binary).read(reinterpret_cast<char*>(ints.data()), ints.size() * 4);
    EXPECT_EQ(ints[0], hellaswag::kMagic);
    EXPECT_EQ(ints[2], 2);
    EXPECT_EQ(ints[4], 2 * 7 + 3 + 6);  // tokens: endings 7 per item, contexts 3 and 6
    EXPECT_EQ(ints[5], 9);
    auto rewritten_error = [&](size_t index, int32_t value, bool truncate = false) {
        std::vector<int32_t> bad = ints;
        if (truncate) bad.pop_back();
        else bad[index] = value;
        const std::string bad_path = dir.file("bad.bin");
        std::ofstream(bad_path, std::ios::binary).write(reinterpret_cast<const char*>(bad.data()), bad.size() * 4);
        return error_of([&] { hellaswag::read_items(bad_path); });
    };
    EXPECT_NE(rewritten_error(0, 20240520).find("not a HellaSwag items file"), std::string::npos);
    EXPECT_NE(rewritten_error(9, 7).find("item 0 has label 7"), std::string::npos);        // label of item 0
    EXPECT_NE(rewritten_error(15, 60000).find("outside the vocabulary"), std::string::npos);  // a context token
    EXPECT_NE(rewritten_error(0, 0, true).find("truncated"), std::string::npos);
    EXPECT_NE(rewritten_error(4, 5).find("token counts disagree"), std::string::npos);
    EXPECT_NE(rewritten_error(4, 5).find("./data_prep/prepare hellaswag --force"), std::string::npos);

    std::vector<hellaswag::Item> empty_ending = items;
    empty_ending[1].endings[2].clear();
    EXPECT_NE(error_of([&] { hellaswag::write_items(path, empty_ending, 50257); }).find("empty context or ending"),
              std::string::npos);
}

TEST(HellaSwag, JsonlTokenizedAsLlmCDoes) {
    const Gpt2Tokenizer tokenizer = Gpt2Tokenizer::load(Gpt2Tokenizer::default_vocab_dir());
    const std::vector<hellaswag::Item> items =
        data_prep::parse_hellaswag_jsonl("tests/fixtures/hellaswag/hellaswag_val.jsonl", tokenizer);
    ASSERT_EQ(items.size(), 3u);
    EXPECT_EQ(items[0].index, 24);
    EXPECT_EQ(items[0].label, 3);
    EXPECT_EQ(items[2].label, 2);
    auto ids = [&](const std::string& text) {
        std::vector<int32_t> out;
        for (int id : tokenizer.encode(text)) out.push_back(id);
        return out;
    };
    EXPECT_EQ(items[0].context, ids("A man is sitting on a roof. he"));
    EXPECT_EQ(items[0].endings[0], ids(" is using wrap to wrap a pair of skis."));
    EXPECT_EQ(items[0].endings[0].front(), 318);  // " is": the space belongs to the ending's first token
    EXPECT_EQ(items[1].endings[3], ids(" stands and lifts the weight over her head."));

    ScratchDir dir("test_hellaswag");
    const std::string bad = dir.file("bad.jsonl");
    std::ofstream(bad) << "{\"ctx\": \"a\", \"label\": 0, \"endings\": [\"b\", \"c\", \"d\", \"e\"]}\n"
                       << "{\"ctx\": \"a\", \"label\": 1, \"endings\": [\"b\", \"c\"]}\n";
    EXPECT_NE(error_of([&] { data_prep::parse_hellaswag_jsonl(bad, tokenizer); })
                  .find("bad.jsonl:2: not a HellaSwag item (\"endings\" is not a list of 4 strings)"),
              std::string::npos);
}

}  // namespace
