#include "host/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <type_traits>

#include "host/model_limits.h"
#include "host/crc32c.h"

namespace fs = std::filesystem;

namespace {

constexpr int32_t kShardMagic = 20240520;  // host/shard.h, named in messages about wrong files
constexpr int kShapeInts = 9;              // model header [2..10]
constexpr size_t kBufferNameBytes = 32;
constexpr size_t kIoChunkBytes = size_t{64} << 20;

enum ShapeFlag : int32_t {
    kLearnedPosEmb = 1 << 0,
    kPostNorm = 1 << 1,
    kRotaryInterleaved = 1 << 2,
    kScaleAttnByInverseLayerIdx = 1 << 3,
    kFp32Residual = 1 << 4,
};

void encode_shape(const ModelShape& shape, int32_t* ints) {
    int32_t flags = 0;
    if (shape.learned_pos_emb) flags |= kLearnedPosEmb;
    if (shape.post_norm) flags |= kPostNorm;
    if (shape.rotary_interleaved) flags |= kRotaryInterleaved;
    if (shape.scale_attn_by_inverse_layer_idx) flags |= kScaleAttnByInverseLayerIdx;
    if (shape.fp32_residual) flags |= kFp32Residual;
    const int32_t values[kShapeInts] = {shape.n_layer,           shape.n_embd,     shape.n_head,
                                        shape.max_seq_len,       shape.vocab_size, shape.padded_vocab_size,
                                        flags,                   shape.rotary_dim, shape.rotary_base};
    std::memcpy(ints, values, sizeof(values));
}

// Rejects values no writer produces, so a corrupt header fails here rather than as a huge
// allocation later.
ModelShape decode_shape(const int32_t* ints, const std::string& path) {
    ModelShape shape;
    shape.n_layer = ints[0];
    shape.n_embd = ints[1];
    shape.n_head = ints[2];
    shape.max_seq_len = ints[3];
    shape.vocab_size = ints[4];
    shape.padded_vocab_size = ints[5];
    const int32_t flags = ints[6];
    shape.learned_pos_emb = flags & kLearnedPosEmb;
    shape.post_norm = flags & kPostNorm;
    shape.rotary_interleaved = flags & kRotaryInterleaved;
    shape.scale_attn_by_inverse_layer_idx = flags & kScaleAttnByInverseLayerIdx;
    shape.fp32_residual = flags & kFp32Residual;
    shape.rotary_dim = ints[7];
    shape.rotary_base = ints[8];
    const auto in_range = [&](const char* field, int64_t value, int64_t lo, int64_t hi) {
        if (value < lo || value > hi)
            throw std::runtime_error(path + " has a corrupt model header: " + field + " " + std::to_string(value) +
                                     " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    };
    using namespace model_limits;
    in_range("n_layer", shape.n_layer, 1, kMaxLayers);
    in_range("n_embd", shape.n_embd, 1, kMaxEmbd);
    in_range("n_head", shape.n_head, 1, kMaxHeads);
    in_range("max_seq_len", shape.max_seq_len, 1, kMaxSeqLen);
    in_range("vocab_size", shape.vocab_size, 1, kMaxVocab);
    in_range("padded_vocab_size", shape.padded_vocab_size, shape.vocab_size,
             int64_t{shape.vocab_size} + kMaxPadMultiple - 1);
    const bool sane = shape.n_embd % shape.n_head == 0 && (flags & ~0x1F) == 0 && shape.rotary_dim >= 0 &&
                      shape.rotary_dim <= shape.n_embd / shape.n_head && shape.rotary_base > 0;
    if (!sane) throw std::runtime_error(path + " has a corrupt model header (impossible shape values)");
    return shape;
}

std::string errno_text() { return std::strerror(errno); }

class InputFile {
  public:
    explicit InputFile(const std::string& path) : path_(path) {
        file_ = std::fopen(path.c_str(), "rb");
        if (!file_) throw std::runtime_error("cannot open " + path + ": " + errno_text());
        std::error_code error;
        size_ = static_cast<int64_t>(fs::file_size(path, error));
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
void check_magic(const std::string& path, int32_t magic, int32_t expected, const char* kind, const char* hint) {
    if (magic == expected) return;
    std::string what;
    if (magic == kShardMagic) what = " (it is a token shard)";
    else if (magic == kModelFileMagic) what = " (it is a model file, model_SSSSSSSS.bin)";
    else if (magic == kStateFileMagic) what = " (it is an optimizer state file, state_SSSSSSSS_rankRRRRR.bin)";
    throw std::runtime_error(path + " is not " + kind + what + ": magic " + std::to_string(magic) + ", expected " +
                             std::to_string(expected) + ". " + hint);
}

std::string step_digits(int64_t step) {
    char digits[32];
    std::snprintf(digits, sizeof(digits), "%08lld", static_cast<long long>(step));
    return digits;
}

void require_header_step(int64_t step, const std::string& path) {
    if (step < 0 || step > INT32_MAX)
        throw std::invalid_argument("cannot write " + path + ": step " + std::to_string(step) +
                                    " does not fit the header's int32");
}

std::string hex32(uint32_t value) {
    char text[16];
    std::snprintf(text, sizeof(text), "0x%08x", value);
    return text;
}

void check_checksum(const std::string& path, const char* part, uint32_t stored, uint32_t computed) {
    if (stored == computed) return;
    throw std::runtime_error(path + ": the " + part + " fail their checksum (CRC-32C stored " + hex32(stored) +
                             ", computed " + hex32(computed) +
                             "): the file is damaged (on disk or in a copy). Use another checkpoint; --resume auto "
                             "falls back to the newest intact one");
}

// Reads `bytes` bytes in chunks into `dst` (null: a scratch buffer, dropped), extending `crc`.
void read_with_checksum(InputFile& file, char* dst, int64_t bytes, uint32_t& crc, const char* what) {
    std::vector<char> scratch;
    while (bytes > 0) {
        const size_t chunk = static_cast<size_t>(std::min<int64_t>(bytes, kIoChunkBytes));
        char* target = dst;
        if (!target) {
            scratch.resize(chunk);
            target = scratch.data();
        }
        file.read(target, chunk, what);
        crc = crc32c_extend(crc, target, chunk);
        if (dst) dst += chunk;
        bytes -= static_cast<int64_t>(chunk);
    }
}

}  // namespace

void check_model_shape(const std::string& path, const ModelShape& in_file, const ModelShape& expected) {
    auto number = [&](const char* field, int64_t file_value, int64_t run_value, const char* flag) {
        if (file_value != run_value)
            throw std::runtime_error("checkpoint " + path + " has " + field + " " + std::to_string(file_value) +
                                     " but this run has " + std::to_string(run_value) + " (" + flag + ")");
    };
    auto flag = [&](const char* field, bool file_value, bool run_value, const char* option) {
        if (file_value != run_value)
            throw std::runtime_error("checkpoint " + path + " has " + field + " " + (file_value ? "on" : "off") +
                                     " but this run has it " + (run_value ? "on" : "off") + " (" + option + " " +
                                     (run_value ? "1" : "0") + ")");
    };
    number("n_layer", in_file.n_layer, expected.n_layer, "--n-layer");
    number("n_embd", in_file.n_embd, expected.n_embd, "--n-embd");
    number("n_head", in_file.n_head, expected.n_head, "--n-head");
    number("max_seq_len", in_file.max_seq_len, expected.max_seq_len, "--max-seq-len");
    number("vocab_size", in_file.vocab_size, expected.vocab_size, "--vocab-size");
    number("padded_vocab_size", in_file.padded_vocab_size, expected.padded_vocab_size,
           "set by --vocab-size and --pad-vocab-to");
    flag("learned_pos_emb", in_file.learned_pos_emb, expected.learned_pos_emb, "--learned-pos-emb");
    flag("post_norm", in_file.post_norm, expected.post_norm, "--post-norm");
    flag("rotary_interleaved", in_file.rotary_interleaved, expected.rotary_interleaved, "--rotary-interleaved");
    flag("scale_attn_by_inverse_layer_idx", in_file.scale_attn_by_inverse_layer_idx,
         expected.scale_attn_by_inverse_layer_idx, "--scale-attn-by-inverse-layer-idx");
    flag("fp32_residual", in_file.fp32_residual, expected.fp32_residual, "--fp32-residual");
    number("rotary_dim", in_file.rotary_dim, expected.rotary_dim, "set by --rotary-fraction");
    number("rotary_base", in_file.rotary_base, expected.rotary_base, "--rotary-base");
}

// ---------------------------------------------------------------------------------------------
// Model file

std::string model_file_path(const std::string& dir, int64_t step) {
    return (fs::path(dir) / ("model_" + step_digits(step) + ".bin")).string();
}


// ---------------------------------------------------------------------------------------------
// Atomic writes

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path), tmp_path_(path + ".tmp") {
    file_ = std::fopen(tmp_path_.c_str(), "wb");
    if (!file_) throw std::runtime_error("cannot create " + tmp_path_ + ": " + errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
    if (file_) {
        std::fclose(file_);
        std::remove(tmp_path_.c_str());
    }
}

void AtomicFileWriter::write(const void* data, size_t bytes) {
    if (!file_) throw std::logic_error("write to " + path_ + " after finish()");
    const char* cursor = static_cast<const char*>(data);
    while (bytes > 0) {
        const size_t chunk = std::min(bytes, kIoChunkBytes);
        if (std::fwrite(cursor, 1, chunk, file_) != chunk)
            throw std::runtime_error("cannot write " + tmp_path_ + ": " + errno_text() + " (is the disk full?)");
        cursor += chunk;
        bytes -= chunk;
    }
}

void AtomicFileWriter::overwrite(int64_t offset, const void* data, size_t bytes) {
    if (!file_) throw std::logic_error("overwrite in " + path_ + " after finish()");
    if (std::fseek(file_, static_cast<long>(offset), SEEK_SET) != 0)
        throw std::runtime_error("cannot seek in " + tmp_path_ + ": " + errno_text());
    write(data, bytes);
    if (std::fseek(file_, 0, SEEK_END) != 0) throw std::runtime_error("cannot seek in " + tmp_path_ + ": " + errno_text());
}

void AtomicFileWriter::finish() {
    if (!file_) throw std::logic_error("finish() of " + path_ + " twice");
    bool ok = std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
    std::string reason = ok ? "" : errno_text();
    if (std::fclose(file_) != 0 && ok) {
        ok = false;
        reason = errno_text();
    }
    file_ = nullptr;
    if (!ok) {
        std::remove(tmp_path_.c_str());
        throw std::runtime_error("cannot write " + tmp_path_ + ": " + reason + " (is the disk full?)");
    }
    if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
        reason = errno_text();
        std::remove(tmp_path_.c_str());
        throw std::runtime_error("cannot rename " + tmp_path_ + " to " + path_ + ": " + reason);
    }
}

// ---------------------------------------------------------------------------------------------
// Model file

ModelFileWriter::ModelFileWriter(const std::string& path, const ModelShape& shape, int64_t step)
    : path_(path), file_(path), expected_(ParamLayout(shape, 0.0).total()) {
    require_header_step(step, path);
    header_[0] = kModelFileMagic;
    header_[1] = kModelFileVersion;
    encode_shape(shape, header_.data() + 2);
    header_[11] = 0;  // weights stored as fp32
    header_[12] = static_cast<int32_t>(step);
    file_.write(header_.data(), sizeof(header_));  // the checksums follow in commit()
}

void ModelFileWriter::write(const float* values, int64_t count) {
    if (count < 0 || written_ + count > expected_)
        throw std::logic_error("writing " + path_ + ": " + std::to_string(written_ + count) +
                               " floats exceed the model's " + std::to_string(expected_));
    const size_t bytes = static_cast<size_t>(count) * sizeof(float);
    file_.write(values, bytes);
    weights_checksum_ = crc32c_extend(weights_checksum_, values, bytes);
    written_ += count;
}

namespace {

constexpr int kWeightsChecksumInt = 13;
constexpr int kHeaderChecksumInt = 14;
constexpr int64_t kModelHeaderBytes = kModelHeaderInts * int64_t{sizeof(int32_t)};

struct ModelFileLayout {
    ModelFileHeader header;
    int32_t version = 0;
    uint32_t weights_checksum = 0;  // version 2
    int64_t params = 0;
};

// Reads and checks the header of an open model file (magic, version, header checksum, dtype,
// shape, size); leaves the file at the first weight.
ModelFileLayout read_model_layout(InputFile& file, const std::string& path) {
    int32_t header[kModelHeaderInts] = {};
    const bool complete = file.try_read(header, sizeof(header));
    if (file.size() < static_cast<int64_t>(sizeof(int32_t)))
        throw std::runtime_error(path + " is empty or truncated: not a model checkpoint");
    check_magic(path, header[0], kModelFileMagic, "a model checkpoint",
                "Pass a model_SSSSSSSS.bin written by train_gpt2cu.");
    if (!complete)
        throw std::runtime_error(path + " is truncated: " + std::to_string(file.size()) +
                                 " bytes, shorter than the model header (" + std::to_string(sizeof(header)) + ")");
    ModelFileLayout layout;
    layout.version = header[1];
    if (layout.version != 1 && layout.version != kModelFileVersion)
        throw std::runtime_error(path + " is model file version " + std::to_string(header[1]) +
                                 "; this train_gpt2cu reads versions 1 and " + std::to_string(kModelFileVersion));
    if (layout.version >= 2) {
        check_checksum(path, "header's 1024 bytes", static_cast<uint32_t>(header[kHeaderChecksumInt]),
                       model_header_checksum(header));
        layout.weights_checksum = static_cast<uint32_t>(header[kWeightsChecksumInt]);
    }
    if (header[11] != 0)
        throw std::runtime_error(path + " stores weights as dtype " + std::to_string(header[11]) +
                                 "; this train_gpt2cu reads fp32 (dtype 0) only");
    layout.header.shape = decode_shape(header + 2, path);
    layout.header.step = header[12];
    layout.params = ParamLayout(layout.header.shape, 0.0).total();
    const int64_t expected_bytes = model_file_bytes(layout.header.shape);
    if (file.size() != expected_bytes)
        throw std::runtime_error(path + " has " + std::to_string(file.size()) + " bytes but its header (n_layer " +
                                 std::to_string(layout.header.shape.n_layer) + ", n_embd " +
                                 std::to_string(layout.header.shape.n_embd) + ") describes " +
                                 std::to_string(expected_bytes) +
                                 (file.size() < expected_bytes ? ": the file is truncated" : ": the file is corrupt"));
    return layout;
}

// Reads every weight of a version-2 file, copying [offset, offset + count) to dst (null: none),
// and checks their checksum.
void read_verified_weights(InputFile& file, const std::string& path, const ModelFileLayout& layout, float* dst,
                           int64_t offset, int64_t count) {
    constexpr int64_t kFloatBytes = sizeof(float);
    uint32_t crc = 0;
    read_with_checksum(file, nullptr, offset * kFloatBytes, crc, "weights");
    read_with_checksum(file, reinterpret_cast<char*>(dst), count * kFloatBytes, crc, "weights");
    read_with_checksum(file, nullptr, (layout.params - offset - count) * kFloatBytes, crc, "weights");
    check_checksum(path, "weights", layout.weights_checksum, crc);
}

}  // namespace

void ModelFileWriter::commit() {
    if (written_ != expected_)
        throw std::logic_error("writing " + path_ + ": got " + std::to_string(written_) + " floats, the model has " +
                               std::to_string(expected_));
    header_[kWeightsChecksumInt] = static_cast<int32_t>(weights_checksum_);
    header_[kHeaderChecksumInt] = static_cast<int32_t>(model_header_checksum(header_.data()));
    file_.overwrite(0, header_.data(), sizeof(header_));
    file_.finish();
}

void write_model_file(const std::string& path, const ModelShape& shape, int64_t step, const float* params) {
    ModelFileWriter writer(path, shape, step);
    writer.write(params, ParamLayout(shape, 0.0).total());
    writer.commit();
}

int64_t model_file_bytes(const ModelShape& shape) {
    return kModelHeaderBytes + ParamLayout(shape, 0.0).total() * int64_t{sizeof(float)};
}

ModelFileHeader read_model_header(const std::string& path) {
    InputFile file(path);
    return read_model_layout(file, path).header;
}

void read_model_params(const std::string& path, const ModelShape& expected, float* dst, int64_t offset,
                       int64_t count) {
    InputFile file(path);
    const ModelFileLayout layout = read_model_layout(file, path);
    check_model_shape(path, layout.header.shape, expected);
    if (offset < 0 || count < 0 || offset + count > layout.params)
        throw std::out_of_range("reading " + path + ": parameters [" + std::to_string(offset) + ", " +
                                std::to_string(offset + count) + ") of " + std::to_string(layout.params));
    if (layout.version >= 2) {
        read_verified_weights(file, path, layout, dst, offset, count);
        return;
    }
    file.seek(kModelHeaderBytes + offset * int64_t{sizeof(float)});
    file.read(dst, static_cast<size_t>(count) * sizeof(float), "weights");
}

uint32_t model_header_checksum(const int32_t* header) {
    std::array<int32_t, kModelHeaderInts> copy;
    std::memcpy(copy.data(), header, sizeof(copy));
    copy[kHeaderChecksumInt] = 0;
    return crc32c_extend(0, copy.data(), sizeof(copy));
}

void verify_model_file(const std::string& path) {
    InputFile file(path);
    const ModelFileLayout layout = read_model_layout(file, path);
    if (layout.version >= 2) read_verified_weights(file, path, layout, nullptr, 0, 0);
}

// ---------------------------------------------------------------------------------------------
// State file

std::string state_file_path(const std::string& dir, int64_t step, int rank) {
    char rank_digits[16];
    std::snprintf(rank_digits, sizeof(rank_digits), "%05d", rank);
    return (fs::path(dir) / ("state_" + step_digits(step) + "_rank" + rank_digits + ".bin")).string();
}

namespace {

// Everything before the buffer descriptors, in file order. Version 1 had zeros where the
// checksums are.
struct StateFileFixedPart {
    int32_t magic;
    int32_t version;
    int32_t shape[kShapeInts];
    int32_t rank;
    int32_t world_size;
    int32_t zero_stage;
    uint32_t header_checksum;  // CRC-32C of this part (both checksums as 0) and the descriptors
    uint32_t unused;           // named so that no padding escapes the checksum
    uint64_t seed;
    int64_t step;
    int64_t adam_step;
    uint64_t rng_state[4];
    double loss_scale;
    int64_t clean_steps;
    DataLoaderState train_loader;
    int32_t num_buffers;
    uint32_t data_checksum;  // CRC-32C of every buffer's values, in file order
};
static_assert(std::is_trivially_copyable_v<StateFileFixedPart> && sizeof(StateFileFixedPart) == 192 &&
                  offsetof(StateFileFixedPart, header_checksum) == 56 && offsetof(StateFileFixedPart, seed) == 64 &&
                  offsetof(StateFileFixedPart, data_checksum) == 188,
              "the state file layout is fixed");

struct BufferDescriptor {
    char name[kBufferNameBytes];
    int64_t count;
};
static_assert(sizeof(BufferDescriptor) == 40, "the state file layout is fixed");

uint32_t state_header_checksum(StateFileFixedPart fixed, const std::vector<BufferDescriptor>& descriptors) {
    fixed.header_checksum = 0;
    fixed.data_checksum = 0;
    const uint32_t crc = crc32c_extend(0, &fixed, sizeof(fixed));
    return crc32c_extend(crc, descriptors.data(), descriptors.size() * sizeof(BufferDescriptor));
}

struct StateFileLayout {
    StateFileFixedPart fixed{};
    std::vector<BufferDescriptor> descriptors;
};

// Reads and checks everything before the buffers' values of an open state file: magic, version,
// the header checksum (version 2), and that the descriptors account for the file's size.
StateFileLayout read_state_layout(InputFile& file, const std::string& path) {
    StateFileLayout layout;
    StateFileFixedPart& fixed = layout.fixed;
    const bool complete = file.try_read(&fixed, sizeof(fixed));
    if (file.size() < static_cast<int64_t>(sizeof(int32_t)))
        throw std::runtime_error(path + " is empty or truncated: not an optimizer state file");
    check_magic(path, fixed.magic, kStateFileMagic, "an optimizer state file",
                "Pass the state_SSSSSSSS_rankRRRRR.bin files written by train_gpt2cu (resume with --resume).");
    if (!complete) throw std::runtime_error(path + " is truncated: it ends inside the state header");
    if (fixed.version != 1 && fixed.version != kStateFileVersion)
        throw std::runtime_error(path + " is state file version " + std::to_string(fixed.version) +
                                 "; this train_gpt2cu reads versions 1 and " + std::to_string(kStateFileVersion));
    const int64_t header_room = file.size() - static_cast<int64_t>(sizeof(fixed));
    if (fixed.num_buffers < 0 || fixed.num_buffers > header_room / static_cast<int64_t>(sizeof(BufferDescriptor)))
        throw std::runtime_error(path + " has a corrupt state header: it lists " + std::to_string(fixed.num_buffers) +
                                 " optimizer buffers, which do not fit its " + std::to_string(file.size()) + " bytes");
    layout.descriptors.resize(static_cast<size_t>(fixed.num_buffers));
    file.read(layout.descriptors.data(), layout.descriptors.size() * sizeof(BufferDescriptor), "buffer list");
    if (fixed.version >= 2)
        check_checksum(path, "header's bytes", fixed.header_checksum, state_header_checksum(fixed, layout.descriptors));
    int64_t expected_bytes = static_cast<int64_t>(sizeof(fixed) + layout.descriptors.size() * sizeof(BufferDescriptor));
    for (const BufferDescriptor& descriptor : layout.descriptors) {
        if (descriptor.count < 0 || descriptor.count > file.size() / int64_t{sizeof(float)})
            throw std::runtime_error(path + " has a corrupt state header: a buffer of " +
                                     std::to_string(descriptor.count) + " floats in a file of " +
                                     std::to_string(file.size()) + " bytes");
        expected_bytes += descriptor.count * int64_t{sizeof(float)};
        if (expected_bytes > file.size()) break;  // truncated; summing on could overflow
    }
    if (file.size() != expected_bytes)
        throw std::runtime_error(path + " has " + std::to_string(file.size()) + " bytes, its header describes " +
                                 std::to_string(expected_bytes) +
                                 (file.size() < expected_bytes ? ": the file is truncated" : ": the file is corrupt"));
    return layout;
}

// Reads the buffers' values (into `destinations`, or dropped where it is empty) and checks their
// checksum (version 2).
void read_state_values(InputFile& file, const std::string& path, const StateFileLayout& layout,
                       const std::vector<float*>& destinations) {
    uint32_t crc = 0;
    for (size_t i = 0; i < layout.descriptors.size(); ++i) {
        char* dst = destinations.empty() ? nullptr : reinterpret_cast<char*>(destinations[i]);
        read_with_checksum(file, dst, layout.descriptors[i].count * int64_t{sizeof(float)}, crc, "optimizer buffers");
    }
    if (layout.fixed.version >= 2) check_checksum(path, "optimizer buffers", layout.fixed.data_checksum, crc);
}

}  // namespace

int64_t state_file_bytes(const std::vector<int64_t>& buffer_floats) {
    int64_t bytes = static_cast<int64_t>(sizeof(StateFileFixedPart) + buffer_floats.size() * sizeof(BufferDescriptor));
    for (int64_t count : buffer_floats) bytes += count * int64_t{sizeof(float)};
    return bytes;
}

void write_state_file(const std::string& path, const StateHeader& header, const std::vector<ConstFloatBuffer>& buffers) {
    StateFileFixedPart fixed{};
    fixed.magic = kStateFileMagic;
    fixed.version = kStateFileVersion;
    encode_shape(header.identity.shape, fixed.shape);
    fixed.rank = header.identity.rank;
    fixed.world_size = header.identity.world_size;
    fixed.zero_stage = header.identity.zero_stage;
    fixed.seed = header.identity.seed;
    fixed.step = header.step;
    fixed.adam_step = header.adam_step;
    std::copy(header.rng_state.begin(), header.rng_state.end(), fixed.rng_state);
    fixed.loss_scale = header.loss_scale;
    fixed.clean_steps = header.clean_steps;
    fixed.train_loader = header.train_loader;
    fixed.num_buffers = static_cast<int32_t>(buffers.size());

    std::vector<BufferDescriptor> descriptors(buffers.size());
    for (size_t i = 0; i < buffers.size(); ++i) {
        if (buffers[i].name.empty() || buffers[i].name.size() >= kBufferNameBytes || buffers[i].count < 0)
            throw std::invalid_argument("state buffer name '" + buffers[i].name + "' must have 1 to " +
                                        std::to_string(kBufferNameBytes - 1) + " characters, count >= 0");
        std::memset(descriptors[i].name, 0, kBufferNameBytes);
        std::memcpy(descriptors[i].name, buffers[i].name.data(), buffers[i].name.size());
        descriptors[i].count = buffers[i].count;
    }
    for (const ConstFloatBuffer& buffer : buffers)
        fixed.data_checksum =
            crc32c_extend(fixed.data_checksum, buffer.data, static_cast<size_t>(buffer.count) * sizeof(float));
    fixed.header_checksum = state_header_checksum(fixed, descriptors);

    AtomicFileWriter file(path);
    file.write(&fixed, sizeof(fixed));
    file.write(descriptors.data(), descriptors.size() * sizeof(BufferDescriptor));
    for (const ConstFloatBuffer& buffer : buffers)
        file.write(buffer.data, static_cast<size_t>(buffer.count) * sizeof(float));
    file.finish();
}

StateHeader read_state_file(const std::string& path, const RunIdentity& expected, const std::vector<FloatBuffer>& buffers) {
    InputFile file(path);
    const StateFileLayout layout = read_state_layout(file, path);
    const StateFileFixedPart& fixed = layout.fixed;

    StateHeader header;
    header.identity.shape = decode_shape(fixed.shape, path);
    header.identity.rank = fixed.rank;
    header.identity.world_size = fixed.world_size;
    header.identity.zero_stage = fixed.zero_stage;
    header.identity.seed = fixed.seed;
    header.step = fixed.step;
    header.adam_step = fixed.adam_step;
    std::copy(std::begin(fixed.rng_state), std::end(fixed.rng_state), header.rng_state.begin());
    header.loss_scale = fixed.loss_scale;
    header.clean_steps = fixed.clean_steps;
    header.train_loader = fixed.train_loader;

    check_model_shape(path, header.identity.shape, expected.shape);
    if (fixed.world_size != expected.world_size)
        throw std::runtime_error(path + " was written by a run of " + std::to_string(fixed.world_size) +
                                 " process(es), this run has " + std::to_string(expected.world_size) +
                                 ": resume with the same number of processes");
    if (fixed.rank != expected.rank)
        throw std::runtime_error(path + " belongs to rank " + std::to_string(fixed.rank) + ", not rank " +
                                 std::to_string(expected.rank));
    if (fixed.zero_stage != expected.zero_stage)
        throw std::runtime_error(path + " was written with --zero-stage " + std::to_string(fixed.zero_stage) +
                                 " but this run has --zero-stage " + std::to_string(expected.zero_stage));
    if (fixed.seed != expected.seed)
        throw std::runtime_error(path + " was written with --seed " + std::to_string(fixed.seed) +
                                 " but this run has --seed " + std::to_string(expected.seed) +
                                 ": an exact resume needs the same seed");
    if (fixed.num_buffers != static_cast<int32_t>(buffers.size()))
        throw std::runtime_error(path + " holds " + std::to_string(fixed.num_buffers) +
                                 " optimizer buffers, this run expects " + std::to_string(buffers.size()));
    std::vector<float*> destinations;
    for (size_t i = 0; i < buffers.size(); ++i) {
        const BufferDescriptor& descriptor = layout.descriptors[i];
        const std::string name(descriptor.name, strnlen(descriptor.name, kBufferNameBytes));
        if (name != buffers[i].name)
            throw std::runtime_error(path + " holds buffer '" + name + "' where this run expects '" + buffers[i].name +
                                     "'");
        if (descriptor.count != buffers[i].count)
            throw std::runtime_error(path + " holds " + std::to_string(descriptor.count) + " floats of '" + name +
                                     "', this run needs " + std::to_string(buffers[i].count) +
                                     " (another model, number of processes or ZeRO stage?)");
        destinations.push_back(buffers[i].data);
    }
    read_state_values(file, path, layout, destinations);
    return header;
}

void verify_state_file(const std::string& path) {
    InputFile file(path);
    const StateFileLayout layout = read_state_layout(file, path);
    read_state_values(file, path, layout, {});
}

// ---------------------------------------------------------------------------------------------
// Finding checkpoints

namespace {

// The step of "model_<digits>.bin", or -1 for any other name.
int64_t model_file_step(const std::string& filename) {
    const std::string prefix = "model_", suffix = ".bin";
    if (filename.size() <= prefix.size() + suffix.size() || filename.compare(0, prefix.size(), prefix) != 0 ||
        filename.compare(filename.size() - suffix.size(), suffix.size(), suffix) != 0)
        return -1;
    const std::string digits = filename.substr(prefix.size(), filename.size() - prefix.size() - suffix.size());
    if (digits.size() > 12 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return -1;
    return std::stoll(digits);
}

CheckpointFiles checkpoint_files(const std::string& dir, int64_t step, int world_size) {
    CheckpointFiles files;
    files.step = step;
    files.model_path = model_file_path(dir, step);
    for (int rank = 0; rank < world_size; ++rank) files.state_paths.push_back(state_file_path(dir, step, rank));
    return files;
}

bool all_exist(const CheckpointFiles& files) {
    std::error_code error;
    if (!fs::is_regular_file(files.model_path, error)) return false;
    for (const std::string& path : files.state_paths)
        if (!fs::is_regular_file(path, error)) return false;
    return true;
}

}  // namespace

std::vector<CheckpointFiles> find_checkpoints(const std::string& dir, int world_size) {
    std::error_code error;
    if (!fs::is_directory(dir, error)) return {};
    std::vector<int64_t> steps;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
        const int64_t step = model_file_step(entry.path().filename().string());
        if (step >= 0) steps.push_back(step);
    }
    std::sort(steps.begin(), steps.end());
    std::vector<CheckpointFiles> complete;
    for (int64_t step : steps) {
        CheckpointFiles files = checkpoint_files(dir, step, world_size);
        if (all_exist(files)) complete.push_back(std::move(files));
    }
    return complete;
}

std::optional<CheckpointFiles> find_latest_checkpoint(const std::string& dir, int world_size) {
    std::vector<CheckpointFiles> complete = find_checkpoints(dir, world_size);
    if (complete.empty()) return std::nullopt;
    return std::move(complete.back());
}

namespace {

// What is wrong with the files of `files` this process checks (the model file, and its own or
// every rank's state file), or "" if they are intact.
std::string damage_of(const CheckpointFiles& files, int rank, bool every_state_file) {
    try {
        verify_model_file(files.model_path);
        if (every_state_file) {
            for (const std::string& path : files.state_paths) verify_state_file(path);
        } else {
            verify_state_file(files.state_paths.at(static_cast<size_t>(rank)));
        }
        return "";
    } catch (const std::exception& e) {
        return e.what();
    }
}

// The newest checkpoint in `dir` that every process finds intact; nullopt if `dir` holds none at
// all. Damage is reported on stderr (by the process that finds it; without `all_ranks_intact`
// every process checks everything, and rank 0 speaks).
std::optional<CheckpointFiles> newest_intact_checkpoint(const std::string& resume, const std::string& dir,
                                                        int world_size, int rank,
                                                        const AllRanksIntact& all_ranks_intact) {
    std::vector<CheckpointFiles> complete = find_checkpoints(dir, world_size);
    std::vector<std::string> damaged;
    for (auto files = complete.rbegin(); files != complete.rend(); ++files) {
        const std::string damage = damage_of(*files, rank, !all_ranks_intact);
        const bool intact = all_ranks_intact ? all_ranks_intact(damage.empty()) : damage.empty();
        const std::string step = std::to_string(files->step);
        if (intact) {
            if (!damaged.empty() && rank == 0)
                std::fprintf(stderr, "--resume %s: resuming from step %s, the newest intact checkpoint in %s\n",
                             resume.c_str(), step.c_str(), dir.c_str());
            return std::move(*files);
        }
        if (!damage.empty() && (all_ranks_intact || rank == 0))
            std::fprintf(stderr, "--resume %s: skipping the damaged checkpoint of step %s: %s\n", resume.c_str(),
                         step.c_str(), damage.c_str());
        damaged.push_back("step " + step + ": " + (damage.empty() ? "damaged on another process" : damage));
    }
    if (damaged.empty()) return std::nullopt;
    std::string list;
    for (const std::string& entry : damaged) list += "\n  " + entry;
    throw std::runtime_error("--resume " + resume + ": no intact checkpoint in " + dir + ", every one is damaged:" + list +
                             "\nRestore the files from a copy, or move them away to start the run afresh");
}

}  // namespace

std::optional<CheckpointFiles> locate_resume_checkpoint(const std::string& resume, const std::string& out_dir,
                                                        int world_size, int rank,
                                                        const AllRanksIntact& all_ranks_intact) {
    if (resume.empty()) return std::nullopt;
    if (resume == "auto") return newest_intact_checkpoint(resume, out_dir, world_size, rank, all_ranks_intact);
    std::error_code error;
    if (fs::is_directory(resume, error)) {
        std::optional<CheckpointFiles> files = newest_intact_checkpoint(resume, resume, world_size, rank, all_ranks_intact);
        if (!files)
            throw std::runtime_error("--resume " + resume + ": the directory holds no complete checkpoint (a model_SSSSSSSS.bin with state files for " +
                                     std::to_string(world_size) + " rank(s))");
        return files;
    }
    const fs::path model_path(resume);
    const int64_t step = model_file_step(model_path.filename().string());
    if (step < 0)
        throw std::runtime_error("--resume " + resume +
                                 ": expected 'auto', a run directory, or a model_SSSSSSSS.bin checkpoint file");
    if (!fs::is_regular_file(model_path, error)) throw std::runtime_error("--resume " + resume + ": no such file");
    const std::string dir = model_path.has_parent_path() ? model_path.parent_path().string() : ".";
    CheckpointFiles files = checkpoint_files(dir, step, world_size);
    files.model_path = resume;
    for (const std::string& path : files.state_paths)
        if (!fs::is_regular_file(path, error))
            throw std::runtime_error("--resume " + resume + ": the optimizer state file " + path +
                                     " is missing (written by a run with another number of processes, or interrupted)");
    return files;
}
