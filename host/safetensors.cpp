#include "host/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "host/checkpoint.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is copied as is: little-endian hosts only");

namespace safetensors {
namespace {

using Json = nlohmann::ordered_json;

struct DTypeEntry {
    DType dtype;
    const char* name;
    int bytes;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},   {DType::I8, "I8", 1},     {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::I16, "I16", 2}, {DType::U16, "U16", 2}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I32, "I32", 4}, {DType::U32, "U32", 4}, {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},   {DType::I64, "I64", 8}, {DType::U64, "U64", 8},
};

const DTypeEntry& entry_of(DType dtype) {
    for (const DTypeEntry& entry : kDTypes)
        if (entry.dtype == dtype) return entry;
    throw std::logic_error("unknown safetensors dtype");
}

// Element count of `shape`, or -1 when a dimension is negative or the product (times 8 bytes)
// would overflow.
int64_t checked_numel(const std::vector<int64_t>& shape) {
    int64_t count = 1;
    for (int64_t dim : shape) {
        if (dim < 0) return -1;
        if (dim != 0 && count > std::numeric_limits<int64_t>::max() / 8 / dim) return -1;
        count *= dim;
    }
    return count;
}

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string text = "[";
    for (size_t i = 0; i < shape.size(); i++) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
}

struct FileCloser {
    void operator()(std::FILE* file) const { std::fclose(file); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

FilePtr open_for_reading(const std::string& path) {
    FilePtr file(std::fopen(path.c_str(), "rb"));
    if (!file) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    return file;
}

void read_exactly(std::FILE* file, const std::string& path, uint64_t offset, void* dst, size_t bytes) {
    if (fseeko(file, static_cast<off_t>(offset), SEEK_SET) != 0)
        throw std::runtime_error("cannot seek in " + path + ": " + std::strerror(errno));
    if (std::fread(dst, 1, bytes, file) != bytes)
        throw std::runtime_error("cannot read " + path + ": " +
                                 (std::ferror(file) ? std::strerror(errno) : "the file ended early"));
}

// The header as JSON; rejects duplicate keys at any depth (nlohmann would keep the last one).
Json parse_header(const std::string& text, const std::string& where) {
    std::vector<std::set<std::string>> keys_by_depth;
    std::string duplicate;
    auto watch = [&](int, Json::parse_event_t event, Json& parsed) {
        if (event == Json::parse_event_t::object_start) keys_by_depth.emplace_back();
        else if (event == Json::parse_event_t::object_end) keys_by_depth.pop_back();
        else if (event == Json::parse_event_t::key && !keys_by_depth.back().insert(parsed.get<std::string>()).second &&
                 duplicate.empty())
            duplicate = parsed.get<std::string>();
        return true;
    };
    Json header;
    try {
        header = Json::parse(text, watch);
    } catch (const Json::exception& e) {
        throw std::runtime_error(where + " is not valid JSON: " + e.what());
    }
    if (!duplicate.empty()) throw std::runtime_error(where + " has the key \"" + duplicate + "\" twice");
    if (!header.is_object()) throw std::runtime_error(where + " is not a JSON object");
    return header;
}

uint64_t unsigned_field(const Json& value, const std::string& what) {
    if (!value.is_number_unsigned()) throw std::runtime_error(what + " is not a non-negative integer: " + value.dump());
    return value.get<uint64_t>();
}

TensorInfo parse_tensor(const std::string& name, const Json& entry, const std::string& where) {
    const std::string tensor = where + ": tensor \"" + name + "\"";
    if (name.empty()) throw std::runtime_error(where + " names a tensor with the empty string");
    if (!entry.is_object()) throw std::runtime_error(tensor + " is not an object");
    for (const auto& [field, value] : entry.items())
        if (field != "dtype" && field != "shape" && field != "data_offsets")
            throw std::runtime_error(tensor + " has the unknown field \"" + field +
                                     "\" (expected dtype, shape and data_offsets)");
    for (const char* field : {"dtype", "shape", "data_offsets"})
        if (!entry.contains(field)) throw std::runtime_error(tensor + " lacks \"" + field + "\"");
    TensorInfo info;
    info.name = name;
    if (!entry["dtype"].is_string()) throw std::runtime_error(tensor + ": dtype is not a string");
    try {
        info.dtype = dtype_from_name(entry["dtype"].get<std::string>());
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error(tensor + ": " + e.what());
    }
    if (!entry["shape"].is_array()) throw std::runtime_error(tensor + ": shape is not an array");
    for (const Json& dim : entry["shape"]) {
        const uint64_t value = unsigned_field(dim, tensor + ": a dimension");
        if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            throw std::runtime_error(tensor + ": dimension " + std::to_string(value) + " is too large");
        info.shape.push_back(static_cast<int64_t>(value));
    }
    const Json& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2)
        throw std::runtime_error(tensor + ": data_offsets is not [begin, end]");
    info.begin = unsigned_field(offsets[0], tensor + ": data_offsets[0]");
    info.end = unsigned_field(offsets[1], tensor + ": data_offsets[1]");
    if (info.end < info.begin)
        throw std::runtime_error(tensor + ": data_offsets [" + std::to_string(info.begin) + ", " +
                                 std::to_string(info.end) + "] end before they begin");
    const int64_t numel = checked_numel(info.shape);
    if (numel < 0) throw std::runtime_error(tensor + ": shape " + shape_text(info.shape) + " is too large");
    const uint64_t expected = static_cast<uint64_t>(numel) * dtype_bytes(info.dtype);
    if (info.end - info.begin != expected)
        throw std::runtime_error(tensor + ": data_offsets [" + std::to_string(info.begin) + ", " +
                                 std::to_string(info.end) + "] span " + std::to_string(info.end - info.begin) +
                                 " bytes, but " + dtype_name(info.dtype) + " " + shape_text(info.shape) + " needs " +
                                 std::to_string(expected));
    return info;
}

}  // namespace

