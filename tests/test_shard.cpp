// Token shard format (host/shard.h): the llm.c-compatible layout, atomic writes, and every
// rejection path of the readers, each with a message that names the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "host/shard.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;

namespace {

constexpr int kGpt2Vocab = 50257;

struct ShardTempDir : test_support::ScratchDir {
    ShardTempDir() : ScratchDir("test_shard") {}
};

using test_support::read_bytes;

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void set_header_int(const std::string& path, int index, int32_t value) {
    std::vector<char> bytes = read_bytes(path);
    std::memcpy(bytes.data() + index * sizeof(int32_t), &value, sizeof value);
    write_bytes(path, bytes);
}

// Runs `action`, expects std::runtime_error whose message contains every one of `parts`.
template <typename Action>
void expect_error(Action&& action, const std::vector<std::string>& parts) {
    try {
        action();
        FAIL() << "expected an error mentioning " << parts.front();
    } catch (const std::runtime_error& e) {
        for (const std::string& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(Shard, RoundTripsBothVersions) {
    ShardTempDir dir;
    const std::vector<uint32_t> tokens = {0, 1, 50256, 65535, 12345};
    shard::write_shard(dir.file("v1.bin"), tokens, shard::kVersionUint16);
    EXPECT_EQ(shard::read_tokens(dir.file("v1.bin"), 65536), tokens);
    const std::vector<uint32_t> wide = {0, 70000, 100276};
    shard::write_shard(dir.file("v2.bin"), wide, shard::kVersionUint32);
    EXPECT_EQ(shard::read_tokens(dir.file("v2.bin"), 100277), wide);
    const shard::ShardInfo info = shard::read_header(dir.file("v2.bin"));
    EXPECT_EQ(info.version, shard::kVersionUint32);
    EXPECT_EQ(info.num_tokens, 3);
}

TEST(Shard, LayoutIsLlmcCompatible) {
    // llm.c's reader: 256 little-endian int32 (magic 20240520, version 1, count), then uint16 tokens.
    ShardTempDir dir;
    shard::write_shard(dir.file("a.bin"), {7, 258, 50256});
    const std::vector<char> bytes = read_bytes(dir.file("a.bin"));
    ASSERT_EQ(bytes.size(), 1024u + 3 * 2);
    int32_t header[3];
    std::memcpy(header, bytes.data(), sizeof header);
    EXPECT_EQ(header[0], 20240520);
    EXPECT_EQ(header[1], 1);
    EXPECT_EQ(header[2], 3);
    for (size_t i = 3 * sizeof(int32_t); i < 1024; i++) ASSERT_EQ(bytes[i], 0) << "header byte " << i;
    const unsigned char expected_tokens[] = {7, 0, 2, 1, 0x50, 0xc4};  // 50256 = 0xc450  // little-endian uint16
    EXPECT_EQ(std::memcmp(bytes.data() + 1024, expected_tokens, sizeof expected_tokens), 0);
}

TEST(Shard, WriterIsAtomic) {
    ShardTempDir dir;
    {
        shard::ShardWriter writer(dir.file("s.bin"));
        const uint32_t tokens[] = {1, 2, 3};
        writer.append(tokens, 3);
        EXPECT_TRUE(fs::exists(dir.file("s.bin.tmp")));
        EXPECT_FALSE(fs::exists(dir.file("s.bin"))) << "the final name appears only when complete";
        // Destroyed without finish(): an error path. Nothing may survive under either name.
    }
    EXPECT_FALSE(fs::exists(dir.file("s.bin.tmp")));
    EXPECT_FALSE(fs::exists(dir.file("s.bin")));
    shard::ShardWriter writer(dir.file("s.bin"));
    writer.finish();
    EXPECT_EQ(shard::read_header(dir.file("s.bin")).num_tokens, 0);
    EXPECT_FALSE(fs::exists(dir.file("s.bin.tmp")));
}

TEST(Shard, RejectsWrongMagic) {
    ShardTempDir dir;
    shard::write_shard(dir.file("m.bin"), {1, 2});
    set_header_int(dir.file("m.bin"), 0, 12345);
    expect_error([&] { shard::read_header(dir.file("m.bin")); }, {dir.file("m.bin"), "magic", "20240520", "prepare"});
}

TEST(Shard, RejectsUnknownVersion) {
    ShardTempDir dir;
    shard::write_shard(dir.file("v.bin"), {1, 2});
    set_header_int(dir.file("v.bin"), 1, 3);
    expect_error([&] { shard::read_header(dir.file("v.bin")); }, {dir.file("v.bin"), "version 3"});
}

TEST(Shard, RejectsCountThatDisagreesWithSize) {
    ShardTempDir dir;
    shard::write_shard(dir.file("c.bin"), {1, 2, 3, 4});
    std::vector<char> bytes = read_bytes(dir.file("c.bin"));
    bytes.pop_back();  // truncated mid-token
    write_bytes(dir.file("c.bin"), bytes);
    expect_error([&] { shard::read_header(dir.file("c.bin")); }, {dir.file("c.bin"), "4 tokens", "truncated"});
    shard::write_shard(dir.file("d.bin"), {1, 2, 3, 4});
    set_header_int(dir.file("d.bin"), 2, 5);  // claims more than the file holds
    expect_error([&] { shard::read_tokens(dir.file("d.bin"), kGpt2Vocab); }, {dir.file("d.bin"), "5 tokens"});
    set_header_int(dir.file("d.bin"), 2, -1);
    expect_error([&] { shard::read_header(dir.file("d.bin")); }, {dir.file("d.bin"), "-1 tokens"});
}

TEST(Shard, RejectsFilesTooSmallOrMissing) {
    ShardTempDir dir;
    write_bytes(dir.file("small.bin"), std::vector<char>(100, 0));
    expect_error([&] { shard::read_header(dir.file("small.bin")); }, {dir.file("small.bin"), "too small"});
    expect_error([&] { shard::read_header(dir.file("absent.bin")); }, {dir.file("absent.bin"), "No such file"});
}

TEST(Shard, RejectsIdsOutsideTheVocabulary) {
    ShardTempDir dir;
    shard::write_shard(dir.file("ids.bin"), {5, 50256, 50257, 3});
    EXPECT_NO_THROW(shard::read_tokens(dir.file("ids.bin"), 50258));
    expect_error([&] { shard::read_tokens(dir.file("ids.bin"), kGpt2Vocab); },
                 {dir.file("ids.bin"), "token id 50257", "position 2", "vocabulary"});
}

TEST(Shard, WriterRejectsIdsTooWideForVersion1) {
    ShardTempDir dir;
    shard::ShardWriter writer(dir.file("w.bin"), shard::kVersionUint16);
    const uint32_t too_wide[] = {65536};
    EXPECT_THROW(writer.append(too_wide, 1), std::invalid_argument);
    EXPECT_THROW(shard::ShardWriter(dir.file("x.bin"), 7), std::invalid_argument);
}

TEST(Shard, WriterReportsAFullDisk) {
    // The .tmp name is a link to /dev/full, where every write fails with ENOSPC: the error must
    // name the file and the reason, and no final shard may appear.
    ShardTempDir dir;
    fs::create_symlink("/dev/full", dir.file("full.bin.tmp"));
    expect_error(
        [&] {
            shard::ShardWriter writer(dir.file("full.bin"));
            const std::vector<uint32_t> tokens(1 << 16, 7);
            writer.append(tokens.data(), tokens.size());
            writer.finish();
        },
        {dir.file("full.bin.tmp"), "No space left on device"});
    EXPECT_FALSE(fs::exists(dir.file("full.bin")));
}

TEST(Shard, WriterReportsAnUnwritableDirectory) {
    // A directory path through a regular file fails for every user, root included (unlike chmod).
    ShardTempDir dir;
    write_bytes(dir.file("not_a_dir"), {'x'});
    expect_error([&] { shard::ShardWriter writer(dir.file("not_a_dir/s.bin")); }, {dir.file("not_a_dir/s.bin.tmp"), "cannot create"});
}

TEST(Shard, GlobFilesSortsAndRejectsNoMatch) {
    ShardTempDir dir;
    for (const char* name : {"d_train_000002.bin", "d_train_000000.bin", "d_train_000001.bin", "d_val_000000.bin"}) {
        shard::write_shard(dir.file(name), {1});
    }
    const std::vector<std::string> files = shard::glob_files(dir.file("d_train_*.bin"));
    ASSERT_EQ(files.size(), 3u);
    EXPECT_EQ(files[0], dir.file("d_train_000000.bin"));
    EXPECT_EQ(files[2], dir.file("d_train_000002.bin"));
    expect_error([&] { shard::glob_files(dir.file("nothing_*.bin")); }, {dir.file("nothing_*.bin"), "no files match"});
}
