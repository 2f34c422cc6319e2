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
#include <string>
#include <vector>

namespace shard {

constexpr int32_t kMagic = 20240520;
constexpr int32_t kVersionUint16 = 1;
constexpr int32_t kVersionUint32 = 2;
constexpr int kHeaderInts = 256;
constexpr size_t kHeaderBytes = kHeaderInts * sizeof(int32_t);

struct ShardInfo {
    std::string path;
    int32_t version = kVersionUint16;
    int64_t num_tokens = 0;
};

// Validates the header against the file size; throws std::runtime_error naming the file and
// what is wrong (wrong magic, unknown version, count disagreeing with the size).
ShardInfo read_header(const std::string& path);

// Reads the whole shard (validated as above, and every id < vocab_size).
std::vector<uint32_t> read_tokens(const std::string& path, int vocab_size);

// Writes a whole shard atomically (tmp + rename). Throws on any I/O error, naming the file.
void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, int32_t version = kVersionUint16);

// Files matching a glob pattern, sorted by name; throws if none match (naming the pattern).
std::vector<std::string> glob_files(const std::string& pattern);

}  // namespace shard
