// Token shard reading and writing (format in shard.h).
#include "host/shard.h"

#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "shards are little-endian and read with plain fread: port the I/O for big-endian hosts");

namespace shard {
namespace {

const char* const kHowToMake = "make shards with ./data_prep/prepare (see README)";

std::runtime_error io_error(const std::string& path, const std::string& what) {
    const int error = errno;
    const bool out_of_space = error == ENOSPC || error == EFBIG || error == EDQUOT;
    return std::runtime_error(path + ": " + what + ": " + std::strerror(error) +
                              (out_of_space ? " (free space or write somewhere else)" : ""));
}

struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
};
using UniqueFile = std::unique_ptr<std::FILE, FileCloser>;

UniqueFile open_for_reading(const std::string& path) {
    UniqueFile file(std::fopen(path.c_str(), "rb"));
    if (!file) throw io_error(path, "cannot open token shard");
    return file;
}

void read_exact(std::FILE* file, void* data, size_t bytes, const std::string& path) {
    if (std::fread(data, 1, bytes, file) != bytes) {
        if (std::ferror(file)) throw io_error(path, "read failed");
        throw std::runtime_error(path + ": file ended early (it changed while being read?)");
    }
}

}  // namespace

size_t token_bytes(int32_t version) {
    if (version == kVersionUint16) return sizeof(uint16_t);
    if (version == kVersionUint32) return sizeof(uint32_t);
    throw std::invalid_argument("unknown token shard version " + std::to_string(version) +
                                " (known: 1 = uint16 tokens, 2 = uint32 tokens)");
}

ShardInfo read_header(const std::string& path) {
    UniqueFile file = open_for_reading(path);
    struct stat st {};
    if (fstat(fileno(file.get()), &st) != 0) throw io_error(path, "cannot stat token shard");
    const int64_t file_bytes = st.st_size;
    if (file_bytes < static_cast<int64_t>(kHeaderBytes)) {
        throw std::runtime_error(path + ": " + std::to_string(file_bytes) +
                                 " bytes is too small for a token shard (its header alone is " +
                                 std::to_string(kHeaderBytes) + " bytes); " + kHowToMake);
    }
    int32_t header[kHeaderInts];
    read_exact(file.get(), header, kHeaderBytes, path);
    if (header[0] != kMagic) {
        throw std::runtime_error(path + ": wrong magic number " + std::to_string(header[0]) + " (expected " +
                                 std::to_string(kMagic) + "): not a token shard; " + kHowToMake);
    }
    ShardInfo info;
    info.path = path;
    info.version = header[1];
    info.num_tokens = header[2];
    if (info.version != kVersionUint16 && info.version != kVersionUint32) {
        throw std::runtime_error(path + ": unknown token shard version " + std::to_string(info.version) +
                                 " (this build reads 1 = uint16 tokens and 2 = uint32 tokens): the file is "
                                 "corrupt or from a newer tool; " + kHowToMake);
    }
    const int64_t expected_bytes = static_cast<int64_t>(kHeaderBytes) +
                                   info.num_tokens * static_cast<int64_t>(token_bytes(info.version));
    if (info.num_tokens < 0 || expected_bytes != file_bytes) {
        throw std::runtime_error(path + ": the header says " + std::to_string(info.num_tokens) +
                                 " tokens (a file of " + std::to_string(expected_bytes) + " bytes) but the file has " +
                                 std::to_string(file_bytes) + " bytes: it is truncated or corrupt; " + kHowToMake);
    }
    return info;
}

std::vector<uint32_t> read_tokens(const std::string& path, int vocab_size) {
    const ShardInfo info = read_header(path);
    UniqueFile file = open_for_reading(path);
    if (std::fseek(file.get(), static_cast<long>(kHeaderBytes), SEEK_SET) != 0) throw io_error(path, "seek failed");
    std::vector<uint32_t> tokens(static_cast<size_t>(info.num_tokens));
    if (info.version == kVersionUint32) {
        read_exact(file.get(), tokens.data(), tokens.size() * sizeof(uint32_t), path);
    } else {
        std::vector<uint16_t> narrow(tokens.size());
        read_exact(file.get(), narrow.data(), narrow.size() * sizeof(uint16_t), path);
        for (size_t i = 0; i < narrow.size(); i++) tokens[i] = narrow[i];
    }
    for (size_t i = 0; i < tokens.size(); i++) {
        if (tokens[i] >= static_cast<uint32_t>(vocab_size)) {
            throw std::runtime_error(path + ": token id " + std::to_string(tokens[i]) + " at position " +
                                     std::to_string(i) + " is outside the vocabulary (size " +
                                     std::to_string(vocab_size) +
                                     "): the shard was made with another tokenizer or is corrupt; " + kHowToMake);
        }
    }
    return tokens;
}

