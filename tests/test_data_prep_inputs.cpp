// data_prep's input readers (data_prep/src/inputs.h): which files an input names, the document
// formats (text, JSON lines, JSON arrays, tar members) and their order, text-only reading, size
// limits, invalid JSON, and the OpenWebText cleanup and subset order. Compressed streams and their
// damage: tests/test_data_prep_compressed_inputs.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data_prep/src/inputs.h"
#include "host/shard.h"
#include "tests/data_prep_test_support.h"

namespace fs = std::filesystem;
using namespace data_prep;
using namespace data_prep_test;

TEST(DataPrepInputs, ReadsEveryFormatInOrder) {
    const std::vector<InputFile> files = expand_inputs({kFixtures + "/text"});
    ASSERT_EQ(files.size(), 6u) << "tests/fixtures/text (run the tests from the repository root)";
    const std::vector<ReadDocument> documents = read_documents(files);
    std::map<std::string, int> per_location;
    for (const ReadDocument& document : documents) {
        EXPECT_FALSE(document.text.empty()) << document.location;
        EXPECT_NE(document.text[0], '{') << document.location << ": JSON lines yield their text field";
        per_location[document.location]++;
    }
    const std::string dir = kFixtures + "/text/";
    EXPECT_EQ(per_location[dir + "bundle.tar:a/one.txt"], 1);
    EXPECT_EQ(per_location[dir + "bundle.tar:a/two.txt"], 1);
    EXPECT_EQ(per_location[dir + "bundle.tar:inner.tar.gz:three.txt"], 1);
    EXPECT_EQ(per_location[dir + "bundle.tar:inner.tar.gz:four.jsonl"], 3);  // a nested .tar.gz
    EXPECT_EQ(per_location[dir + "more.jsonl.zst"], 4);
    EXPECT_EQ(per_location[dir + "notes.jsonl.gz"], 5);  // its blank line is no document
    EXPECT_EQ(per_location[dir + "plain.txt"], 1);
    EXPECT_EQ(per_location[dir + "sentences.json"], 1);
    EXPECT_EQ(per_location[dir + "story.txt.xz"], 1);
    EXPECT_EQ(documents.size(), 18u);
    // Input order: files sorted by name, members in archive order, lines in file order.
    EXPECT_EQ(documents.front().location, dir + "bundle.tar:a/one.txt");
    EXPECT_EQ(documents.back().location, dir + "story.txt.xz");
    std::vector<int64_t> note_lines;
    for (const ReadDocument& document : documents) {
        if (document.location == dir + "notes.jsonl.gz") note_lines.push_back(document.line);
    }
    EXPECT_EQ(note_lines, (std::vector<int64_t>{1, 2, 3, 5, 6}));
    // sentences.json is an array of strings joined by newlines, like the tiny corpus.
    for (const ReadDocument& document : documents) {
        if (document.location == dir + "sentences.json") {
            EXPECT_EQ(std::count(document.text.begin(), document.text.end(), '\n'), 4);
        }
    }
}

TEST(DataPrepInputs, SplitsPlainTextByLineOrParagraph) {
    DataPrepTempDir dir;
    write_file(dir.file("p.txt"), "one\ntwo\n\n\nthree\r\n\r\nfour\nfive");
    ReaderOptions options;
    options.text_split = DocumentSplit::kLine;
    std::vector<std::string> lines;
    for (const ReadDocument& d : read_documents({dir.file("p.txt")}, options)) lines.push_back(d.text);
    EXPECT_EQ(lines, (std::vector<std::string>{"one", "two", "three", "four", "five"}));
    options.text_split = DocumentSplit::kBlankLine;
    std::vector<std::string> paragraphs;
    for (const ReadDocument& d : read_documents({dir.file("p.txt")}, options)) paragraphs.push_back(d.text);
    EXPECT_EQ(paragraphs, (std::vector<std::string>{"one\ntwo", "three", "four\nfive"}));
    options.text_split = DocumentSplit::kWholeFile;
    EXPECT_EQ(read_documents({dir.file("p.txt")}, options).size(), 1u);
}

