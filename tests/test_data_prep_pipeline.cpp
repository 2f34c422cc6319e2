// data_prep's tokenization pipeline (data_prep/src/pipeline.h): documents to token shards in input
// order with any thread count, the validation holdout, invalid UTF-8, and input errors.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "data_prep/src/holdout.h"
#include "data_prep/src/pipeline.h"
#include "host/shard.h"
#include "host/tokenizer.h"
#include "tests/data_prep_test_support.h"

namespace fs = std::filesystem;
using namespace data_prep;
using namespace data_prep_test;

namespace {

const Gpt2Tokenizer& tokenizer() {
    static const Gpt2Tokenizer loaded = Gpt2Tokenizer::load(Gpt2Tokenizer::default_vocab_dir());
    return loaded;
}

// All tokens of a split's shards, in order.
std::vector<uint32_t> split_tokens(const std::string& directory, const SplitWriter& split) {
    std::vector<uint32_t> all;
    for (const data_prep::ShardRecord& record : split.shards()) {
        const std::vector<uint32_t> tokens = shard::read_tokens(directory + "/" + record.file, Gpt2Tokenizer::kVocabSize);
        EXPECT_EQ(static_cast<int64_t>(tokens.size()), record.tokens);
        all.insert(all.end(), tokens.begin(), tokens.end());
    }
    return all;
}

}  // namespace

TEST(DataPrepPipeline, DocumentsEndWithEndOfTextInInputOrder) {
    DataPrepTempDir dir;
    const std::vector<InputFile> files = expand_inputs({kFixtures + "/text"});
    std::vector<uint32_t> expected;
    for (const ReadDocument& document : read_documents(files)) {
        for (int id : tokenizer().encode(document.text)) expected.push_back(static_cast<uint32_t>(id));
        expected.push_back(Gpt2Tokenizer::kEndOfText);
    }
    SplitWriter train(dir.path.string(), "fx", "train", 100);
    data_prep::PipelineOptions options;
    options.threads = 3;
    data_prep::tokenize_to_splits(files, tokenizer(), options, train, nullptr, nullptr);
    train.finish();
    EXPECT_EQ(split_tokens(dir.path.string(), train), expected);
    EXPECT_EQ(train.documents(), 18);
    // Every shard holds exactly shard_tokens tokens except the last.
    ASSERT_GT(train.shards().size(), 2u);
    for (size_t i = 0; i + 1 < train.shards().size(); i++) EXPECT_EQ(train.shards()[i].tokens, 100);
    EXPECT_EQ(train.shards()[0].file, "fx_train_000000.bin");
}

TEST(DataPrepPipeline, OutputIsIdenticalForAnyThreadCount) {
    // 40,000 one-line documents: three blocks, so holdout and ordering cross block boundaries.
    DataPrepTempDir dir;
    std::string text;
    std::mt19937 rng(3);
    const char* words[] = {"alpha", "beta", "gamma", "δέλτα", "emoji😀", "12345", " spaced  out "};
    for (int line = 0; line < 40000; line++) {
        for (int w = 0, n = 1 + int(rng() % 6); w < n; w++) text += std::string(words[rng() % 7]) + " ";
        text += "\n";
    }
    write_compressed(dir.file("lines.txt.zst"), "zstd", text);
    data_prep::PipelineOptions options;
    options.reader.text_split = DocumentSplit::kLine;
    std::vector<std::string> reference;
    for (int threads : {1, 2, 7}) {
        SCOPED_TRACE(threads);
        const std::string out = dir.file("t" + std::to_string(threads));
        fs::create_directory(out);
        SplitWriter train(out, "d", "train", 5000), val(out, "d", "val", 5000);
        options.threads = threads;
        const data_prep::Holdout holdout(40000, 0.01, 2357);
        data_prep::tokenize_to_splits({dir.file("lines.txt.zst")}, tokenizer(), options, train, &holdout, &val);
        train.finish();
        val.finish();
        EXPECT_EQ(train.documents() + val.documents(), 40000);
        EXPECT_EQ(val.documents(), 400) << "exactly ceil(0.01 * 40000)";
        std::vector<std::string> contents;
        for (const SplitWriter* split : {&train, &val}) {
            for (const data_prep::ShardRecord& record : split->shards()) contents.push_back(read_file(out + "/" + record.file));
        }
        if (reference.empty()) {
            reference = contents;
        } else {
            EXPECT_TRUE(contents == reference) << "shards differ from the 1-thread run";
        }
    }
}

