// data_prep's recipes (data_prep/src/recipes.h): a dataset prepared once, rebuilt when its inputs
// or settings change or a run was interrupted, nothing complete-looking left after a failure, and
// the OpenWebText and Pile recipes from a source directory. Downloads:
// tests/test_data_prep_download.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "data_prep/src/recipes.h"
#include "tests/data_prep_test_support.h"

namespace fs = std::filesystem;
using namespace data_prep;
using namespace data_prep_test;

namespace {

data_prep::PrepareOptions text_recipe(const std::string& data_dir, std::vector<std::string> inputs) {
    data_prep::PrepareOptions options;
    options.recipe = "text";
    options.name = "fx";
    options.data_dir = data_dir;
    options.inputs = std::move(inputs);
    options.threads = 2;
    options.val_fraction = 0.2;
    return options;
}

}  // namespace

TEST(DataPrepRecipes, TextRecipeCompletesOnceAndRestartsAfterAnInterruption) {
    DataPrepTempDir dir;
    const data_prep::PrepareOptions options = text_recipe(dir.path.string(), {kFixtures + "/text"});
    const data_prep::PrepareSummary first = data_prep::prepare_dataset(options);
    EXPECT_FALSE(first.already_complete);
    const std::string out = dir.file("fx");
    ASSERT_TRUE(fs::exists(out + "/manifest.json"));
    const std::string train_shard = read_file(out + "/fx_train_000000.bin");
    const std::string manifest = read_file(out + "/manifest.json");
    EXPECT_CONTAINS(manifest, "\"fx_val_000000.bin\"");
    EXPECT_CONTAINS(manifest, "\"documents\": 14");  // train: 18 documents less round(0.2 * 18) = 4
    EXPECT_FALSE(fs::exists(out + "/.staging"));

    EXPECT_TRUE(data_prep::prepare_dataset(options).already_complete) << "a complete dataset is not rebuilt";

    // An interrupted run: no manifest, a stale shard, a half-written one, a staging directory.
    fs::remove(out + "/manifest.json");
    write_file(out + "/fx_train_000007.bin", "stale");
    write_file(out + "/fx_train_000008.bin.tmp", "partial");
    fs::create_directory(out + "/.staging");
    write_file(out + "/.staging/fx_val_000000.bin.tmp", "partial");
    write_file(out + "/unrelated.txt", "kept");
    const data_prep::PrepareSummary rerun = data_prep::prepare_dataset(options);
    EXPECT_FALSE(rerun.already_complete);
    EXPECT_FALSE(fs::exists(out + "/fx_train_000007.bin"));
    EXPECT_FALSE(fs::exists(out + "/fx_train_000008.bin.tmp"));
    EXPECT_FALSE(fs::exists(out + "/.staging"));
    EXPECT_TRUE(fs::exists(out + "/unrelated.txt"));
    EXPECT_EQ(read_file(out + "/fx_train_000000.bin"), train_shard) << "the rebuild is identical";
    EXPECT_EQ(read_file(out + "/manifest.json"), manifest);

    data_prep::PrepareOptions forced = options;
    forced.force = true;
    EXPECT_FALSE(data_prep::prepare_dataset(forced).already_complete);
}

// A complete dataset is kept only while the manifest's recorded inputs (paths, sizes,
// modification times) and settings match this run's; otherwise it is rebuilt.
TEST(DataPrepRecipes, TextRecipeRebuildsWhenItsInputsOrSettingsChange) {
    DataPrepTempDir dir;
    write_file(dir.file("a.txt"), "the first corpus file");
    write_file(dir.file("b.txt"), "a second file, added later");
    data_prep::PrepareOptions options = text_recipe(dir.file("data"), {dir.file("a.txt")});
    options.val_fraction = 0;
    EXPECT_FALSE(data_prep::prepare_dataset(options).already_complete);
    EXPECT_TRUE(data_prep::prepare_dataset(options).already_complete);
    const std::string manifest = dir.file("data/fx/manifest.json");

    options.inputs.push_back(dir.file("b.txt"));
    data_prep::PrepareSummary rerun = data_prep::prepare_dataset(options);
    EXPECT_FALSE(rerun.already_complete) << "another input: rebuilt";
    EXPECT_EQ(rerun.splits.at(0).documents, 2);
    EXPECT_CONTAINS(read_file(manifest), dir.file("b.txt"));
    EXPECT_TRUE(data_prep::prepare_dataset(options).already_complete);

    write_file(dir.file("b.txt"), "a second file, edited");
    EXPECT_FALSE(data_prep::prepare_dataset(options).already_complete) << "another size: rebuilt";
    const fs::file_time_type modified = fs::last_write_time(dir.file("a.txt"));
    fs::last_write_time(dir.file("a.txt"), modified + std::chrono::seconds(5));
    EXPECT_FALSE(data_prep::prepare_dataset(options).already_complete) << "same size, modified later: rebuilt";
    EXPECT_TRUE(data_prep::prepare_dataset(options).already_complete);

    options.val_fraction = 0.5;
    EXPECT_FALSE(data_prep::prepare_dataset(options).already_complete) << "another --val-fraction: rebuilt";
    options.reader.text_split = DocumentSplit::kLine;
    EXPECT_FALSE(data_prep::prepare_dataset(options).already_complete) << "another --doc-split: rebuilt";
    EXPECT_TRUE(data_prep::prepare_dataset(options).already_complete);
}