TEST(DataPrepInputs, RejectsMissingAndEmptyInputs) {
    DataPrepTempDir dir;
    write_file(dir.file("empty.txt"), "");
    fs::create_directory(dir.file("nothing"));
    EXPECT_CONTAINS(error_of([&] { expand_inputs({dir.file("absent.txt")}); }), dir.file("absent.txt"));
    EXPECT_CONTAINS(error_of([&] { expand_inputs({dir.file("absent.txt")}); }), "not found");
    EXPECT_CONTAINS(error_of([&] { expand_inputs({dir.file("empty.txt")}); }), dir.file("empty.txt") + "' is empty");
    EXPECT_CONTAINS(error_of([&] { expand_inputs({dir.file("*.jsonl")}); }), "matches no files");
    EXPECT_CONTAINS(error_of([&] { expand_inputs({dir.file("nothing")}); }), "holds no files");
    // A file that vanishes between listing and reading is named too.
    write_file(dir.file("gone.txt"), "x");
    const std::vector<InputFile> files = expand_inputs({dir.file("gone.txt")});
    fs::remove(dir.file("gone.txt"));
    EXPECT_CONTAINS(error_of([&] { read_documents(files); }), dir.file("gone.txt"));
}

// Directories, globs and tar archives may hold files that are no text (images, token shards,
// compressed data under a plain name): those are left out and reported; a binary file named on
// the command line is an error.
TEST(DataPrepInputs, ReadsOnlyTextFromDirectoriesAndArchives) {
    DataPrepTempDir dir;
    const std::string corpus = dir.file("corpus");
    fs::create_directories(corpus + "/sub");
    write_file(corpus + "/a.txt", "plain text");
    write_file(corpus + "/logo.png", std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16));
    shard::write_shard(corpus + "/sub/tokens_train_000000.bin", {1, 2, 3});
    write_compressed(dir.file("hidden.gz"), "gzip", "compressed under a plain name");
    fs::copy_file(dir.file("hidden.gz"), corpus + "/sub/notes.txt");
    write_file(corpus + "/sub/report.pdf", "%PDF-1.7\n%text-looking header");
    write_file(corpus + "/sub/latin1.txt", "caf\xe9 au lait");  // invalid UTF-8 is still text
    fs::copy_file(corpus + "/logo.png", dir.file("logo.png"));
    ASSERT_EQ(std::system(("tar -cf " + corpus + "/sub/bundle.tar -C " + dir.path.string() + " logo.png").c_str()), 0);

    DocumentReader reader(expand_inputs({corpus}), {});
    std::vector<std::string> read;
    reader.read_all([&](RawDocument&& raw) {
        read.push_back(*raw.location);
        return true;
    });
    EXPECT_EQ(read, (std::vector<std::string>{corpus + "/a.txt", corpus + "/sub/latin1.txt"}));
    std::map<std::string, std::string> skipped;
    for (const SkippedInput& input : reader.skipped()) skipped[input.location] = input.kind;
    EXPECT_EQ(skipped, (std::map<std::string, std::string>{
                           {corpus + "/logo.png", "a PNG image"},
                           {corpus + "/sub/bundle.tar:logo.png", "a PNG image"},
                           {corpus + "/sub/notes.txt", "gzip data: name it .gz"},
                           {corpus + "/sub/report.pdf", "a PDF document"},
                           {corpus + "/sub/tokens_train_000000.bin", "a token shard"},
                       }));
    // Matched by a glob (corpus/* is a.txt, logo.png and sub/): skipped too. Named on the
    // command line: an error.
    EXPECT_EQ(read_documents(expand_inputs({corpus + "/*"})).size(), 2u);
    const std::string error = error_of([&] { read_documents(expand_inputs({corpus + "/logo.png"})); });
    EXPECT_CONTAINS(error, corpus + "/logo.png is binary (a PNG image), not text");
    EXPECT_CONTAINS(error, "remove it from the inputs");
    // An archive read as an OpenWebText subset (text members in name order) leaves them out too.
    fs::create_directories(dir.file("subset"));
    write_file(dir.file("subset/b.txt"), "plain text");
    fs::copy_file(corpus + "/logo.png", dir.file("subset/a.txt"));
    const std::string subset = dir.file("subset.tar");
    ASSERT_EQ(std::system(("tar -cf " + subset + " -C " + dir.file("subset") + " b.txt a.txt").c_str()), 0);
    ReaderOptions in_name_order;
    in_name_order.text_members_in_name_order = true;
    DocumentReader subset_reader({subset}, in_name_order);
    read.clear();
    subset_reader.read_all([&](RawDocument&& raw) {
        read.push_back(*raw.location);
        return true;
    });
    EXPECT_EQ(read, (std::vector<std::string>{subset + ":b.txt"}));
    ASSERT_EQ(subset_reader.skipped().size(), 1u);
    EXPECT_EQ(subset_reader.skipped()[0].location, subset + ":a.txt");
    EXPECT_EQ(binary_kind(std::string("text\0more", 9)), "a NUL byte at offset 4");
    EXPECT_EQ(binary_kind("BZh is how a text may start"), "");
}

