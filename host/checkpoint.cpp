// The model file (layout in host/checkpoint.h). State files: host/checkpoint_state_file.cpp;
// finding checkpoints to resume from: host/checkpoint_resume.cpp.
#include "host/checkpoint.h"

#include <array>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "host/checkpoint_io.h"
#include "host/crc32c.h"

namespace fs = std::filesystem;
using namespace checkpoint_io;

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
