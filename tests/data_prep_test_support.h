// Fixtures and helpers that the data_prep test files (tests/test_data_prep_*.cpp) share: the
// fixture directory, a scratch directory, file bytes, compressed streams written with libarchive,
// text that does not compress away, and the documents a reader yields.
// The tests run from the repository root (tests/run_all.sh does) with the vocabulary of `make setup`.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "data_prep/src/inputs.h"
#include "tests/test_support.h"

namespace data_prep_test {

inline const std::string kFixtures = "tests/fixtures";

struct DataPrepTempDir : test_support::ScratchDir {
    DataPrepTempDir() : ScratchDir("test_data_prep") {}
};

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const std::string& path, const std::string& content) {
    std::ofstream(path, std::ios::binary) << content;
}

// `content` as a single compressed stream ("gzip", "xz" or "zstd"), written with libarchive.
inline void write_compressed(const std::string& path, const std::string& filter, const std::string& content) {
    archive* a = archive_write_new();
    ASSERT_EQ(archive_write_add_filter_by_name(a, filter.c_str()), ARCHIVE_OK) << archive_error_string(a);
    // The fastest level: the tests are about reading.
    ASSERT_EQ(archive_write_set_filter_option(a, nullptr, "compression-level", "1"), ARCHIVE_OK) << archive_error_string(a);
    ASSERT_EQ(archive_write_set_format_raw(a), ARCHIVE_OK);
    ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
    archive_entry* entry = archive_entry_new();
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_size(entry, static_cast<la_int64_t>(content.size()));
    ASSERT_EQ(archive_write_header(a, entry), ARCHIVE_OK);
    ASSERT_EQ(archive_write_data(a, content.data(), content.size()), static_cast<la_ssize_t>(content.size()));
    archive_entry_free(entry);
    archive_write_close(a);
    archive_write_free(a);
}

// Text that does not compress to nothing, so that a truncated stream is really missing data.
inline std::string pseudo_random_text(size_t bytes, uint32_t seed) {
    std::mt19937 rng(seed);
    const std::string letters = "abcdefghij klmnop\nqrstuvwxyz";
    std::string text;
    while (text.size() < bytes) text += letters[rng() % letters.size()];
    return text;
}

struct ReadDocument {
    std::string location;
    int64_t line;
    std::string text;
};

inline std::vector<ReadDocument> read_documents(const std::vector<data_prep::InputFile>& files,
                                                const data_prep::ReaderOptions& options = {}) {
    data_prep::DocumentReader reader(files, options);
    std::vector<ReadDocument> documents;
    reader.read_all([&](data_prep::RawDocument&& raw) {
        std::string storage;
        documents.push_back({*raw.location, raw.line, std::string(document_text(raw, options, storage))});
        return true;
    });
    return documents;
}

using test_support::error_of;

}  // namespace data_prep_test

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << "in: " << (text)