// Every kind of document has the same size limit: a file without newlines read by lines (or a
// JSONL file that is one huge line) used to grow a line in memory without end.
TEST(DataPrepInputs, DocumentsOverTheSizeLimitAreErrorsInEveryMode) {
    DataPrepTempDir dir;
    ReaderOptions options;
    options.max_document_bytes = 100;
    const std::string long_line = std::string(150, 'x');
    write_file(dir.file("a.jsonl"), "{\"text\": \"short\"}\n{\"text\": \"" + long_line + "\"}\n");
    write_file(dir.file("b.txt"), "short\n\n" + long_line);
    write_file(dir.file("c.txt"), "short\n\n" + std::string(60, 'y') + "\n" + std::string(60, 'z') + "\n");
    write_file(dir.file("d.json"), "[\"" + long_line + "\"]");
    EXPECT_CONTAINS(error_of([&] { read_documents({dir.file("a.jsonl")}, options); }),
                    dir.file("a.jsonl") + ":2: over 100 bytes as a line");
    options.text_split = DocumentSplit::kLine;
    EXPECT_CONTAINS(error_of([&] { read_documents({dir.file("b.txt")}, options); }),
                    dir.file("b.txt") + ":3: over 100 bytes as a line");
    EXPECT_EQ(read_documents({dir.file("c.txt")}, options).size(), 3u);
    options.text_split = DocumentSplit::kBlankLine;
    EXPECT_CONTAINS(error_of([&] { read_documents({dir.file("c.txt")}, options); }),
                    dir.file("c.txt") + ":3: over 100 bytes as a paragraph");
    options.text_split = DocumentSplit::kWholeFile;
    EXPECT_CONTAINS(error_of([&] { read_documents({dir.file("b.txt")}, options); }),
                    dir.file("b.txt") + ": over 100 bytes as a single document");
    EXPECT_CONTAINS(error_of([&] { read_documents({dir.file("d.json")}, options); }), "make it a .jsonl file");
}

