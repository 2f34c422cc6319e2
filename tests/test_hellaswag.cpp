// HellaSwag (host/hellaswag.h, data_prep/src/hellaswag_recipe.h): llm.c's completion scoring,
// the items file round trip and its validation (files of the Python reference too), the
// evaluation's rows and scores, and the jsonl parser's tokenization.
// Runs from the repository root with the vocabulary of `make setup`, as the data_prep tests do.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

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
    {  // a whole file with 1 to 3 bytes after it
        const std::string bad_path = dir.file("trailing.bin");
        std::ofstream out(bad_path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(ints.data()), ints.size() * 4);
        out.write("\x01\x02", 2);
        out.close();
        EXPECT_NE(error_of([&] { hellaswag::read_items(bad_path); }).find("not a whole number of int32 values"),
                  std::string::npos);
    }

    std::vector<hellaswag::Item> empty_ending = items;
    empty_ending[1].endings[2].clear();
    EXPECT_NE(error_of([&] { hellaswag::write_items(path, empty_ending, 50257); }).find("empty context or ending"),
              std::string::npos);
}

TEST(HellaSwag, EvaluationRowsTargetsAndScores) {
    // Item 0 (label 3): context {32, 582, 318}, endings {318}, {318, 11}, {2}, {50256, 7, 7};
    // item 1 (label 0): a 6-token context, the same endings. The longest row has 9 tokens, so
    // the forward pass takes 8 positions (a row's last token is only a target).
    hellaswag::Evaluation evaluation(sample_items());
    ASSERT_EQ(evaluation.rows(), 8);
    ASSERT_EQ(evaluation.seq(), 8);
    const int seq = evaluation.seq();
    const int32_t pad = hellaswag::Evaluation::kPaddingToken, none = hellaswag::Evaluation::kIgnoreTarget;
    std::vector<int32_t> inputs(8 * seq), targets(8 * seq);
    evaluation.fill(0, 8, inputs.data(), targets.data());
    const auto row = [&](const std::vector<int32_t>& all, int r) {
        return std::vector<int32_t>(all.begin() + r * seq, all.begin() + (r + 1) * seq);
    };
    EXPECT_EQ(row(inputs, 1), (std::vector<int32_t>{32, 582, 318, 318, pad, pad, pad, pad}));
    EXPECT_EQ(row(targets, 1), (std::vector<int32_t>{none, none, 318, 11, none, none, none, none}));
    EXPECT_EQ(row(inputs, 3), (std::vector<int32_t>{32, 582, 318, 50256, 7, pad, pad, pad}));
    EXPECT_EQ(row(targets, 3), (std::vector<int32_t>{none, none, 50256, 7, 7, none, none, none}));
    EXPECT_EQ(row(inputs, 7), (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 50256, 7}));
    EXPECT_EQ(row(targets, 7), (std::vector<int32_t>{none, none, none, none, none, 50256, 7, 7}));
    std::vector<int32_t> part(2 * seq), part_targets(2 * seq);
    evaluation.fill(5, 2, part.data(), part_targets.data());  // any run of rows, alone
    EXPECT_EQ(row(part, 1), row(inputs, 6));
    EXPECT_EQ(row(part_targets, 0), row(targets, 5));

    // A stand-in for the model: every ending token of (item, ending) costs per_token[item][ending];
    // positions without a target get 99, which must not count. Item 0: sums 1.0, 0.8, 2.0, 0.9
    // (acc picks 1, wrong), means 1.0, 0.4, 2.0, 0.3 (acc_norm picks 3, right). Item 1: both pick 0.
    const double per_token[2][4] = {{1.0, 0.4, 2.0, 0.3}, {0.1, 1.0, 1.0, 1.0}};
    std::vector<float> losses(8 * seq);
    for (int r = 0; r < 8; ++r)
        for (int p = 0; p < seq; ++p)
            losses[r * seq + p] = targets[r * seq + p] == none ? 99.0f : static_cast<float>(per_token[r / 4][r % 4]);
    EXPECT_THROW(evaluation.add_losses(3, 3, losses.data() + 3 * seq), std::logic_error);  // rows 0-2 come first
    for (int first = 0; first < 8; first += 3) {  // batches of 3 rows: items cross batches
        const int count = std::min(3, 8 - first);
        evaluation.add_losses(first, count, losses.data() + first * seq);
        if (first == 0) {
            EXPECT_EQ(evaluation.tally().count(), 0);  // item 0's last row is not in yet
        }
    }
    EXPECT_EQ(evaluation.tally().count(), 2);
    EXPECT_DOUBLE_EQ(evaluation.tally().acc(), 0.5);
    EXPECT_DOUBLE_EQ(evaluation.tally().acc_norm(), 1.0);
    EXPECT_EQ(evaluation.tally().right_by_sum(), 1);
    EXPECT_EQ(evaluation.tally().right_by_mean(), 2);
    EXPECT_THROW(evaluation.fill(7, 2, part.data(), part_targets.data()), std::out_of_range);
}

TEST(HellaSwag, ItemsWrittenByThePythonReference) {
    // The GPU tests (scripts/test_run_insight.sh, scripts/test_hf_interop.py) write their items
    // with dev/reference/reference_files.py; this reader must take them as the recipe's own.
    ScratchDir dir("test_hellaswag");
    const std::string path = dir.file("python_items.bin");
    const std::string command =
        "/usr/bin/python3 -c 'import sys; sys.path.insert(0, \"dev/reference\"); "
        "from reference_files import write_hellaswag_items; "
        "write_hellaswag_items(sys.argv[1], [(2, [5, 6], [[1], [2, 3], [4], [7, 8, 9]]), (0, [50256], [[1], [1], [1], [1]])])' " +
        path + " 2>&1";
    const int status = std::system(command.c_str());
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) GTEST_SKIP() << "no /usr/bin/python3";
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << command << " (run from the repository root)";
    const std::vector<hellaswag::Item> items = hellaswag::read_items(path);
    ASSERT_EQ(items.size(), 2u);
    EXPECT_EQ(items[0].index, 0);
    EXPECT_EQ(items[0].label, 2);
    EXPECT_EQ(items[0].context, (std::vector<int32_t>{5, 6}));
    EXPECT_EQ(items[0].endings[3], (std::vector<int32_t>{7, 8, 9}));
    EXPECT_EQ(items[1].index, 1);
    EXPECT_EQ(items[1].context, (std::vector<int32_t>{50256}));
    EXPECT_EQ(hellaswag::longest_row(items), 5);
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