void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, int32_t version) {
    ShardWriter writer(path, version);
    writer.append(tokens.data(), tokens.size());
    writer.finish();
}

ShardWriter::ShardWriter(std::string path, int32_t version)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp"), version_(version) {
    token_bytes(version_);  // rejects unknown versions before a file is created
    file_ = std::fopen(tmp_path_.c_str(), "wb");
    if (!file_) throw io_error(tmp_path_, "cannot create token shard (is the directory writable?)");
    // A placeholder header (count 0) keeps the token offsets right; finish() writes the real one.
    const int32_t header[kHeaderInts] = {kMagic, version_, 0};
    write_bytes(header, kHeaderBytes);
}

ShardWriter::~ShardWriter() {
    if (file_) {
        std::fclose(file_);
        std::remove(tmp_path_.c_str());
    }
}

void ShardWriter::write_bytes(const void* data, size_t bytes) {
    if (std::fwrite(data, 1, bytes, file_) != bytes) throw io_error(tmp_path_, "write failed");
}

void ShardWriter::append(const uint32_t* tokens, size_t count) {
    if (!file_) throw std::logic_error(path_ + ": append after finish");
    if (num_tokens_ + static_cast<int64_t>(count) > kMaxTokensPerShard) {
        throw std::invalid_argument(path_ + ": more than " + std::to_string(kMaxTokensPerShard) +
                                    " tokens do not fit one shard (the header count is an int32)");
    }
    if (version_ == kVersionUint32) {
        write_bytes(tokens, count * sizeof(uint32_t));
    } else {
        staging_.resize(count * sizeof(uint16_t));
        uint16_t* narrow = reinterpret_cast<uint16_t*>(staging_.data());
        for (size_t i = 0; i < count; i++) {
            if (tokens[i] > UINT16_MAX) {
                throw std::invalid_argument(path_ + ": token id " + std::to_string(tokens[i]) +
                                            " does not fit a version-1 (uint16) shard; write version 2");
            }
            narrow[i] = static_cast<uint16_t>(tokens[i]);
        }
        write_bytes(narrow, count * sizeof(uint16_t));
    }
    num_tokens_ += static_cast<int64_t>(count);
}

void ShardWriter::finish() {
    if (!file_) throw std::logic_error(path_ + ": finish called twice");
    const int32_t header[kHeaderInts] = {kMagic, version_, static_cast<int32_t>(num_tokens_)};
    if (std::fseek(file_, 0, SEEK_SET) != 0) throw io_error(tmp_path_, "seek failed");
    write_bytes(header, kHeaderBytes);
    // Errors of buffered writes (a full disk) surface here at the latest; fsync before the
    // rename so that a crash cannot leave a final name pointing at data never written.
    if (std::fflush(file_) != 0) throw io_error(tmp_path_, "write failed");
    if (fsync(fileno(file_)) != 0) throw io_error(tmp_path_, "fsync failed");
    std::FILE* file = file_;
    file_ = nullptr;
    if (std::fclose(file) != 0) {
        std::remove(tmp_path_.c_str());
        throw io_error(tmp_path_, "close failed");
    }
    if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
        const int rename_errno = errno;
        std::remove(tmp_path_.c_str());
        errno = rename_errno;
        throw io_error(path_, "cannot rename " + tmp_path_ + " to its final name");
    }
}

std::vector<std::string> glob_files(const std::string& pattern) {
    glob_t matches{};
    const int status = glob(pattern.c_str(), 0, nullptr, &matches);  // glob sorts by name
    std::vector<std::string> files;
    if (status == 0) files.assign(matches.gl_pathv, matches.gl_pathv + matches.gl_pathc);
    globfree(&matches);
    if (status == GLOB_NOMATCH) {
        throw std::runtime_error("no files match '" + pattern + "' (check the path; " + kHowToMake + ")");
    }
    if (status != 0) throw std::runtime_error("cannot list files matching '" + pattern + "' (read error or out of memory)");
    return files;
}

}  // namespace shard
