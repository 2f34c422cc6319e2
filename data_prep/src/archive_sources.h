// Compressed streams and tar archives through libarchive, for the input readers (inputs.cpp):
// the compression suffixes a name may carry, a libarchive reader over a ByteSource, and the data
// of an archive member or of a codec's stream as ByteSources. Gzip is byte_sources.h's GzipSource.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <cstddef>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data_prep/src/byte_sources.h"

namespace data_prep {

constexpr size_t kReadBlockBytes = 1 << 20;  // what one read of a file or an archive asks for

inline bool ends_with(std::string_view text, std::string_view suffix) {
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Compression suffixes and the short tar forms, each with the name of the stream inside
// ("a.jsonl.zst" holds "a.jsonl", "b.tgz" holds "b.tar") and the format the data must have:
// the name decides the codec, and a stream without that codec's signature is an error.
struct CompressionSuffix {
    std::string_view suffix;
    std::string_view inner_suffix;
    std::string_view format;     // for messages
    int libarchive_filter;       // ARCHIVE_FILTER_GZIP means GzipSource
    std::string_view signature;  // for messages
};

// The entry for the compression suffix `name` ends with, or null.
const CompressionSuffix* compression_suffix(std::string_view name);

// The name of the stream inside: "a.jsonl" for "a.jsonl.zst", "b.tar" for "b.tgz".
std::string inner_name(const std::string& name, const CompressionSuffix& entry);

// A stream that is itself an archive or compressed: read it as a nested archive.
bool is_container(std::string_view name);

struct ArchiveFree {
    void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveFree>;

// A reader of tar and raw (any single stream) without compression filters, or (tar = false) of
// raw behind the one compression filter `filter`. Only these two formats, on purpose: with all
// formats enabled, libarchive would take some text files for exotic formats (a text file that
// starts with "#mtree" is an mtree archive).
ArchivePtr new_reader(int filter, bool tar);

// libarchive reads a ByteSource through read_from_source(). An exception cannot cross
// libarchive's C frames: the callback keeps it, and whoever sees libarchive fail rethrows it
// (its message names the input already).
struct ArchiveClient {
    ByteSource* source;
    std::exception_ptr error;
    std::string first_bytes;  // of the stream, for messages about its format
};

la_ssize_t read_from_source(archive* a, void* client_data, const void** block);

// Throws the error of `a` for `location` ("cannot read" or the like as `what`), saying that the
// file is truncated or corrupt.
[[noreturn]] void throw_archive_error(archive* a, const std::string& location, const char* what);

// The same for an archive that reads a ByteSource: the source's own error first, if it failed.
[[noreturn]] void throw_archive_error(archive* a, const ArchiveClient& client, const std::string& location,
                                      const char* what);

// The data of the current member of an open archive.
class MemberSource : public ByteSource {
  public:
    MemberSource(archive* a, const ArchiveClient& client, std::string location);
    std::string_view next_block() override;

  private:
    archive* archive_;
    const ArchiveClient& client_;
    std::string location_;
    std::vector<char> buffer_;
};

// The decompressed bytes of a stream in one of the codecs libarchive decodes (xz, zstd, bzip2,
// lzma): libarchive with that filter alone and the raw format. The codec's checks are verified
// as the end of the stream is read.
class FilterSource : public ByteSource {
  public:
    FilterSource(ByteSource& compressed, const std::string& location, const CompressionSuffix& compression);
    std::string_view next_block() override;

  private:
    ArchiveClient client_;
    ArchivePtr reader_;
    std::string location_;
    std::vector<char> buffer_;
    bool ended_ = false;
};

}  // namespace data_prep
