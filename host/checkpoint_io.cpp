#include "host/checkpoint_io.h"

#include <unistd.h>

#include <climits>
#include <vector>

#include "host/crc32c.h"
#include "host/model_limits.h"

namespace checkpoint_io {

namespace {

constexpr int32_t kShardMagic = 20240520;  // host/shard.h, named in messages about wrong files

enum ShapeFlag : int32_t {
    kLearnedPosEmb = 1 << 0,
    kPostNorm = 1 << 1,
    kRotaryInterleaved = 1 << 2,
    kScaleAttnByInverseLayerIdx = 1 << 3,
    kFp32Residual = 1 << 4,
};

std::string hex32(uint32_t value) {
    char text[16];
    std::snprintf(text, sizeof(text), "0x%08x", value);
    return text;
}

}  // namespace

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

void check_checksum(const std::string& path, const char* part, uint32_t stored, uint32_t computed) {
    if (stored == computed) return;
    throw std::runtime_error(path + ": the " + part + " fail their checksum (CRC-32C stored " + hex32(stored) +
                             ", computed " + hex32(computed) +
                             "): the file is damaged (on disk or in a copy). Use another checkpoint; --resume auto "
                             "falls back to the newest intact one");
}

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

}  // namespace checkpoint_io

using checkpoint_io::errno_text;
using checkpoint_io::kIoChunkBytes;

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
