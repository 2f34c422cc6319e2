// data_prep's compressed inputs (data_prep/src/inputs.h): every codec's stream read whole, and
// truncated, corrupt or mislabeled streams rejected with the file's name.
#include <gtest/gtest.h>
#include <zstd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "data_prep/src/inputs.h"
#include "tests/data_prep_test_support.h"

namespace fs = std::filesystem;
using namespace data_prep;
using namespace data_prep_test;

namespace {

// `content` as one zstd frame that carries a content checksum (as the zstd tool writes it;
// libarchive's writer leaves the checksum out).
void write_zstd_with_checksum(const std::string& path, const std::string& content) {
    ZSTD_CCtx* context = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1);
    std::string compressed(ZSTD_compressBound(content.size()), '\0');
    const size_t size = ZSTD_compress2(context, compressed.data(), compressed.size(), content.data(), content.size());
    ZSTD_freeCCtx(context);
    ASSERT_FALSE(ZSTD_isError(size)) << ZSTD_getErrorName(size);
    compressed.resize(size);
    write_file(path, compressed);
}

}  // namespace

TEST(DataPrepInputs, RejectsTruncatedCompressedInput) {
    DataPrepTempDir dir;
    const std::string text = pseudo_random_text(1 << 20, 7);
    for (const auto& [filter, suffix] : std::vector<std::pair<std::string, std::string>>{{"gzip", ".gz"}, {"xz", ".xz"}, {"zstd", ".zst"}}) {
        SCOPED_TRACE(filter);
        const std::string whole = dir.file("whole.txt" + suffix);
        write_compressed(whole, filter, text);
        const std::vector<ReadDocument> intact = read_documents({whole});
        ASSERT_EQ(intact.size(), 1u);
        EXPECT_EQ(intact[0].text, text);
        for (double keep : {0.5, 0.99}) {
            const std::string compressed = read_file(whole);
            const std::string cut = dir.file("cut.txt" + suffix);
            write_file(cut, compressed.substr(0, static_cast<size_t>(double(compressed.size()) * keep)));
            const std::string error = error_of([&] { read_documents({cut}); });
            EXPECT_CONTAINS(error, cut);
            EXPECT_CONTAINS(error, "truncated or corrupt");
        }
    }
}

// Every codec we read must reject corrupt data, not hand garbage to the tokenizer: gzip checks
// each member's CRC-32 and length, xz its block checks, bzip2 its block and stream CRCs, zstd
// its frame checksum (when the frame has one). .lzma carries no checksum: its damage is caught
// only where the decoder notices (as it does here).
TEST(DataPrepInputs, RejectsCorruptCompressedInputNamingTheFile) {
    DataPrepTempDir dir;
    const auto flip_two_bytes = [&](const std::string& path, size_t offset) {
        std::string bytes = read_file(path);
        EXPECT_LT(offset + 1, bytes.size()) << path;
        bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5a);
        bytes[offset + 1] = static_cast<char>(bytes[offset + 1] ^ 0xa5);
        write_file(path, bytes);
    };
    const auto expect_corrupt = [&](const std::string& path, const std::string& reason) {
        const std::string error = error_of([&] { read_documents({path}); });
        EXPECT_CONTAINS(error, path);
        EXPECT_CONTAINS(error, "truncated or corrupt");
        EXPECT_CONTAINS(error, reason);
    };
    // The case: 2 bytes flipped at offset 1,000,000 of a 10 MB .txt.gz.
    const std::string ten_mb = pseudo_random_text(10 << 20, 11);
    const std::string gz = dir.file("big.txt.gz");
    write_compressed(gz, "gzip", ten_mb);
    ASSERT_EQ(read_documents({gz}).at(0).text, ten_mb);
    const std::string intact_gz = read_file(gz);
    flip_two_bytes(gz, 1000000);
    expect_corrupt(gz, "gzip");
    // The trailer: CRC-32 of the data, then its length mod 2^32.
    write_file(gz, intact_gz);
    flip_two_bytes(gz, intact_gz.size() - 8);
    expect_corrupt(gz, "CRC-32");
    write_file(gz, intact_gz);
    flip_two_bytes(gz, intact_gz.size() - 3);
    expect_corrupt(gz, "length");

    const std::string text = pseudo_random_text(1 << 20, 12);
    for (const auto& [filter, suffix] : std::vector<std::pair<std::string, std::string>>{
             {"xz", ".xz"}, {"bzip2", ".bz2"}, {"lzma", ".lzma"}, {"zstd", ".zst"}}) {
        SCOPED_TRACE(filter);
        const std::string path = dir.file("mid.txt" + suffix);
        if (filter == "zstd") {
            write_zstd_with_checksum(path, text);
        } else {
            write_compressed(path, filter, text);
        }
        ASSERT_EQ(read_documents({path}).at(0).text, text);
        const std::string intact = read_file(path);
        flip_two_bytes(path, intact.size() / 2);
        expect_corrupt(path, "");
        write_file(path, intact);
        flip_two_bytes(path, intact.size() - 6);  // the trailer: checksums, sizes, end marker
        expect_corrupt(path, "");
    }
}

