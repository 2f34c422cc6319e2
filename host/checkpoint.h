// Checkpoints: the model file (shape + fp32 weights in ParamLayout order, model/param_layout.h)
// and one optimizer/data state file per rank.
//
// Model file `model_SSSSSSSS.bin`: 256 little-endian int32, then every parameter as fp32 in
// ParamLayout order.
//   [0] 20261127 magic  [1] 2 version  [2] n_layer  [3] n_embd  [4] n_head  [5] max_seq_len
//   [6] vocab_size  [7] padded_vocab_size  [8] flags: bit0 learned_pos_emb, bit1 post_norm,
//   bit2 rotary_interleaved, bit3 scale_attn_by_inverse_layer_idx, bit4 fp32_residual
//   [9] rotary_dim  [10] rotary_base  [11] weight dtype (0 = fp32)  [12] step
//   [13] CRC-32C of the weights (every byte after the header)
//   [14] CRC-32C of the header's 1024 bytes with [14] taken as 0   [15..255] 0
//
// State file `state_SSSSSSSS_rankRRRRR.bin` (little-endian): int32 magic 20261128, int32
// version 2, then the fields of StateHeader in order (see checkpoint_state_file.cpp:
// StateFileFixedPart), then a descriptor per optimizer buffer (32-byte zero-padded name, int64
// count), then each buffer's count fp32 values. The fixed part holds two CRC-32Cs
// (host/crc32c.h): of the header (fixed part, checksums taken as 0, and descriptors) and of the
// buffers' values.
//
// Readers verify both checksums of a version-2 file; a damaged file is an error that names it
// and the part that fails (header, weights, optimizer buffers). Version-1 files (written before
// the checksums, and by dev/reference/gpt2_reference.py) are still read, without that check.
//
// Both are written to "<name>.tmp", flushed to disk and renamed, so a file with the final name
// is always complete; find_latest_checkpoint() only reports a step whose model file and every
// rank's state file exist, and locate_resume_checkpoint() falls back from a damaged one.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "host/dataloader.h"
#include "model/param_layout.h"

constexpr int32_t kModelFileMagic = 20261127;
constexpr int32_t kModelFileVersion = 2;  // 1: no checksums, still read
constexpr int32_t kStateFileMagic = 20261128;
constexpr int32_t kStateFileVersion = 2;  // 1: no checksums, still read
constexpr int kModelHeaderInts = 256;

// Throws std::runtime_error naming `path` and the first field where `in_file` differs from
// `expected`, with the flag that sets it: "checkpoint X has n_layer 12 but --n-layer 24 was given".
void check_model_shape(const std::string& path, const ModelShape& in_file, const ModelShape& expected);

// ---------------------------------------------------------------------------------------------
// A file written under "<path>.tmp": finish() flushes it to disk (fsync) and renames it into
// place, so a file under the final name is always complete. Destroyed unfinished, it removes
// the temporary file. Every failure throws naming the file (and suggests a full disk).
class AtomicFileWriter {
  public:
    explicit AtomicFileWriter(const std::string& path);
    ~AtomicFileWriter();
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
    void write(const void* data, size_t bytes);
    // Replaces `bytes` bytes at `offset` (< the bytes written so far); later writes append.
    void overwrite(int64_t offset, const void* data, size_t bytes);
    void finish();

  private:
    std::string path_;
    std::string tmp_path_;
    std::FILE* file_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Model file

struct ModelFileHeader {
    ModelShape shape;
    int64_t step = 0;
};

std::string model_file_path(const std::string& dir, int64_t step);

// Streams the weights of one model file (e.g. gathered chunk by chunk from ZeRO shards):
// write() any number of times in layout order, then commit() checks that exactly
// ParamLayout::total() floats came and renames the file into place.
class ModelFileWriter {
  public:
    ModelFileWriter(const std::string& path, const ModelShape& shape, int64_t step);
    void write(const float* values, int64_t count);
    void commit();

