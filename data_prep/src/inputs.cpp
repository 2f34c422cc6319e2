#include "data_prep/src/inputs.h"

#include "data_prep/src/archive_sources.h"
#include "data_prep/src/byte_sources.h"
#include "data_prep/src/progress.h"
#include "host/checkpoint.h"
#include "host/shard.h"
#include "host/tensor_bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

namespace fs = std::filesystem;

namespace data_prep {

namespace {

constexpr size_t kSniffBytes = 64 << 10;  // binary_kind() looks this far

// `head`, bytes already read from `rest`, then the rest of `rest`.
class PrefixedSource : public ByteSource {
  public:
    PrefixedSource(std::string head, ByteSource& rest) : head_(std::move(head)), rest_(rest) {}
    std::string_view next_block() override {
        if (!head_given_) {
            head_given_ = true;
            if (!head_.empty()) return head_;
        }
        return rest_.next_block();
    }

  private:
    std::string head_;
    ByteSource& rest_;
    bool head_given_ = false;
};

std::string int32_signature(int32_t magic) {
    std::string bytes(sizeof(magic), '\0');
    std::memcpy(bytes.data(), &magic, sizeof(magic));  // little-endian, as the files are written
    return bytes;
}

// Walks one input file: its archive members, nested archives, and the documents in each.
class FileWalker {
  public:
    FileWalker(const ReaderOptions& options, const std::function<bool(RawDocument&&)>& emit,
               std::atomic<int64_t>& bytes_consumed, int64_t bytes_before, std::vector<SkippedInput>& skipped)
        : options_(options), emit_(emit), bytes_consumed_(bytes_consumed), bytes_before_(bytes_before), skipped_(skipped) {}

    bool walk(const InputFile& input) {
        FileSource file(input.path);
        file_ = &file;
        input_path_ = input.path;
        named_ = input.named;
        return read_stream(file, input.path, fs::path(input.path).filename().string());
    }

  private:
    // A stream named `name`: decompressed as its name says (gzip by GzipSource, the other codecs
    // by libarchive), as often as it says ("a.txt.gz.xz"), then a tar archive or a single stream.
    bool read_stream(ByteSource& source, const std::string& location, const std::string& name) {
        const CompressionSuffix* compression = compression_suffix(name);
        if (!compression) return read_archive(source, location, name);
        const std::string inner = inner_name(name, *compression);
        if (compression->libarchive_filter == ARCHIVE_FILTER_GZIP) {
            GzipSource decompressed(source, location);
            return read_stream(decompressed, location, inner);
        }
        FilterSource decompressed(source, location, *compression);
        return read_stream(decompressed, location, inner);
    }

    // All members of the (uncompressed) tar archive in `source`; a raw stream has exactly one
    // member, named `stream_name`. A tar reader stops at the archive's end marker: the rest of
    // `source` is read too, so that a codec below reaches (and verifies) the checks at its end.
    bool read_archive(ByteSource& source, const std::string& location, const std::string& stream_name) {
        ArchiveClient client{&source, nullptr, {}};
        ArchivePtr reader = new_reader(ARCHIVE_FILTER_NONE, true);
        archive* a = reader.get();
        if (archive_read_open(a, &client, nullptr, read_from_source, nullptr) != ARCHIVE_OK) {
            throw_archive_error(a, client, location, "cannot open input");
        }
        HeldMembers held;
        for (;;) {
            archive_entry* entry = nullptr;
            const int status = archive_read_next_header(a, &entry);
            if (status == ARCHIVE_EOF) {
                while (!source.next_block().empty()) {
                }
                return emit_in_name_order(held, location);
            }
            if (status < ARCHIVE_WARN) throw_archive_error(a, client, location, "cannot read archive member");
            const bool raw = archive_format(a) == ARCHIVE_FORMAT_RAW;
            if (raw) {
                MemberSource data(a, client, location);
                if (!read_document_stream(data, location, stream_name, location != input_path_)) return false;
                continue;
            }
            if (archive_entry_filetype(entry) != AE_IFREG) continue;  // directories, links
            if (options_.text_members_in_name_order) {
                hold_text_member(a, client, entry, location, held);
                continue;
            }
            const char* pathname = archive_entry_pathname(entry);
            const std::string member = pathname ? pathname : "(unnamed member)";
            const std::string member_location = location + ":" + member;
            MemberSource data(a, client, member_location);
            const bool keep_going = is_container(member) ? read_stream(data, member_location, member)
                                                         : read_document_stream(data, member_location, member, true);
            if (!keep_going) return false;
        }
    }

