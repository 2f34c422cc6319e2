// The optimizer/data state file of one rank (layout in host/checkpoint.h and StateFileFixedPart
// below).
#include "host/checkpoint.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <stdexcept>
#include <type_traits>

#include "host/checkpoint_io.h"
#include "host/crc32c.h"

namespace fs = std::filesystem;
using namespace checkpoint_io;

std::string state_file_path(const std::string& dir, int64_t step, int rank) {
    char rank_digits[16];
    std::snprintf(rank_digits, sizeof(rank_digits), "%05d", rank);
    return (fs::path(dir) / ("state_" + step_digits(step) + "_rank" + rank_digits + ".bin")).string();
}

namespace {

constexpr size_t kBufferNameBytes = 32;

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
