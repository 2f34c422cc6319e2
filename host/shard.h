// Token shards: the on-disk format between data_prep and the trainer (llm.c-compatible).
// (Contract header: the implementation lives in shard.cpp.)
//
// Layout: a header of 256 little-endian int32, then the tokens.
//   header[0] = 20240520 (magic)   header[1] = 1 (uint16 tokens) or 2 (uint32 tokens)
//   header[2] = number of tokens
// Names: <dataset>_{train,val,test}_NNNNNN.bin. Writers write "<name>.tmp" and rename it when
// complete, so a file with the final name is always whole.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace shard {

constexpr int32_t kMagic = 20240520;
constexpr int32_t kVersionUint16 = 1;
constexpr int32_t kVersionUint32 = 2;
constexpr int kHeaderInts = 256;
constexpr size_t kHeaderBytes = kHeaderInts * sizeof(int32_t);
// header[2] is an int32, so one shard holds at most this many tokens.
constexpr int64_t kMaxTokensPerShard = INT32_MAX;

struct ShardInfo {
    std::string path;
    int32_t version = kVersionUint16;
    int64_t num_tokens = 0;
};

// Bytes per token of a shard version (2 or 4); throws std::invalid_argument for other versions.
size_t token_bytes(int32_t version);

// Validates the header against the file size; throws std::runtime_error naming the file and
// what is wrong (wrong magic, unknown version, count disagreeing with the size).
ShardInfo read_header(const std::string& path);

// Reads the whole shard (validated as above, and every id < vocab_size).
std::vector<uint32_t> read_tokens(const std::string& path, int vocab_size);

// Writes a whole shard atomically (tmp + rename). Throws on any I/O error, naming the file.
void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, int32_t version = kVersionUint16);

// Streams one shard to "<path>.tmp" and renames it to `path` in finish(), after the header
// holds the final count and the data reached the disk (fsync). Destroying a writer that was not
// finished (an error, an exception unwinding) removes the .tmp file, so no partial shard
// survives under either name. Any I/O error throws std::runtime_error naming the file and the
// system's reason (for example "No space left on device").
class ShardWriter {
  public:
    ShardWriter(std::string path, int32_t version = kVersionUint16);
    ~ShardWriter();
    ShardWriter(const ShardWriter&) = delete;
    ShardWriter& operator=(const ShardWriter&) = delete;

    // Appends tokens; each must fit the version's width (< 65536 for version 1).
    void append(const uint32_t* tokens, size_t count);
    void finish();

    int64_t num_tokens() const { return num_tokens_; }
    const std::string& path() const { return path_; }

  private:
    void write_bytes(const void* data, size_t bytes);

    std::string path_;
    std::string tmp_path_;
    int32_t version_;
    std::FILE* file_ = nullptr;
    int64_t num_tokens_ = 0;
    std::vector<uint8_t> staging_;  // tokens narrowed to the version's width before fwrite
};

// Files matching a glob pattern, sorted by name; throws if none match (naming the pattern).
std::vector<std::string> glob_files(const std::string& pattern);

}  // namespace shard
