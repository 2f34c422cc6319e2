// data_prep library: input readers, the tokenization pipeline, holdout choice, recipes,
// downloads (against tests/http_fixture_server.py on 127.0.0.1) and their error paths.
// Runs from the repository root (tests/run_all.sh does) with the vocabulary of `make setup`.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <tuple>

#include "data_prep/src/download.h"
#include "data_prep/src/inputs.h"
#include "data_prep/src/options.h"
#include "data_prep/src/pipeline.h"
#include "data_prep/src/recipes.h"
#include "data_prep/src/sha256.h"
#include "host/shard.h"
#include "host/tokenizer.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using namespace data_prep;

namespace {

const std::string kFixtures = "tests/fixtures";

struct DataPrepTempDir : test_support::ScratchDir {
    DataPrepTempDir() : ScratchDir("test_data_prep") {}
};

const Gpt2Tokenizer& tokenizer() {
    static const Gpt2Tokenizer loaded = Gpt2Tokenizer::load(Gpt2Tokenizer::default_vocab_dir());
    return loaded;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& content) {
    std::ofstream(path, std::ios::binary) << content;
}

// `content` as a single compressed stream ("gzip", "xz" or "zstd"), written with libarchive.
void write_compressed(const std::string& path, const std::string& filter, const std::string& content) {
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

// Text that does not compress to nothing, so that a truncated stream is really missing data.
std::string pseudo_random_text(size_t bytes, uint32_t seed) {
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

std::vector<ReadDocument> read_documents(const std::vector<InputFile>& files, const ReaderOptions& options = {}) {
    DocumentReader reader(files, options);
    std::vector<ReadDocument> documents;
    reader.read_all([&](RawDocument&& raw) {
        std::string storage;
        documents.push_back({*raw.location, raw.line, std::string(document_text(raw, options, storage))});
        return true;
    });
    return documents;
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

using test_support::error_of;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << "in: " << (text)

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

// ---------------------------------------------------------------------------------------------
// Checksums and options

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

TEST(DataPrepOptions, ParsesTheTableAndRejectsBadCommandLines) {
    int64_t threads = 0;
    bool force = false;
    std::string name;
    const std::vector<Option> table = {
        {"--threads", "N", "", [&](const std::string& v) { threads = parse_integer(v, 1, 64); }, "g"},
        {"--force", "", "", [&](const std::string&) { force = true; }, "g"},
        {"--name", "NAME", "", [&](const std::string& v) { name = v; }, "g"},
    };
    std::vector<std::string> args = {"prepare", "text", "--threads", "8", "--force", "--name=x"};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    const ParsedCommandLine parsed = parse_options(static_cast<int>(argv.size()), argv.data(), table);
    EXPECT_EQ(parsed.positional, std::vector<std::string>{"text"});
    EXPECT_EQ(threads, 8);
    EXPECT_TRUE(force);
    EXPECT_EQ(name, "x");
    const auto parse = [&](std::vector<std::string> words) {
        std::vector<char*> pointers;
        for (std::string& word : words) pointers.push_back(word.data());
        return error_of([&] { parse_options(static_cast<int>(pointers.size()), pointers.data(), table); });
    };
    EXPECT_CONTAINS(parse({"p", "--bogus"}), "unknown option --bogus");
    EXPECT_CONTAINS(parse({"p", "--threads"}), "--threads needs a value");
    EXPECT_CONTAINS(parse({"p", "--threads", "0"}), "--threads 0: expected an integer from 1 to 64");
    EXPECT_CONTAINS(parse({"p", "--threads", "4x"}), "--threads 4x");
    EXPECT_CONTAINS(parse({"p", "--force=1"}), "--force takes no value");
    EXPECT_CONTAINS(options_help(table), "--threads N");
}

// ---------------------------------------------------------------------------------------------
// Input readers

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

// ---------------------------------------------------------------------------------------------
// Pipeline

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

// ---------------------------------------------------------------------------------------------
// Recipes

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

// ---------------------------------------------------------------------------------------------
// Downloads against tests/http_fixture_server.py

namespace {

// The fixture server as a child process on a free port; killed when this object goes away.
class FixtureServer {
  public:
    FixtureServer(const std::string& root, const std::string& log, std::vector<std::string> extra = {}) {
        std::vector<std::string> args = {"python3", "tests/http_fixture_server.py", "--root", root, "--log", log};
        args.insert(args.end(), extra.begin(), extra.end());
        int pipe_fds[2];
        if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
        pid_ = fork();
        if (pid_ == 0) {
            dup2(pipe_fds[1], STDOUT_FILENO);
            close(pipe_fds[0]);
            std::vector<char*> argv;
            for (std::string& arg : args) argv.push_back(arg.data());
            argv.push_back(nullptr);
            execvp("python3", argv.data());
            _exit(127);
        }
        close(pipe_fds[1]);
        std::string line;
        char c;
        while (read(pipe_fds[0], &c, 1) == 1 && c != '\n') line += c;
        close(pipe_fds[0]);
        if (line.rfind("PORT ", 0) != 0) throw std::runtime_error("tests/http_fixture_server.py did not start: '" + line + "'");
        port_ = std::stoi(line.substr(5));
    }
    ~FixtureServer() {
        kill(pid_, SIGTERM);
        waitpid(pid_, nullptr, 0);
    }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + "/" + path; }

  private:
    pid_t pid_ = -1;
    int port_ = 0;
};

struct DownloadFixture {
    DataPrepTempDir dir;
    std::string root, blob, digest, log;
    DownloadFixture() : root(dir.file("served")), log(dir.file("requests.log")) {
        fs::create_directory(root);
        blob = pseudo_random_text(300000, 11);
        write_file(root + "/blob.bin", blob);
        Sha256 hash;
        hash.update(blob.data(), blob.size());
        digest = hash.hex_digest();
    }
    DownloadOptions quick_retries(int retries) const {
        DownloadOptions options;
        options.retries = retries;
        options.retry_delay_s = 0.01;
        return options;
    }
};

}  // namespace

TEST(DataPrepDownload, DownloadsAndVerifiesAWholeFile) {
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log);
    const std::string dest = fixture.dir.file("blob.bin");
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0));
    EXPECT_EQ(read_file(dest), fixture.blob);
    EXPECT_FALSE(fs::exists(dest + ".part"));
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0));  // present: no request
    EXPECT_EQ(read_file(fixture.log), "GET /blob.bin range=- 200\n");
}