TEST(DataPrepPipeline, HeldOutDocumentsGoToValidationInPermutationOrder) {
    // 30 documents (a .jsonl line each; four with empty text, numbered all the same) and the
    // holdout train_test_split(test_size=0.3, seed=3) picks: val holds the held-out non-empty
    // documents in permutation order, train every other non-empty one in input order.
    DataPrepTempDir dir;
    std::string jsonl;
    std::vector<std::string> texts;
    for (int d = 0; d < 30; d++) {
        texts.push_back(d % 7 == 3 ? "" : "document number " + std::to_string(d));
        jsonl += "{\"text\": \"" + texts.back() + "\"}\n";
    }
    write_file(dir.file("docs.jsonl"), jsonl);
    EXPECT_EQ(data_prep::count_documents({dir.file("docs.jsonl")}, {}, 2), 30);
    // numpy: default_rng(3).permutation(30)[:9], with the empty documents 3 and 17.
    const data_prep::Holdout holdout(30, 0.3, 3);
    const std::vector<int64_t>& held = holdout.validation_documents();
    ASSERT_EQ(held, (std::vector<int64_t>{26, 20, 23, 3, 27, 12, 17, 28, 18}));
    SplitWriter train(dir.path.string(), "h", "train", 64), val(dir.path.string(), "h", "val", 64);
    data_prep::PipelineOptions options;
    options.threads = 3;
    const data_prep::PipelineResult result =
        data_prep::tokenize_to_splits({dir.file("docs.jsonl")}, tokenizer(), options, train, &holdout, &val);
    train.finish();
    val.finish();
    EXPECT_EQ(result.documents, 30);
    EXPECT_EQ(result.empty_documents, 4);
    const auto stream = [&](const std::vector<int64_t>& order) {
        std::vector<uint32_t> tokens;
        for (int64_t d : order) {
            if (texts[static_cast<size_t>(d)].empty()) continue;
            for (int id : tokenizer().encode(texts[static_cast<size_t>(d)])) tokens.push_back(uint32_t(id));
            tokens.push_back(Gpt2Tokenizer::kEndOfText);
        }
        return tokens;
    };
    std::vector<int64_t> trained;
    for (int64_t d = 0; d < 30; d++)
        if (holdout.validation_position(d) < 0) trained.push_back(d);
    EXPECT_EQ(split_tokens(dir.path.string(), val), stream(held));
    EXPECT_EQ(split_tokens(dir.path.string(), train), stream(trained));
    EXPECT_FALSE(fs::exists(dir.file("h_val_held_out.tmp"))) << "the held-out staging file is removed";

    // The input must hold the documents the holdout was drawn over.
    SplitWriter train2(dir.path.string(), "i", "train", 64), val2(dir.path.string(), "i", "val", 64);
    const data_prep::Holdout other(31, 0.3, 3);
    EXPECT_CONTAINS(error_of([&] {
                        data_prep::tokenize_to_splits({dir.file("docs.jsonl")}, tokenizer(), options, train2, &other, &val2);
                    }),
                    "the inputs hold 30 documents, but 31 when they were counted");
}

TEST(DataPrepPipeline, InvalidUtf8IsReplacedLikeTheTokenizer) {
    // Shards hold the tokenizer's ids for the text with every ill-formed sequence replaced by
    // U+FFFD, as Python's bytes.decode(errors="replace") before tiktoken: "\xff" and "\xfe" are
    // one U+FFFD each, the truncated 3-byte sequence "\xe2\x82" is one.
    DataPrepTempDir dir;
    const std::string raw = "abc\xff\xfe def \xe2\x82 end";
    write_file(dir.file("bad.txt"), raw);
    SplitWriter train(dir.path.string(), "u", "train", 1000);
    data_prep::PipelineOptions options;
    data_prep::tokenize_to_splits({dir.file("bad.txt")}, tokenizer(), options, train, nullptr, nullptr);
    train.finish();
    std::vector<uint32_t> expected;
    for (int id : tokenizer().encode("abc\xEF\xBF\xBD\xEF\xBF\xBD def \xEF\xBF\xBD end")) expected.push_back(uint32_t(id));
    expected.push_back(Gpt2Tokenizer::kEndOfText);
    EXPECT_EQ(split_tokens(dir.path.string(), train), expected);
}

TEST(DataPrepPipeline, InputErrorsStopEveryThreadAndNameTheFile) {
    DataPrepTempDir dir;
    write_compressed(dir.file("ok.txt.gz"), "gzip", pseudo_random_text(100000, 1));
    write_compressed(dir.file("cut.txt.gz"), "gzip", pseudo_random_text(1 << 20, 2));
    const std::string compressed = read_file(dir.file("cut.txt.gz"));
    write_file(dir.file("cut.txt.gz"), compressed.substr(0, compressed.size() / 2));
    write_file(dir.file("bad.jsonl"), "{\"text\": \"a\"}\nnot json\n");
    data_prep::PipelineOptions options;
    options.threads = 4;
    {
        SplitWriter train(dir.path.string(), "e", "train", 1000);
        const std::string error = error_of([&] {
            data_prep::tokenize_to_splits({dir.file("ok.txt.gz"), dir.file("cut.txt.gz")}, tokenizer(), options, train,
                                          nullptr, nullptr);
        });
        EXPECT_CONTAINS(error, dir.file("cut.txt.gz"));
    }
    SplitWriter train(dir.path.string(), "j", "train", 1000);
    EXPECT_CONTAINS(error_of([&] {
                        data_prep::tokenize_to_splits({dir.file("bad.jsonl")}, tokenizer(), options, train, nullptr, nullptr);
                    }),
                    dir.file("bad.jsonl") + ":2: invalid JSON");
    options.skip_invalid_documents = true;
    SplitWriter skipping(dir.path.string(), "k", "train", 1000);
    const data_prep::PipelineResult result =
        data_prep::tokenize_to_splits({dir.file("bad.jsonl")}, tokenizer(), options, skipping, nullptr, nullptr);
    EXPECT_EQ(result.invalid_documents, 1);
    EXPECT_EQ(skipping.documents(), 1);
}
