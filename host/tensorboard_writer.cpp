#include "host/tensorboard_writer.h"

#include "host/crc32c.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "event files are little-endian; values are copied as they are");

namespace tensorboard {
namespace {

// Protocol buffer encoding: a field key is (number << 3) | wire type.
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t value) {
    while (value >= 0x80) {
        out.push_back(static_cast<char>((value & 0x7F) | 0x80));
        value >>= 7;
    }
    out.push_back(static_cast<char>(value));
}
void put_key(std::string& out, uint32_t field, WireType type) { put_varint(out, (uint64_t{field} << 3) | type); }
template <typename T> void put_fixed(std::string& out, uint32_t field, T value) {
    put_key(out, field, sizeof(T) == 8 ? kFixed64 : kFixed32);
    out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}
void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
    put_key(out, field, kLengthDelimited);
    put_varint(out, bytes.size());
    out += bytes;
}

double now_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t masked_crc32c(const void* data, size_t bytes) {
    const uint32_t crc = crc32c_extend(0, data, bytes);
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

std::string record(const std::string& data) {
    const uint64_t length = data.size();
    const uint32_t length_crc = masked_crc32c(&length, sizeof(length));
    const uint32_t data_crc = masked_crc32c(data.data(), data.size());
    std::string out;
    out.append(reinterpret_cast<const char*>(&length), 8);
    out.append(reinterpret_cast<const char*>(&length_crc), 4);
    out += data;
    out.append(reinterpret_cast<const char*>(&data_crc), 4);
    return out;
}

std::string file_version_event(double wall_time) {
    std::string event;
    put_fixed(event, 1, wall_time);
    put_bytes(event, 3, "brain.Event:2");
    return event;
}

std::string scalar_event(double wall_time, int64_t step, const std::string& tag, float value) {
    std::string summary_value;
    put_bytes(summary_value, 1, tag);
    put_fixed(summary_value, 2, value);
    std::string summary;
    put_bytes(summary, 1, summary_value);
    std::string event;
    put_fixed(event, 1, wall_time);
    put_key(event, 2, kVarint);
    put_varint(event, static_cast<uint64_t>(step));  // int64: negative steps as ten-byte two's complement
    put_bytes(event, 5, summary);
    return event;
}

}  // namespace tensorboard

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    if (error) throw std::runtime_error("cannot create the TensorBoard directory " + dir + ": " + error.message());
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    const double start = tensorboard::now_seconds();
    const std::string base = (std::filesystem::path(dir) / ("events.out.tfevents." +
                              std::to_string(static_cast<int64_t>(start)) + "." + host)).string();
    for (int attempt = 0; !file_; attempt++) {
        path_ = attempt == 0 ? base : base + "." + std::to_string(attempt);
        file_ = std::fopen(path_.c_str(), "wbx");  // never append to another writer's file
        if (!file_ && errno != EEXIST)
            throw std::runtime_error("cannot create the TensorBoard event file " + path_ + ": " + std::strerror(errno));
    }
    write_record(tensorboard::file_version_event(start));
    flush();
}

TensorBoardWriter::~TensorBoardWriter() {
    if (file_) std::fclose(file_);
}

void TensorBoardWriter::scalar(const std::string& tag, int64_t step, double value) {
    write_record(tensorboard::scalar_event(tensorboard::now_seconds(), step, tag, static_cast<float>(value)));
}

void TensorBoardWriter::flush() {
    if (std::fflush(file_) != 0)
        throw std::runtime_error("cannot write the TensorBoard event file " + path_ + ": " + std::strerror(errno));
}

void TensorBoardWriter::write_record(const std::string& data) {
    const std::string bytes = tensorboard::record(data);
    if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size())
        throw std::runtime_error("cannot write the TensorBoard event file " + path_ + ": " + std::strerror(errno) +
                                 " (is the disk full?)");
}