    // The documents of an archive read under ReaderOptions::text_members_in_name_order, held
    // until its end to be sorted.
    struct HeldMembers {
        std::vector<std::pair<std::string, std::string>> members;  // (name, bytes)
        size_t bytes = 0;
    };

    // Keeps the current (regular) member in `held` if it is a document: a top-level member whose
    // name ends in "txt" and which is text.
    void hold_text_member(archive* a, const ArchiveClient& client, archive_entry* entry, const std::string& location,
                          HeldMembers& held) {
        const char* pathname = archive_entry_pathname(entry);
        std::string name = pathname ? pathname : "";
        while (name.rfind("./", 0) == 0) name.erase(0, 2);
        if (name.find('/') != std::string::npos || !ends_with(name, "txt")) return;
        MemberSource data(a, client, location + ":" + name);
        std::string bytes;
        read_chunks(data, [&](std::string_view chunk) {
            bytes.append(chunk);
            held.bytes += chunk.size();
            if (held.bytes > options_.max_document_bytes)
                throw std::runtime_error(location + ": over " + document_limit_text() +
                                         " of text members; an OpenWebText subset archive holds a few MB (is this "
                                         "the outer openwebtext.tar.xz?)");
            return true;
        });
        const std::string kind = binary_kind(bytes);
        if (kind.empty()) {
            held.members.emplace_back(std::move(name), std::move(bytes));
        } else {
            skipped_.push_back({location + ":" + name, kind});
        }
    }

    bool emit_in_name_order(HeldMembers& held, const std::string& location) {
        std::sort(held.members.begin(), held.members.end());  // byte order: Python's order of the names' code points
        for (auto& [name, bytes] : held.members) {
            const auto member_location = std::make_shared<const std::string>(location + ":" + name);
            if (!emit(RawDocument::Kind::kText, std::move(bytes), member_location, 0)) return false;
        }
        return true;
    }

    // Calls consume(chunk) for every block of `source`; returns false as soon as consume does
    // (the rest is left unread).
    template <typename Consume>
    bool read_chunks(ByteSource& source, Consume&& consume) {
        for (;;) {
            const std::string_view chunk = source.next_block();
            bytes_consumed_.store(bytes_before_ + file_->bytes_read(), std::memory_order_relaxed);
            if (chunk.empty()) return true;
            if (!consume(chunk)) return false;
        }
    }

    // Calls on_line(line, number) for every line, without its "\n" or "\r\n"; false from on_line
    // stops.
    template <typename OnLine>
    bool read_lines(ByteSource& source, const std::string& location, OnLine&& on_line) {
        std::string pending;
        int64_t number = 0;
        const auto append = [&](std::string_view part) {
            pending.append(part);
            if (pending.size() > options_.max_document_bytes)
                too_long(location + ":" + std::to_string(number + 1), "line",
                         "it is no line-oriented text, or needs cutting into lines");
        };
        const bool keep_going = read_chunks(source, [&](std::string_view chunk) {
            for (size_t newline; (newline = chunk.find('\n')) != std::string_view::npos;) {
                append(chunk.substr(0, newline));
                chunk.remove_prefix(newline + 1);
                if (!pending.empty() && pending.back() == '\r') pending.pop_back();
                if (!on_line(std::move(pending), ++number)) return false;
                pending.clear();
            }
            append(chunk);
            return true;
        });
        if (!keep_going) return false;
        if (!pending.empty() && pending.back() == '\r') pending.pop_back();
        return pending.empty() || on_line(std::move(pending), ++number);
    }

    // ReaderOptions::max_document_bytes for messages: "1 GiB".
    std::string document_limit_text() const {
        const size_t limit = options_.max_document_bytes;
        return limit % (size_t(1) << 30) == 0 ? std::to_string(limit >> 30) + " GiB" : std::to_string(limit) + " bytes";
    }