TEST(DataPrepDownload, ResumesAnInterruptedTransferInTheNextRun) {
    DownloadFixture fixture;
    const std::string dest = fixture.dir.file("blob.bin");
    {
        FixtureServer dropping(fixture.root, fixture.log, {"--drop-after", "120000", "--drop-count", "1"});
        const std::string error = error_of([&] { download_file(dropping.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0)); });
        EXPECT_CONTAINS(error, dest);
        EXPECT_FALSE(fs::exists(dest)) << "an incomplete download never gets the final name";
        EXPECT_EQ(fs::file_size(dest + ".part"), 120000u);
    }
    FixtureServer server(fixture.root, fixture.log);
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0));
    EXPECT_EQ(read_file(dest), fixture.blob);
    EXPECT_CONTAINS(read_file(fixture.log), "GET /blob.bin range=bytes=120000- 206");
}

TEST(DataPrepDownload, FinishesACompletePartFileWithoutDownloadingAgain) {
    // A run stopped after the transfer, before the rename: the server answers 416 to the range.
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log);
    const std::string dest = fixture.dir.file("blob.bin");
    write_file(dest + ".part", fixture.blob);
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0));
    EXPECT_EQ(read_file(dest), fixture.blob);
    EXPECT_EQ(read_file(fixture.log), "GET /blob.bin range=bytes=300000- 416\n");
    // A .part file longer than the file cannot be continued: discarded, downloaded afresh.
    const std::string other = fixture.dir.file("other.bin");
    write_file(other + ".part", fixture.blob + "extra");
    download_file(server.url("blob.bin"), other, fixture.digest, fixture.quick_retries(1));
    EXPECT_EQ(read_file(other), fixture.blob);
}