const char* dtype_name(DType dtype) { return entry_of(dtype).name; }
int dtype_bytes(DType dtype) { return entry_of(dtype).bytes; }

DType dtype_from_name(const std::string& name) {
    std::string known;
    for (const DTypeEntry& entry : kDTypes) {
        if (name == entry.name) return entry.dtype;
        known += std::string(known.empty() ? "" : ", ") + entry.name;
    }
    throw std::invalid_argument("unknown dtype \"" + name + "\" (known: " + known + ")");
}

int64_t TensorInfo::numel() const { return checked_numel(shape); }

Reader::Reader(const std::string& path) : path_(path) {
    FilePtr file = open_for_reading(path);
    std::error_code error;
    const uint64_t file_size = std::filesystem::file_size(path, error);
    if (error) throw std::runtime_error("cannot read the size of " + path + ": " + error.message());
    if (file_size < 8)
        throw std::runtime_error(path + " is not a safetensors file: " + std::to_string(file_size) +
                                 " bytes, less than the 8-byte header length");
    uint64_t header_bytes = 0;
    read_exactly(file.get(), path, 0, &header_bytes, 8);
    if (header_bytes > kMaxHeaderBytes || header_bytes > file_size - 8)
        throw std::runtime_error(path + " is not a valid safetensors file: its header length " +
                                 std::to_string(header_bytes) + " exceeds " +
                                 (header_bytes > kMaxHeaderBytes ? "the format's limit of " + std::to_string(kMaxHeaderBytes)
                                                                 : "the file (" + std::to_string(file_size) + " bytes)"));
    if (header_bytes < 2) throw std::runtime_error(path + " has an empty safetensors header");
    std::string text(header_bytes, '\0');
    read_exactly(file.get(), path, 8, text.data(), header_bytes);
    const std::string where = path + "'s safetensors header";
    if (text[0] != '{') throw std::runtime_error(where + " does not start with '{'");
    const Json header = parse_header(text, where);
    data_start_ = 8 + header_bytes;

    for (const auto& [key, value] : header.items()) {
        if (key == "__metadata__") {
            if (!value.is_object()) throw std::runtime_error(where + ": __metadata__ is not an object");
            for (const auto& [meta_key, meta_value] : value.items()) {
                if (!meta_value.is_string())
                    throw std::runtime_error(where + ": __metadata__[\"" + meta_key + "\"] is not a string");
                metadata_[meta_key] = meta_value.get<std::string>();
            }
            continue;
        }
        tensors_.push_back(parse_tensor(key, value, where));
    }
    std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t covered = 0;
    for (const TensorInfo& tensor : tensors_) {
        if (tensor.begin != covered)
            throw std::runtime_error(where + ": tensor \"" + tensor.name + "\" starts at byte " +
                                     std::to_string(tensor.begin) + " of the data, but the tensors before it end at " +
                                     std::to_string(covered) +
                                     (tensor.begin < covered ? " (overlapping tensors)" : " (a gap)"));
        covered = tensor.end;
    }
    const uint64_t data_bytes = file_size - data_start_;
    if (covered != data_bytes)
        throw std::runtime_error(path + ": the tensors cover " + std::to_string(covered) +
                                 " bytes of data, but the file holds " + std::to_string(data_bytes) +
                                 (covered < data_bytes ? " (trailing bytes)" : " (the file is truncated)"));
}