    [[noreturn]] void too_long(const std::string& location, const char* what, const char* what_to_do) const {
        throw std::runtime_error(location + ": over " + document_limit_text() + " as a " + what +
                                 ", which would be held in memory and tokenized by one thread: " + what_to_do);
    }

    bool emit(RawDocument::Kind kind, std::string bytes, const std::shared_ptr<const std::string>& location, int64_t line) {
        RawDocument document;
        document.kind = kind;
        document.bytes = std::move(bytes);
        document.location = location;
        document.line = line;
        return emit_(std::move(document));
    }

    // A document stream, unless it is binary: an error for a file named on the command line,
    // skipped (and recorded) otherwise.
    bool read_document_stream(ByteSource& stream, const std::string& location_text, const std::string& name,
                              bool member) {
        std::string head;
        for (std::string_view block; head.size() < kSniffBytes && !(block = stream.next_block()).empty();) {
            head.append(block);
        }
        const std::string kind = binary_kind(head);
        if (!kind.empty()) {
            if (named_ && !member)
                throw std::runtime_error(location_text + " is binary (" + kind +
                                         "), not text: remove it from the inputs (or name a compressed file after its "
                                         "format: .gz, .xz, .zst, .bz2, .lzma)");
            skipped_.push_back({location_text, kind});
            return true;
        }
        PrefixedSource source(std::move(head), stream);
        const auto location = std::make_shared<const std::string>(location_text);
        if (ends_with(name, ".jsonl")) {
            return read_lines(source, location_text, [&](std::string line, int64_t number) {
                if (line.find_first_not_of(" \t") == std::string::npos) return true;  // blank line
                return emit(RawDocument::Kind::kJsonLine, std::move(line), location, number);
            });
        }
        if (ends_with(name, ".json") || options_.text_split == DocumentSplit::kWholeFile) {
            std::string whole;
            read_chunks(source, [&](std::string_view chunk) {
                whole.append(chunk);
                if (whole.size() > options_.max_document_bytes) {
                    too_long(location_text, "single document",
                             ends_with(name, ".json") ? "make it a .jsonl file, one document per line"
                                                      : "pass --doc-split line or --doc-split paragraph to cut it "
                                                        "into documents");
                }
                return true;
            });
            return emit(ends_with(name, ".json") ? RawDocument::Kind::kJsonArray : RawDocument::Kind::kText,
                        std::move(whole), location, 0);
        }
        if (options_.text_split == DocumentSplit::kLine) {
            return read_lines(source, location_text, [&](std::string line, int64_t number) {
                if (line.empty()) return true;
                return emit(RawDocument::Kind::kText, std::move(line), location, number);
            });
        }
        // Paragraphs: runs of lines separated by empty lines, joined by "\n".
        std::string paragraph;
        int64_t first_line = 0;
        bool keep_going = read_lines(source, location_text, [&](std::string line, int64_t number) {
            if (line.empty()) {
                if (paragraph.empty()) return true;
                const bool more = emit(RawDocument::Kind::kText, std::move(paragraph), location, first_line);
                paragraph.clear();
                return more;
            }
            if (paragraph.empty()) {
                first_line = number;
            } else {
                paragraph += '\n';
            }
            paragraph += line;
            if (paragraph.size() > options_.max_document_bytes)
                too_long(location_text + ":" + std::to_string(first_line), "paragraph",
                         "pass --doc-split line to cut it into lines");
            return true;
        });
        if (keep_going && !paragraph.empty()) keep_going = emit(RawDocument::Kind::kText, std::move(paragraph), location, first_line);
        return keep_going;
    }

    const ReaderOptions& options_;
    const std::function<bool(RawDocument&&)>& emit_;
    std::atomic<int64_t>& bytes_consumed_;
    int64_t bytes_before_;
    std::vector<SkippedInput>& skipped_;
    const FileSource* file_ = nullptr;
    std::string input_path_;
    bool named_ = true;
};

int64_t regular_file_size(const std::string& path, const std::string& what) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        throw std::runtime_error(what + " '" + path + "' not found: " + std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) throw std::runtime_error(what + " '" + path + "' is not a regular file");
    if (st.st_size == 0) {
        throw std::runtime_error(what + " '" + path + "' is empty: there is nothing to tokenize; remove it from the inputs");
    }
    return st.st_size;
}

bool is_skipped_in_directory(const fs::path& path) {
    const std::string name = path.filename().string();
    return name.empty() || name[0] == '.' || ends_with(name, ".part") || ends_with(name, ".tmp");
}

std::vector<std::string> files_under(const std::string& directory) {
    std::vector<std::string> files;
    std::error_code error;
    for (fs::recursive_directory_iterator it(directory, error), end; !error && it != end; it.increment(error)) {
        if (is_skipped_in_directory(it->path())) {
            if (it->is_directory()) it.disable_recursion_pending();
            continue;
        }
        if (it->is_regular_file()) files.push_back(it->path().string());
    }
    if (error) throw std::runtime_error("cannot list input directory '" + directory + "': " + error.message());
    std::sort(files.begin(), files.end());
    return files;
}

}  // namespace

