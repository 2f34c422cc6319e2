// What the checkpoint readers and writers share (host/checkpoint.cpp: the model file,
// host/checkpoint_state_file.cpp: the state files): the model shape as header ints, a file read
// in chunks with its CRC-32C, and the checks whose messages name the file and what to do.
// Internal to the checkpoint code; everything else uses host/checkpoint.h.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

#include "host/checkpoint.h"

namespace checkpoint_io {

constexpr int kShapeInts = 9;  // model header [2..10]
constexpr size_t kIoChunkBytes = size_t{64} << 20;

// The shape as the kShapeInts ints of a model header (state files hold the same ints).
void encode_shape(const ModelShape& shape, int32_t* ints);

// Rejects values no writer produces, so a corrupt header fails here rather than as a huge
// allocation later.
ModelShape decode_shape(const int32_t* ints, const std::string& path);

inline std::string errno_text() { return std::strerror(errno); }

class InputFile {
  public:
    explicit InputFile(const std::string& path) : path_(path) {
        file_ = std::fopen(path.c_str(), "rb");
        if (!file_) throw std::runtime_error("cannot open " + path + ": " + errno_text());
        std::error_code error;
        size_ = static_cast<int64_t>(std::filesystem::file_size(path, error));
        if (error) throw std::runtime_error("cannot read the size of " + path + ": " + error.message());
    }
    ~InputFile() { std::fclose(file_); }
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;

    int64_t size() const { return size_; }
    // False at end of file (a truncated file): callers say what they expected.
    bool try_read(void* data, size_t bytes) {
        char* cursor = static_cast<char*>(data);
        while (bytes > 0) {
            const size_t chunk = std::min(bytes, kIoChunkBytes);
            if (std::fread(cursor, 1, chunk, file_) != chunk) {
                if (std::ferror(file_)) throw std::runtime_error("cannot read " + path_ + ": " + errno_text());
                return false;
            }
            cursor += chunk;
            bytes -= chunk;
        }
        return true;
    }
    void read(void* data, size_t bytes, const char* what) {
        if (!try_read(data, bytes))
            throw std::runtime_error(path_ + " is truncated: it ends inside the " + std::string(what));
    }
    void seek(int64_t offset) {
        if (std::fseek(file_, static_cast<long>(offset), SEEK_SET) != 0)
            throw std::runtime_error("cannot seek in " + path_ + ": " + errno_text());
    }

  private:
    std::string path_;
    std::FILE* file_ = nullptr;
    int64_t size_ = 0;
};

// The magic says what a file is; a wrong one gets a message that says what was passed.
void check_magic(const std::string& path, int32_t magic, int32_t expected, const char* kind, const char* hint);

// The step as a file name has it: at least 8 digits.
std::string step_digits(int64_t step);

void require_header_step(int64_t step, const std::string& path);

// Throws naming `path` and `part` when the checksums differ.
void check_checksum(const std::string& path, const char* part, uint32_t stored, uint32_t computed);

// Reads `bytes` bytes in chunks into `dst` (null: a scratch buffer, dropped), extending `crc`.
void read_with_checksum(InputFile& file, char* dst, int64_t bytes, uint32_t& crc, const char* what);

}  // namespace checkpoint_io