  private:
    std::string path_;
    AtomicFileWriter file_;
    std::array<int32_t, kModelHeaderInts> header_{};
    int64_t expected_ = 0;
    int64_t written_ = 0;
    uint32_t weights_checksum_ = 0;
};

// The whole parameter array at once: params (ParamLayout(shape).total()).
void write_model_file(const std::string& path, const ModelShape& shape, int64_t step, const float* params);

// Validates magic, version, the header's checksum, dtype and the file size against the shape.
// Errors name the file and say what it is instead when recognizable (a token shard, a state
// file).
ModelFileHeader read_model_header(const std::string& path);
// Bytes of a model file of this shape.
int64_t model_file_bytes(const ModelShape& shape);
// Reads params [offset, offset + count) after checking the file's shape against `expected`.
// Reads the whole file to verify the weights' checksum, which covers them all.
void read_model_params(const std::string& path, const ModelShape& expected, float* dst, int64_t offset,
                       int64_t count);
// Checks that a model file is whole and undamaged (header, size, both checksums) without
// keeping its weights; throws naming the file and the part that fails.
void verify_model_file(const std::string& path);
// The CRC-32C a version-2 header stores in [14]: of its kModelHeaderInts ints with [14] taken
// as 0 (for headers made by hand, e.g. in tests).
uint32_t model_header_checksum(const int32_t* header);

// ---------------------------------------------------------------------------------------------
// State file (one per rank)

// What a state file must agree with to continue the run it came from.
struct RunIdentity {
    ModelShape shape;
    int32_t rank = 0;
    int32_t world_size = 1;
    int32_t zero_stage = 0;
    uint64_t seed = 0;
};

struct StateHeader {
    RunIdentity identity;
    int64_t step = 0;                      // optimizer steps completed
    int64_t adam_step = 0;                 // AdamW updates applied (bias correction; fp16 skips some)
    std::array<uint64_t, 4> rng_state{};   // the trainer's host RNG (e.g. xoshiro256), opaque here
    double loss_scale = 1.0;               // fp16 dynamic loss scale (1 for bf16)
    int64_t clean_steps = 0;               // steps since the last overflow
    DataLoaderState train_loader;
};

struct ConstFloatBuffer {
    std::string name;   // up to 31 characters, e.g. "master", "adam_m", "adam_v"
    const float* data;
    int64_t count;
};
struct FloatBuffer {
    std::string name;
    float* data;
    int64_t count;
};

std::string state_file_path(const std::string& dir, int64_t step, int rank);
// Bytes of a state file holding buffers of these float counts.
int64_t state_file_bytes(const std::vector<int64_t>& buffer_floats);

void write_state_file(const std::string& path, const StateHeader& header, const std::vector<ConstFloatBuffer>& buffers);

// Checks magic, version, the header's checksum, size, the identity against `expected` (shape,
// rank, world size, ZeRO stage, seed) and each buffer's name and length, then fills `buffers`
// and checks their checksum. Returns the header.
StateHeader read_state_file(const std::string& path, const RunIdentity& expected, const std::vector<FloatBuffer>& buffers);
// Checks that a state file is whole and undamaged (header, size, both checksums), whatever run
// it belongs to; throws naming the file and the part that fails.
void verify_state_file(const std::string& path);

// ---------------------------------------------------------------------------------------------
// Finding checkpoints

struct CheckpointFiles {
    int64_t step = 0;
    std::string model_path;
    std::vector<std::string> state_paths;  // [rank]
};

// Every step in `dir` whose model file and state files of ranks 0..world_size-1 all exist, oldest
// first (none when there is no such directory).
std::vector<CheckpointFiles> find_checkpoints(const std::string& dir, int world_size);
// The newest of them; nullopt when there is none.
std::optional<CheckpointFiles> find_latest_checkpoint(const std::string& dir, int world_size);

// Given whether this process found its files of a checkpoint intact, whether every process did:
// with several processes, a logical AND over them (an all-reduce), so that all resume from the
// same step.
using AllRanksIntact = std::function<bool(bool this_rank_intact)>;

// What --resume names: "" -> nullopt; "auto" -> the newest intact checkpoint in out_dir, or
// nullopt to start fresh; a directory -> its newest intact one; a model_*.bin file -> that step
// (throws if it or a state file is missing; damage shows when it is read).
//
// "auto" and a directory skip a damaged checkpoint (a file that fails verify_model_file or
// verify_state_file) for the newest intact one before it, saying so on stderr; they throw,
// naming what failed, when checkpoints exist but none is intact (a fresh start would overwrite
// the run). Each process verifies the model file and, given `all_ranks_intact`, only its own
// state file (the callback combines the verdicts); without it, every rank's state file.
std::optional<CheckpointFiles> locate_resume_checkpoint(const std::string& resume, const std::string& out_dir,
                                                        int world_size, int rank = 0,
                                                        const AllRanksIntact& all_ranks_intact = nullptr);
