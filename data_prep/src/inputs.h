// Input readers: from paths, globs and directories to a stream of raw documents, through
// compression (.gz, .xz, .zst, .bz2, .lzma) and tar archives (nested too: OpenWebText is a tar.xz
// of .xz tars of .txt files). libarchive reads tar and the codecs other than gzip; gzip is
// decoded with zlib (byte_sources.h) so that its CRC-32 and length are checked. The name decides
// the codec: "x.zst" must start with zstd's signature, "x.txt" is not decompressed. Corrupt or
// truncated compressed data, and data without the signature of the codec its name says, are
// errors naming the file and archive member.
//
// Only text is read. Every file and archive member is sniffed after decompression: it is binary
// if its first 64 KiB hold a NUL byte or it starts with a known binary signature (an image, a
// PDF, a zip, an executable, compressed data under a name without its suffix, a token shard or
// checkpoint; see binary_kind()). A binary input named on the command line is an error; one found
// in a directory, by a glob or inside a tar archive is skipped and reported (skipped()).
//
// What counts as a document, by the (decompressed) name of each file or archive entry:
//   *.jsonl  one JSON object per line; the document is its text field ("text" by default)
//   *.json   a JSON array of strings; joined with "\n" they form one document (nlp-corpus)
//   other    plain text: the whole entry is one document (bytes as they are), or each line, or
//            each blank-line separated paragraph (DocumentSplit; lines end with "\n" or "\r\n",
//            and a paragraph's lines are joined with "\n")
// The reader only cuts the bytes apart; turning a raw document into text (parsing JSON) is
// document_text(), run by the tokenizing threads so that JSON parsing scales with them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace data_prep {

enum class DocumentSplit { kWholeFile, kLine, kBlankLine };

struct ReaderOptions {
    std::string text_field = "text";  // of each JSON object in .jsonl inputs
    DocumentSplit text_split = DocumentSplit::kWholeFile;
    // The cleanup of the HuggingFace OpenWebText loader (line ends made "\n" as Python's text
    // mode does, runs of 3+ newlines become 2, then Unicode whitespace is stripped at both ends),
    // which the seed's data went through.
    bool collapse_newlines_and_strip = false;
    // The documents of an archive as the HuggingFace OpenWebText builder lists an extracted
    // subset: its top-level members whose names end in "txt" (a leading "./" aside), in name
    // order; other members are skipped, and so are binary ones, reported as everywhere (the
    // builder would read them as text). The archive's documents are held in memory to sort them
    // (at most max_document_bytes in all).
    bool text_members_in_name_order = false;
    // A longer document (a whole file, a line or a paragraph, before JSON parsing) is an error:
    // it would be held in memory whole and tokenized by one thread.
    size_t max_document_bytes = size_t(1) << 30;
};

struct RawDocument {
    enum class Kind { kText, kJsonLine, kJsonArray };
    Kind kind = Kind::kText;
    std::string bytes;
    std::shared_ptr<const std::string> location;  // file[:entry[:entry]], for messages
    int64_t line = 0;                             // 1-based line of a kJsonLine, else 0
};

struct InputFile {
    InputFile(std::string path_, bool named_ = true) : path(std::move(path_)), named(named_) {}
    std::string path;
    bool named;  // named on the command line itself; false when found in a directory or by a glob
};

// An input left out because it is not text: the file (and archive member) and what it is.
struct SkippedInput {
    std::string location;
    std::string kind;  // e.g. "a PNG image", "NUL bytes"
};

// Why a stream whose first bytes are `head` is binary ("a PNG image", "a NUL byte at offset 9"),
// or "" for text. Looks at the first 64 KiB.
std::string binary_kind(std::string_view head);

// Inputs named on a command line (files, directories searched recursively, glob patterns) as a
// sorted, de-duplicated list of files per argument, in argument order. Hidden files (".name")
// and unfinished downloads (*.part) inside directories are skipped. Throws, naming the
// argument, for a path that does not exist, a glob that matches nothing, or an empty file.
std::vector<InputFile> expand_inputs(const std::vector<std::string>& inputs);

// Extracts the members `member_dir`/NAME of `archive` whose NAME ends in `suffix` (and holds no
// further '/') into `directory`/NAME, each written under a temporary name and renamed, and returns
// their paths sorted by NAME. A marker file written last records a complete extraction, which a
// later call reuses without reading the archive. Throws std::runtime_error naming the archive or
// the file at fault.
std::vector<std::string> extract_members(const std::string& archive, const std::string& member_dir,
                                         const std::string& suffix, const std::string& directory);

// Files in `directory` (not below it) whose names end in `suffix`, sorted by name.
std::vector<std::string> files_with_suffix(const std::string& directory, const std::string& suffix);

class DocumentReader {
  public:
    DocumentReader(std::vector<InputFile> files, ReaderOptions options);

    // Calls `emit` for every raw document in input order. Returns false if `emit` asked to stop
    // (returned false), true at the end of the inputs. Throws std::runtime_error naming the
    // file and entry for unreadable, truncated or corrupt input.
    bool read_all(const std::function<bool(RawDocument&&)>& emit);

    // Input bytes consumed so far (compressed size), for progress; safe from any thread.
    int64_t bytes_consumed() const { return bytes_consumed_.load(std::memory_order_relaxed); }
    int64_t total_bytes() const { return total_bytes_; }
    // Binary inputs found in directories, by globs or in archives, left out; read them after
    // read_all() has returned.
    const std::vector<SkippedInput>& skipped() const { return skipped_; }

  private:
    std::vector<InputFile> files_;
    std::vector<SkippedInput> skipped_;
    ReaderOptions options_;
    int64_t total_bytes_ = 0;
    std::atomic<int64_t> bytes_consumed_{0};
};

// A document that cannot be turned into text (invalid JSON, no text field): callers may skip
// and count these instead of stopping (prepare's --skip-invalid-json).
struct InvalidDocument : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The text of a raw document (see the top of this file). Returns a view of `raw.bytes` or of
// `storage`. Throws InvalidDocument naming the file and line for invalid JSON, a missing or
// non-string text field, or a .json file that is not an array of strings.
std::string_view document_text(const RawDocument& raw, const ReaderOptions& options, std::string& storage);

}  // namespace data_prep