TEST(DataPrepDownload, RetriesAndResumesWithinOneRun) {
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log, {"--drop-after", "50000", "--drop-count", "2"});
    const std::string dest = fixture.dir.file("blob.bin");
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(3));
    EXPECT_EQ(read_file(dest), fixture.blob);
    EXPECT_EQ(read_file(fixture.log),
              "GET /blob.bin range=- 200\nGET /blob.bin range=bytes=50000- 206\nGET /blob.bin range=bytes=100000- 206\n");
}

TEST(DataPrepDownload, RejectsAChecksumMismatch) {
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log);
    const std::string dest = fixture.dir.file("blob.bin");
    const std::string wrong(64, 'f');
    const std::string error = error_of([&] { download_file(server.url("blob.bin"), dest, wrong, fixture.quick_retries(2)); });
    EXPECT_CONTAINS(error, "SHA-256 mismatch");
    EXPECT_CONTAINS(error, fixture.digest);
    EXPECT_FALSE(fs::exists(dest));
    EXPECT_FALSE(fs::exists(dest + ".part")) << "a bad download is not resumed";
}

TEST(DataPrepDownload, StartsOverWhenTheServerIgnoresRanges) {
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log, {"--no-range"});
    const std::string dest = fixture.dir.file("blob.bin");
    write_file(dest + ".part", fixture.blob.substr(0, 1000));
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0));
    EXPECT_EQ(read_file(dest), fixture.blob);
}

TEST(DataPrepDownload, ReportsHttpErrorsAndUnreachableServers) {
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log);
    const std::string dest = fixture.dir.file("missing.bin");
    EXPECT_CONTAINS(error_of([&] { download_file(server.url("missing.bin"), dest, "", fixture.quick_retries(3)); }),
                    "HTTP status 404");
    EXPECT_EQ(read_file(fixture.log), "GET /missing.bin range=- 404\n") << "a 404 is not retried";
    // Port 1 on localhost: connection refused, like a machine without network.
    const std::string error = error_of([&] { download_file("http://127.0.0.1:1/x", dest, "", fixture.quick_retries(1)); });
    EXPECT_CONTAINS(error, "http://127.0.0.1:1/x");
    EXPECT_CONTAINS(error, "gave up after 2 attempts");
}

TEST(DataPrepDownload, PileRecipeDownloadsVerifiesAndSaysWhatToDoOffline) {
    DataPrepTempDir dir;
    const std::string log = dir.file("requests.log");
    FixtureServer server(kFixtures + "/pile", log);
    data_prep::PrepareOptions pile;
    pile.recipe = "pile";
    pile.data_dir = dir.path.string();
    pile.pile_train_files = 2;
    pile.checksums_file = kFixtures + "/pile/SHA256SUMS";
    pile.url = server.url("").substr(0, server.url("").size() - 1);
    pile.download.retry_delay_s = 0.01;
    const data_prep::PrepareSummary summary = data_prep::prepare_dataset(pile);
    EXPECT_EQ(read_file(dir.file("the_pile/downloads/train/01.jsonl.zst")), read_file(kFixtures + "/pile/train/01.jsonl.zst"));
    EXPECT_EQ(summary.splits.size(), 3u);

    pile.data_dir = dir.file("offline");
    pile.url = "http://127.0.0.1:1";
    pile.download.retries = 0;
    const std::string error = error_of([&] { data_prep::prepare_dataset(pile); });
    EXPECT_CONTAINS(error, "http://127.0.0.1:1/val.jsonl.zst");
    EXPECT_CONTAINS(error, "--source-dir");
    EXPECT_FALSE(fs::exists(dir.file("offline/the_pile/manifest.json")));
}
