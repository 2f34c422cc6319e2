// Checkpoints: the model file (shape + fp32 weights in ParamLayout order, model/param_layout.h)
// and one optimizer/data state file per rank.
//
// Model file `model_SSSSSSSS.bin`: 256 little-endian int32, then every parameter as fp32 in
// ParamLayout order.
//   [0] 20261127 magic  [1] 1 version  [2] n_layer  [3] n_embd  [4] n_head  [5] max_seq_len
//   [6] vocab_size  [7] padded_vocab_size  [8] flags: bit0 learned_pos_emb, bit1 post_norm,
//   bit2 rotary_interleaved, bit3 scale_attn_by_inverse_layer_idx, bit4 fp32_residual
//   [9] rotary_dim  [10] rotary_base  [11] weight dtype (0 = fp32)  [12] step  [13..255] 0
//
// State file `state_SSSSSSSS_rankRRRRR.bin` (little-endian): int32 magic 20261128, int32
// version 1, then the fields of StateHeader in order (see checkpoint.cpp: write_state_file),
// then each optimizer buffer: 32-byte zero-padded name, int64 count, count fp32 values.
//
// Both are written to "<name>.tmp", flushed to disk and renamed, so a file with the final name
// is always complete; find_latest_checkpoint() only reports a step whose model file and every
// rank's state file exist.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "host/dataloader.h"
#include "model/param_layout.h"

constexpr int32_t kModelFileMagic = 20261127;
constexpr int32_t kModelFileVersion = 1;
constexpr int32_t kStateFileMagic = 20261128;
constexpr int32_t kStateFileVersion = 1;
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
    int64_t expected_ = 0;
    int64_t written_ = 0;
};

// The whole parameter array at once: params (ParamLayout(shape).total()).
void write_model_file(const std::string& path, const ModelShape& shape, int64_t step, const float* params);

// Validates magic, version, dtype and the file size against the shape. Errors name the file
// and say what it is instead when recognizable (a token shard, a state file).
ModelFileHeader read_model_header(const std::string& path);
// Bytes of a model file of this shape.
int64_t model_file_bytes(const ModelShape& shape);
// Reads params [offset, offset + count) after checking the file's shape against `expected`.
void read_model_params(const std::string& path, const ModelShape& expected, float* dst, int64_t offset,
                       int64_t count);

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

// Checks magic, version, size, the identity against `expected` (shape, rank, world size, ZeRO
// stage, seed) and each buffer's name and length, then fills `buffers`. Returns the header.
StateHeader read_state_file(const std::string& path, const RunIdentity& expected, const std::vector<FloatBuffer>& buffers);

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

// What --resume names: "" -> nullopt; "auto" -> the newest complete checkpoint in out_dir, or
// nullopt to start fresh; a directory -> its newest (throws if none); a model_*.bin file ->
// that step (throws if it or a state file is missing).
std::optional<CheckpointFiles> locate_resume_checkpoint(const std::string& resume, const std::string& out_dir,
                                                        int world_size);