std::string binary_kind(std::string_view head) {
    head = head.substr(0, kSniffBytes);
    struct Signature {
        std::string bytes;
        const char* kind;
    };
    static const Signature kSignatures[] = {
        {"\x89PNG\r\n\x1a\n", "a PNG image"},
        {"\xff\xd8\xff", "a JPEG image"},
        {"GIF87a", "a GIF image"},
        {"GIF89a", "a GIF image"},
        {"%PDF-", "a PDF document"},
        {"PK\x03\x04", "a zip archive"},
        {"\x7f" "ELF", "an executable"},
        {"\x1f\x8b", "gzip data: name it .gz"},
        {std::string("\xfd" "7zXZ\0", 6), "xz data: name it .xz"},
        {"\x28\xb5\x2f\xfd", "zstd data: name it .zst"},
        {"BZh", "bzip2 data: name it .bz2"},
        {int32_signature(shard::kMagic), "a token shard"},
        {int32_signature(kModelFileMagic), "a model checkpoint"},
        {int32_signature(kStateFileMagic), "an optimizer state file"},
        {int32_signature(tensor_bundle::kMagic), "a tensor bundle"},
    };
    for (const Signature& signature : kSignatures) {
        if (head.substr(0, signature.bytes.size()) != signature.bytes) continue;
        // "BZh" may start a text; bzip2 data goes on with a block size digit and a block magic.
        if (signature.bytes == "BZh" && (head.size() < 10 || head[3] < '1' || head[3] > '9' || head.substr(4, 6) != "1AY&SY"))
            continue;
        return signature.kind;
    }
    const size_t nul = head.find('\0');
    if (nul != std::string_view::npos) return "a NUL byte at offset " + std::to_string(nul);
    return "";
}

std::vector<InputFile> expand_inputs(const std::vector<std::string>& inputs) {
    std::vector<InputFile> files;
    std::map<std::string, size_t> index_of;
    const auto add = [&](const std::string& file, bool named) {
        regular_file_size(file, "input file");
        const auto [it, added] = index_of.emplace(file, files.size());
        if (added) {
            files.emplace_back(file, named);
        } else {
            files[it->second].named |= named;
        }
    };
    for (const std::string& input : inputs) {
        std::vector<std::string> paths;
        const bool pattern = input.find_first_of("*?[") != std::string::npos;
        if (pattern) {
            glob_t matches{};
            const int status = glob(input.c_str(), 0, nullptr, &matches);
            if (status == 0) paths.assign(matches.gl_pathv, matches.gl_pathv + matches.gl_pathc);
            globfree(&matches);
            if (paths.empty()) throw std::runtime_error("input pattern '" + input + "' matches no files");
        } else {
            paths.push_back(input);
        }
        for (const std::string& path : paths) {
            std::error_code error;
            if (fs::is_directory(path, error)) {
                const std::vector<std::string> found = files_under(path);
                if (found.empty()) throw std::runtime_error("input directory '" + path + "' holds no files");
                for (const std::string& file : found) add(file, false);
            } else {
                add(path, !pattern);
            }
        }
    }
    return files;
}

std::vector<std::string> files_with_suffix(const std::string& directory, const std::string& suffix) {
    std::vector<std::string> names;
    std::error_code error;
    for (fs::directory_iterator it(directory, error), end; !error && it != end; it.increment(error)) {
        const std::string name = it->path().filename().string();
        if (it->is_regular_file() && ends_with(name, suffix)) names.push_back(name);
    }
    if (error) throw std::runtime_error("cannot list " + directory + ": " + error.message());
    std::sort(names.begin(), names.end());
    std::vector<std::string> paths;
    for (const std::string& name : names) paths.push_back((fs::path(directory) / name).string());
    return paths;
}