TEST(DataPrepInputs, ReportsInvalidJsonWithFileAndLine) {
    DataPrepTempDir dir;
    write_file(dir.file("a.jsonl"), "{\"text\": \"fine\"}\n{\"text\": \"broken\n{\"body\": \"x\"}\n[1]\n");
    DocumentReader reader({dir.file("a.jsonl")}, {});
    std::vector<std::string> errors;
    reader.read_all([&](RawDocument&& raw) {
        std::string storage;
        try {
            document_text(raw, {}, storage);
        } catch (const InvalidDocument& e) {
            errors.push_back(e.what());
        }
        return true;
    });
    ASSERT_EQ(errors.size(), 3u);
    EXPECT_CONTAINS(errors[0], dir.file("a.jsonl") + ":2: invalid JSON");
    EXPECT_CONTAINS(errors[1], dir.file("a.jsonl") + ":3: no string field \"text\"");
    EXPECT_CONTAINS(errors[1], "--text-field");
    EXPECT_CONTAINS(errors[2], ":4:");
    ReaderOptions body;
    body.text_field = "body";
    RawDocument raw{RawDocument::Kind::kJsonLine, "{\"body\": \"x\"}", std::make_shared<const std::string>("f"), 1};
    std::string storage;
    EXPECT_EQ(document_text(raw, body, storage), "x");
}

TEST(DataPrepInputs, OpenWebTextCleanupMatchesTheHuggingFaceLoader) {
    // Python: re.sub("\n\n\n+", "\n\n", text).strip(); strip() removes Unicode whitespace too.
    ReaderOptions options;
    options.collapse_newlines_and_strip = true;
    const auto clean = [&](const std::string& text) {
        RawDocument raw{RawDocument::Kind::kText, text, std::make_shared<const std::string>("f"), 0};
        std::string storage;
        return std::string(document_text(raw, options, storage));
    };
    EXPECT_EQ(clean("  \n a\n\n\n\nb\n\nc\n\n\nd \t\n"), "a\n\nb\n\nc\n\nd");
    EXPECT_EQ(clean("\u3000\u00a0x\u2003\u0085"), "x");
    EXPECT_EQ(clean("x\u200b"), "x\u200b") << "U+200B is not whitespace for Python";
    EXPECT_EQ(clean("\xff x \xfe"), "\xff x \xfe") << "invalid bytes are kept for the tokenizer";
    EXPECT_EQ(clean(" \n \n"), "");
    // Python's text mode reads "\r\n" and a lone "\r" as "\n" before the substitution.
    EXPECT_EQ(clean("a\r\nb\r\n\r\n\r\n\r\nc\rd\r\n"), "a\nb\n\nc\nd");
    EXPECT_EQ(clean("a\r\r\r\rb"), "a\n\nb");
}

TEST(DataPrepInputs, OpenWebTextSubsetDocumentsInNameOrder) {
    // The builder's listing of an extracted subset: top-level members ending in "txt", sorted by
    // name ("./" aside); the fixture's subset archives list them shuffled, with a README and a
    // sub/nested.txt that are no documents.
    DataPrepTempDir dir;
    const std::vector<std::string> subsets =
        extract_members(kFixtures + "/owt/openwebtext.tar.xz", "openwebtext", "xz", dir.file("subsets"));
    ASSERT_EQ(subsets.size(), 2u) << "LICENSE is no subset";
    EXPECT_EQ(fs::path(subsets[0]).filename(), "urlsf_subset00-10_data.xz") << "sorted by name, not by number";
    EXPECT_EQ(extract_members("/nonexistent.tar.xz", "openwebtext", "xz", dir.file("subsets")), subsets)
        << "a complete extraction is reused";
    ReaderOptions options;
    options.text_members_in_name_order = true;
    const std::vector<ReadDocument> documents = read_documents({subsets[0]}, options);
    ASSERT_EQ(documents.size(), 12u);
    for (size_t i = 0; i < documents.size(); i++) {
        char prefix[32];
        std::snprintf(prefix, sizeof prefix, ":0001%03zu-", i);
        EXPECT_CONTAINS(documents[i].location, prefix);
    }
    EXPECT_EQ(read_documents({subsets[1]}, options).size(), 13u);
    EXPECT_CONTAINS(error_of([&] { extract_members(kFixtures + "/pile/val.jsonl.zst", "openwebtext", "xz", dir.file("x")); }),
                    "val.jsonl.zst");
}