// A tar reader stops at the archive's end marker; the compressed stream goes on (here with 3 MiB
// of zeros after the marker, as tar's record padding does on a smaller scale) to the checks at
// its end, which must still be verified.
TEST(DataPrepInputs, ChecksAtTheEndOfACompressedTarAreVerified) {
    DataPrepTempDir dir;
    fs::create_directories(dir.file("in"));
    write_file(dir.file("in/doc.txt"), "one document");
    ASSERT_EQ(std::system(("tar -cf " + dir.file("small.tar") + " -C " + dir.file("in") + " doc.txt").c_str()), 0);
    const std::string tar = read_file(dir.file("small.tar")) + std::string(3 << 20, '\0');
    for (const auto& [filter, suffix, trailer_offset] : std::vector<std::tuple<std::string, std::string, size_t>>{
             {"gzip", ".tar.gz", 8}, {"xz", ".tar.xz", 10}, {"bzip2", ".tar.bz2", 4}}) {
        SCOPED_TRACE(filter);
        const std::string path = dir.file("padded" + suffix);
        write_compressed(path, filter, tar);
        ReaderOptions in_name_order;  // as the OpenWebText recipe reads its subset archives
        in_name_order.text_members_in_name_order = true;
        ASSERT_EQ(read_documents({path}).size(), 1u);
        ASSERT_EQ(read_documents({path}, in_name_order).size(), 1u);
        std::string bytes = read_file(path);
        bytes[bytes.size() - trailer_offset] = static_cast<char>(bytes[bytes.size() - trailer_offset] ^ 0x10);
        write_file(path, bytes);
        for (const ReaderOptions& options : {ReaderOptions{}, in_name_order}) {
            const std::string error = error_of([&] { read_documents({path}, options); });
            EXPECT_CONTAINS(error, path);
            EXPECT_CONTAINS(error, "truncated or corrupt");
        }
    }
}

TEST(DataPrepInputs, ReadsConcatenatedGzipMembersAndZeroPadding) {
    DataPrepTempDir dir;
    write_compressed(dir.file("a.gz"), "gzip", "first member, ");
    write_compressed(dir.file("b.gz"), "gzip", "second member");
    const std::string two = dir.file("two.txt.gz");
    write_file(two, read_file(dir.file("a.gz")) + read_file(dir.file("b.gz")) + std::string(512, '\0'));
    EXPECT_EQ(read_documents({two}).at(0).text, "first member, second member");
    write_file(two, read_file(dir.file("a.gz")) + "junk");
    const std::string error = error_of([&] { read_documents({two}); });
    EXPECT_CONTAINS(error, two);
    EXPECT_CONTAINS(error, "truncated or corrupt");
}

// A name that says compressed must hold that format: plain text named .zst, or a stream whose
// signature was damaged, is an error, not 2.4M tokens of garbage read as raw text.
TEST(DataPrepInputs, RejectsCompressedNamesWithoutTheirSignature) {
    DataPrepTempDir dir;
    const std::string text = pseudo_random_text(1 << 16, 13);
    for (const auto& [filter, suffix, format] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"gzip", ".gz", "gzip"}, {"xz", ".xz", "xz"}, {"zstd", ".zst", "zstd"}, {"bzip2", ".bz2", "bzip2"},
             {"lzma", ".lzma", "lzma"}, {"gzip", ".tgz", "gzip"}}) {
        SCOPED_TRACE(suffix);
        const std::string plain = dir.file("plain.txt" + suffix);
        write_file(plain, text);
        std::string error = error_of([&] { read_documents({plain}); });
        EXPECT_CONTAINS(error, plain + ": not " + format + " data");
        const std::string damaged = dir.file("damaged.txt" + suffix);
        write_compressed(damaged, filter, text);
        std::string bytes = read_file(damaged);
        bytes[0] = static_cast<char>(bytes[0] ^ 0x20);
        write_file(damaged, bytes);
        error = error_of([&] { read_documents({damaged}); });
        // .lzma has no signature: liblzma finds the header's properties invalid.
        EXPECT_CONTAINS(error, damaged + (format == "lzma" ? ": cannot open input: Lzma library error: format not recognized"
                                                           : ": not " + format + " data"));
    }
    // The same inside a tar archive, where the member is named.
    const std::string member = dir.file("doc.jsonl.zst");
    write_file(member, "{\"text\": \"not compressed\"}\n");
    const std::string tar = dir.file("members.tar");
    ASSERT_EQ(std::system(("tar -cf " + tar + " -C " + dir.path.string() + " doc.jsonl.zst").c_str()), 0);
    EXPECT_CONTAINS(error_of([&] { read_documents({tar}); }), tar + ":doc.jsonl.zst: not zstd data");
}
