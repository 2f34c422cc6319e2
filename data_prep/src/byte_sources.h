// Byte streams read block by block: a file, and a gzip decoder over another stream. The input
// readers (inputs.h) build on them; libarchive reads them through callbacks.
//
// Gzip is decoded here with zlib rather than by libarchive's gzip filter, which checks neither
// a member's CRC-32 nor its length: a .gz with damaged bytes inside would decode to garbage
// and be tokenized without a word.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace data_prep {

// The error for a stream whose name says `format` (by `suffix`) but whose first bytes are not
// that format's `signature`.
std::runtime_error not_in_named_format(const std::string& location, std::string_view format, std::string_view suffix,
                                       std::string_view first_bytes, std::string_view signature);

class ByteSource {
  public:
    virtual ~ByteSource() = default;
    // The next block of bytes, valid until the next call; empty at the end of the stream (and
    // on every call after it). Throws std::runtime_error naming the input for unreadable,
    // truncated or corrupt data.
    virtual std::string_view next_block() = 0;
};

class FileSource : public ByteSource {
  public:
    explicit FileSource(const std::string& path);
    ~FileSource() override;
    FileSource(const FileSource&) = delete;
    FileSource& operator=(const FileSource&) = delete;
    std::string_view next_block() override;
    int64_t bytes_read() const { return bytes_read_; }

  private:
    std::string path_;
    int fd_ = -1;
    std::vector<char> buffer_;
    int64_t bytes_read_ = 0;
};

// The decompressed bytes of a gzip stream: one or more members (as `cat a.gz b.gz` makes),
// optionally followed by zero bytes (tape padding). Each member's CRC-32 and length (mod 2^32)
// are checked against its trailer. Errors name `location` and say what is wrong: not gzip data,
// corrupt data, a failed check, truncation, or data after the last member.
class GzipSource : public ByteSource {
  public:
    GzipSource(ByteSource& compressed, std::string location);
    ~GzipSource() override;
    GzipSource(const GzipSource&) = delete;
    GzipSource& operator=(const GzipSource&) = delete;
    std::string_view next_block() override;

  private:
    enum class State { kBeforeMember, kInMember, kZeroPadding, kEnded };
    [[noreturn]] void fail(const std::string& what) const;
    void start_member();

    ByteSource& compressed_;
    std::string location_;
    z_stream stream_{};
    std::vector<char> output_;
    std::string_view input_;  // compressed bytes not yet given to zlib
    bool input_ended_ = false;
    State state_ = State::kBeforeMember;
    int64_t members_ = 0;  // completed
};

}  // namespace data_prep