const TensorInfo* Reader::find(const std::string& name) const {
    for (const TensorInfo& tensor : tensors_)
        if (tensor.name == name) return &tensor;
    return nullptr;
}

const TensorInfo& Reader::get(const std::string& name) const {
    if (const TensorInfo* tensor = find(name)) return *tensor;
    throw std::runtime_error(path_ + " has no tensor \"" + name + "\"");
}

std::vector<char> Reader::read_bytes(const TensorInfo& tensor) const {
    std::vector<char> bytes(tensor.end - tensor.begin);
    FilePtr file = open_for_reading(path_);
    read_exactly(file.get(), path_, data_start_ + tensor.begin, bytes.data(), bytes.size());
    return bytes;
}

void Reader::read_as_float32(const TensorInfo& tensor, float* dst) const {
    const int64_t count = tensor.numel();
    if (tensor.dtype == DType::F32) {
        FilePtr file = open_for_reading(path_);
        read_exactly(file.get(), path_, data_start_ + tensor.begin, dst, static_cast<size_t>(count) * 4);
        return;
    }
    if (tensor.dtype != DType::F16 && tensor.dtype != DType::BF16)
        throw std::runtime_error(path_ + ": tensor \"" + tensor.name + "\" is " + dtype_name(tensor.dtype) +
                                 "; expected a floating-point tensor (F32, F16 or BF16)");
    const std::vector<char> bytes = read_bytes(tensor);
    for (int64_t i = 0; i < count; i++) {
        uint16_t half;
        std::memcpy(&half, bytes.data() + 2 * i, 2);
        uint32_t bits;
        if (tensor.dtype == DType::BF16) {
            bits = uint32_t{half} << 16;
        } else {
            // IEEE binary16 -> binary32, exactly: sign, then zero / subnormal / normal / inf-NaN.
            const uint32_t sign = uint32_t{half & 0x8000u} << 16;
            const uint32_t exponent = (half >> 10) & 0x1F;
            uint32_t mantissa = half & 0x3FF;
            if (exponent == 0x1F) {
                bits = sign | 0x7F800000u | (mantissa << 13);
            } else if (exponent != 0) {
                bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
            } else if (mantissa == 0) {
                bits = sign;
            } else {
                int shift = 0;
                while (!(mantissa & 0x400)) {
                    mantissa <<= 1;
                    shift++;
                }
                bits = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((mantissa & 0x3FF) << 13);
            }
        }
        std::memcpy(dst + i, &bits, 4);
    }
}

void write_file(const std::string& path, const std::map<std::string, std::string>& metadata,
                const std::vector<TensorToWrite>& tensors) {
    Json header = Json::object();
    if (!metadata.empty()) {
        Json meta = Json::object();
        for (const auto& [key, value] : metadata) meta[key] = value;
        header["__metadata__"] = meta;
    }
    uint64_t offset = 0, largest = 0;
    for (const TensorToWrite& tensor : tensors) {
        if (tensor.name.empty() || tensor.name == "__metadata__" || header.contains(tensor.name))
            throw std::invalid_argument("cannot write " + path + ": tensor name \"" + tensor.name +
                                        "\" is empty, reserved or given twice");
        const int64_t numel = checked_numel(tensor.shape);
        if (numel < 0) throw std::invalid_argument("cannot write " + path + ": tensor \"" + tensor.name +
                                                   "\" has the shape " + shape_text(tensor.shape));
        const uint64_t bytes = static_cast<uint64_t>(numel) * dtype_bytes(tensor.dtype);
        header[tensor.name] = {{"dtype", dtype_name(tensor.dtype)}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
        largest = std::max(largest, bytes);
    }
    std::string text = header.dump();
    text.append((8 - (8 + text.size()) % 8) % 8, ' ');
    const uint64_t header_bytes = text.size();

    AtomicFileWriter file(path);
    file.write(&header_bytes, 8);
    file.write(text.data(), text.size());
    std::vector<char> buffer(largest);
    for (const TensorToWrite& tensor : tensors) {
        const size_t bytes = static_cast<size_t>(checked_numel(tensor.shape)) * dtype_bytes(tensor.dtype);
        if (bytes == 0) continue;
        tensor.fill(buffer.data());
        file.write(buffer.data(), bytes);
    }
    file.finish();
}

}  // namespace safetensors
