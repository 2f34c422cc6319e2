// data_prep's checksums: SHA-256 (data_prep/src/sha256.h) and sha256sum-format checksum lists
// (read_checksum_file in data_prep/src/download.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "data_prep/src/download.h"
#include "data_prep/src/sha256.h"
#include "tests/data_prep_test_support.h"

using namespace data_prep;
using namespace data_prep_test;

TEST(DataPrepSha256, MatchesKnownVectors) {
    const auto digest = [](const std::string& text) {
        Sha256 hash;
        hash.update(text.data(), text.size());
        return hash.hex_digest();
    };
    // FIPS 180-4 examples.
    EXPECT_EQ(digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(digest(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    // Updates in pieces of every size give the same digest as one update.
    const std::string text = pseudo_random_text(1000, 1);
    for (size_t piece : {1, 3, 63, 64, 65, 200}) {
        Sha256 hash;
        for (size_t i = 0; i < text.size(); i += piece) hash.update(text.data() + i, std::min(piece, text.size() - i));
        EXPECT_EQ(hash.hex_digest(), digest(text)) << "piece " << piece;
    }
}

TEST(DataPrepChecksums, ReadsSha256sumFormat) {
    DataPrepTempDir dir;
    const std::string a(64, 'a'), b(64, 'B');
    write_file(dir.file("sums"), "# comment\n" + a + "  ./train/00.jsonl.zst\n" + b + " *val.jsonl.zst\r\n\n");
    const auto sums = read_checksum_file(dir.file("sums"));
    ASSERT_EQ(sums.size(), 2u);
    EXPECT_EQ(sums.at("train/00.jsonl.zst"), a);
    EXPECT_EQ(sums.at("val.jsonl.zst"), std::string(64, 'b'));
    write_file(dir.file("bad"), a + "  ok\nnot-a-digest  x\n");
    EXPECT_CONTAINS(error_of([&] { read_checksum_file(dir.file("bad")); }), dir.file("bad") + ":2");
}