std::vector<std::string> extract_members(const std::string& archive_path, const std::string& member_dir,
                                         const std::string& suffix, const std::string& directory) {
    const std::string marker = (fs::path(directory) / ".extracted").string();
    if (fs::exists(marker)) return files_with_suffix(directory, suffix);
    std::error_code error;
    fs::remove_all(directory, error);
    fs::create_directories(directory, error);
    if (error) throw std::runtime_error("cannot create " + directory + ": " + error.message());

    ArchivePtr reader(archive_read_new());
    if (!reader) throw std::bad_alloc();
    archive_read_support_filter_all(reader.get());
    archive_read_support_format_tar(reader.get());
    if (archive_read_open_filename(reader.get(), archive_path.c_str(), kReadBlockBytes) != ARCHIVE_OK)
        throw_archive_error(reader.get(), archive_path, "cannot open archive");
    const std::string prefix = member_dir + "/";
    std::vector<char> buffer(kReadBlockBytes);
    Progress progress("extract " + fs::path(archive_path).filename().string(), regular_file_size(archive_path, "archive"));
    for (;;) {
        progress.update({archive_filter_bytes(reader.get(), -1)});
        archive_entry* entry = nullptr;
        const int status = archive_read_next_header(reader.get(), &entry);
        if (status == ARCHIVE_EOF) break;
        if (status < ARCHIVE_WARN) throw_archive_error(reader.get(), archive_path, "cannot read archive member");
        if (archive_entry_filetype(entry) != AE_IFREG) continue;
        const char* pathname = archive_entry_pathname(entry);
        std::string name = pathname ? pathname : "";
        while (name.rfind("./", 0) == 0) name.erase(0, 2);
        if (name.rfind(prefix, 0) != 0) continue;
        name.erase(0, prefix.size());
        if (name.empty() || name.find('/') != std::string::npos || !ends_with(name, suffix)) continue;
        const std::string path = (fs::path(directory) / name).string(), tmp = path + ".tmp";
        std::FILE* out = std::fopen(tmp.c_str(), "wb");
        if (!out) throw std::runtime_error("cannot create " + tmp + ": " + std::strerror(errno));
        for (;;) {
            const la_ssize_t n = archive_read_data(reader.get(), buffer.data(), buffer.size());
            if (n < 0) {
                std::fclose(out);
                throw_archive_error(reader.get(), archive_path + ":" + name, "cannot read");
            }
            if (n == 0) break;
            if (std::fwrite(buffer.data(), 1, static_cast<size_t>(n), out) != static_cast<size_t>(n)) {
                const int write_errno = errno;
                std::fclose(out);
                throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(write_errno));
            }
        }
        if (std::fclose(out) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0)
            throw std::runtime_error("cannot complete " + path + ": " + std::strerror(errno));
    }
    progress.finish({archive_filter_bytes(reader.get(), -1)});
    std::vector<std::string> extracted = files_with_suffix(directory, suffix);
    if (extracted.empty())
        throw std::runtime_error(archive_path + " holds no " + prefix + "*" + suffix +
                                 " members: not the archive this recipe expects");
    std::FILE* done = std::fopen(marker.c_str(), "wb");
    if (!done || std::fclose(done) != 0) throw std::runtime_error("cannot create " + marker + ": " + std::strerror(errno));
    return extracted;
}

DocumentReader::DocumentReader(std::vector<InputFile> files, ReaderOptions options)
    : files_(std::move(files)), options_(std::move(options)) {
    for (const InputFile& file : files_) total_bytes_ += regular_file_size(file.path, "input file");
}

bool DocumentReader::read_all(const std::function<bool(RawDocument&&)>& emit) {
    int64_t bytes_before = 0;
    for (const InputFile& file : files_) {
        FileWalker walker(options_, emit, bytes_consumed_, bytes_before, skipped_);
        if (!walker.walk(file)) return false;
        bytes_before += regular_file_size(file.path, "input file");
        bytes_consumed_.store(bytes_before, std::memory_order_relaxed);
    }
    return true;
}

}  // namespace data_prep
