#include "data_prep/src/byte_sources.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <stdexcept>

namespace data_prep {

namespace {

constexpr size_t kBlockBytes = 1 << 20;
constexpr int kGzipOnlyWindowBits = 15 + 16;  // 32 KiB window; +16: the gzip wrapper and its checks

std::string hex_bytes(std::string_view bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string text;
    for (unsigned char byte : bytes) {
        if (!text.empty()) text += ' ';
        text += digits[byte >> 4];
        text += digits[byte & 15];
    }
    return text;
}

}  // namespace

std::runtime_error not_in_named_format(const std::string& location, std::string_view format, std::string_view suffix,
                                       std::string_view first_bytes, std::string_view signature) {
    return std::runtime_error(location + ": not " + std::string(format) + " data: it starts with the bytes " +
                              hex_bytes(first_bytes) + ", " + std::string(format) + " data with " +
                              std::string(signature) + ". Name the file after its format (no " + std::string(suffix) +
                              " if it is not compressed), or download or create it again");
}

// ---------------------------------------------------------------------------------------------
// FileSource

FileSource::FileSource(const std::string& path) : path_(path), buffer_(kBlockBytes) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error("cannot open input " + path + ": " + std::strerror(errno));
}

FileSource::~FileSource() { ::close(fd_); }

std::string_view FileSource::next_block() {
    for (;;) {
        const ssize_t n = ::read(fd_, buffer_.data(), buffer_.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw std::runtime_error("cannot read input " + path_ + ": " + std::strerror(errno));
        bytes_read_ += n;
        return {buffer_.data(), static_cast<size_t>(n)};
    }
}

// ---------------------------------------------------------------------------------------------
// GzipSource

GzipSource::GzipSource(ByteSource& compressed, std::string location)
    : compressed_(compressed), location_(std::move(location)), output_(kBlockBytes) {
    if (inflateInit2(&stream_, kGzipOnlyWindowBits) != Z_OK) throw std::bad_alloc();
}

GzipSource::~GzipSource() { inflateEnd(&stream_); }

void GzipSource::fail(const std::string& what) const {
    throw std::runtime_error(location_ + ": " + what + " (the file is truncated or corrupt: download or create it again)");
}

void GzipSource::start_member() {
    const auto byte = [&](size_t i) { return static_cast<unsigned char>(input_[i]); };
    if (members_ == 0) {
        // Checked here for a clear message; zlib would only say "incorrect header check".
        if (byte(0) != 0x1f || (input_.size() > 1 && byte(1) != 0x8b))
            throw not_in_named_format(location_, "gzip", ".gz", input_.substr(0, 4), "1f 8b");
    } else if (byte(0) == 0) {
        state_ = State::kZeroPadding;
        return;
    }
    if (members_ > 0 && inflateReset(&stream_) != Z_OK) throw std::logic_error("inflateReset failed");
    state_ = State::kInMember;
}

std::string_view GzipSource::next_block() {
    for (;;) {
        if (input_.empty() && !input_ended_) {
            input_ = compressed_.next_block();
            input_ended_ = input_.empty();
        }
        switch (state_) {
            case State::kEnded:
                return {};
            case State::kBeforeMember:
                if (input_.empty()) {
                    if (members_ == 0) fail("empty gzip stream");
                    state_ = State::kEnded;
                    return {};
                }
                start_member();
                continue;
            case State::kZeroPadding:
                if (input_.empty()) {
                    state_ = State::kEnded;
                    return {};
                }
                if (std::any_of(input_.begin(), input_.end(), [](char c) { return c != 0; }))
                    fail("data after the end of the gzip stream (after " + std::to_string(members_) + " member(s))");
                input_ = {};
                continue;
            case State::kInMember:
                break;
        }
        stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input_.data()));
        stream_.avail_in = static_cast<uInt>(input_.size());
        stream_.next_out = reinterpret_cast<Bytef*>(output_.data());
        stream_.avail_out = static_cast<uInt>(output_.size());
        const int status = inflate(&stream_, Z_NO_FLUSH);
        input_.remove_prefix(input_.size() - stream_.avail_in);
        const size_t produced = output_.size() - stream_.avail_out;
        if (status == Z_STREAM_END) {
            members_++;
            state_ = State::kBeforeMember;
        } else if (status == Z_DATA_ERROR) {
            const std::string reason = stream_.msg ? stream_.msg : "invalid data";
            if (reason == "incorrect data check")
                fail("gzip member " + std::to_string(members_ + 1) +
                     " fails its CRC-32 check: the decompressed data differ from what was compressed");
            if (reason == "incorrect length check")
                fail("gzip member " + std::to_string(members_ + 1) +
                     " fails its length check: the decompressed length differs from what was compressed");
            if (members_ > 0 && reason == "incorrect header check")
                fail("data after the end of the gzip stream (after " + std::to_string(members_) + " member(s))");
            fail("corrupt gzip data in member " + std::to_string(members_ + 1) + " (" + reason + ")");
        } else if (status == Z_MEM_ERROR) {
            throw std::bad_alloc();
        } else if (status != Z_OK && status != Z_BUF_ERROR) {
            fail("gzip data zlib cannot decode (status " + std::to_string(status) + ")");
        } else if (produced == 0 && input_.empty() && input_ended_) {
            fail("truncated gzip data: the stream ends inside member " + std::to_string(members_ + 1));
        }
        if (produced > 0) return {output_.data(), produced};
    }
}

}  // namespace data_prep