TEST(DataPrepRecipes, FailureLeavesNothingThatLooksComplete) {
    DataPrepTempDir dir;
    write_compressed(dir.file("cut.txt.xz"), "xz", pseudo_random_text(1 << 20, 5));
    const std::string compressed = read_file(dir.file("cut.txt.xz"));
    write_file(dir.file("cut.txt.xz"), compressed.substr(0, compressed.size() / 2));
    data_prep::PrepareOptions options = text_recipe(dir.file("data"), {kFixtures + "/text", dir.file("cut.txt.xz")});
    options.shard_tokens = 64;  // several shards are finished before the error
    EXPECT_CONTAINS(error_of([&] { data_prep::prepare_dataset(options); }), dir.file("cut.txt.xz"));
    std::vector<std::string> left;
    for (const auto& entry : fs::directory_iterator(dir.file("data/fx"))) left.push_back(entry.path().filename().string());
    EXPECT_TRUE(left.empty()) << "left behind: " << (left.empty() ? "" : left[0]);
}

TEST(DataPrepRecipes, RejectsAnUnwritableOutputDirectory) {
    DataPrepTempDir dir;
    write_file(dir.file("a_file"), "x");
    const data_prep::PrepareOptions options = text_recipe(dir.file("a_file"), {kFixtures + "/text"});
    const std::string error = error_of([&] { data_prep::prepare_dataset(options); });
    EXPECT_CONTAINS(error, dir.file("a_file/fx"));
    EXPECT_CONTAINS(error, "--data-dir");
    if (geteuid() != 0) {  // permissions do not stop root
        fs::create_directory(dir.file("read_only"));
        fs::permissions(dir.file("read_only"), fs::perms::owner_read | fs::perms::owner_exec);
        const data_prep::PrepareOptions read_only = text_recipe(dir.file("read_only"), {kFixtures + "/text"});
        EXPECT_CONTAINS(error_of([&] { data_prep::prepare_dataset(read_only); }), dir.file("read_only/fx"));
        fs::permissions(dir.file("read_only"), fs::perms::owner_all);
    }
}

TEST(DataPrepRecipes, OpenWebTextAndPileFromASourceDirectory) {
    DataPrepTempDir dir;
    data_prep::PrepareOptions owt;
    owt.recipe = "openwebtext";
    owt.data_dir = dir.path.string();
    owt.source_dir = kFixtures + "/owt";
    owt.val_fraction = 0.1;
    const data_prep::PrepareSummary owt_summary = data_prep::prepare_dataset(owt);
    ASSERT_EQ(owt_summary.splits.size(), 2u);
    // 25 .txt documents in two nested .xz tars (tests/data_prep_openwebtext.sh checks which and in
    // which order); ceil(0.1 * 25) = 3 held out; one document is only whitespace: 21 train.
    EXPECT_EQ(owt_summary.splits[0].documents, 21);
    EXPECT_EQ(owt_summary.splits[1].split, "val");
    EXPECT_EQ(owt_summary.splits[1].documents, 3);
    EXPECT_CONTAINS(read_file(dir.file("openwebtext/manifest.json")), "\"skipped_empty_documents\": 1");
    EXPECT_CONTAINS(read_file(dir.file("openwebtext/manifest.json")), "\"held_out_documents\": 3");
    // A dataset from an older prepare (version 2: no settings recorded) is rebuilt, not reused.
    std::string manifest = read_file(dir.file("openwebtext/manifest.json"));
    manifest.replace(manifest.find("\"manifest_version\": 3"), 21, "\"manifest_version\": 2");
    write_file(dir.file("openwebtext/manifest.json"), manifest);
    EXPECT_FALSE(data_prep::prepare_dataset(owt).already_complete);
    EXPECT_TRUE(data_prep::prepare_dataset(owt).already_complete);

    data_prep::PrepareOptions pile;
    pile.recipe = "pile";
    pile.data_dir = dir.path.string();
    pile.source_dir = kFixtures + "/pile";
    pile.pile_train_files = 2;
    pile.checksums_file = kFixtures + "/pile/SHA256SUMS";
    const data_prep::PrepareSummary pile_summary = data_prep::prepare_dataset(pile);
    std::map<std::string, int64_t> documents;
    for (const data_prep::SplitSummary& split : pile_summary.splits) documents[split.split] = split.documents;
    EXPECT_EQ(documents, (std::map<std::string, int64_t>{{"train", 13}, {"val", 4}, {"test", 3}}));
    EXPECT_TRUE(fs::exists(dir.file("the_pile/pile_test_000000.bin")));

    // A provided file that does not match the checksum list is rejected before any work.
    write_file(dir.file("wrong_sums"), std::string(64, '0') + "  val.jsonl.zst\n");
    pile.checksums_file = dir.file("wrong_sums");
    pile.force = true;
    EXPECT_CONTAINS(error_of([&] { data_prep::prepare_dataset(pile); }), "val.jsonl.zst: SHA-256");
    EXPECT_FALSE(fs::exists(dir.file("the_pile/manifest.json")));
}
