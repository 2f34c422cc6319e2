// safetensors files (Hugging Face's tensor format), written and read without Python.
//
// Layout: an 8-byte little-endian unsigned header length N, N bytes of UTF-8 JSON, then the data
// buffer. The JSON is an object: "__metadata__" (optional) maps strings to strings; every other
// key names a tensor {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]} with
// byte offsets into the data buffer. Tensors are little-endian, row-major. The writer pads the
// header with trailing spaces (0x20, which the format allows) so that the data buffer starts at a
// multiple of 8 bytes, and lays the tensors out back to back in the order given.
//
// The reader is strict, as the format asks: N at most 100,000,000 (the reference library's limit)
// and within the file; the header one JSON object (no duplicate keys, no other fields); known
// dtypes; every tensor's byte range exactly dtype size x element count; and the ranges tiling the
// data buffer with no gap, no overlap and nothing after the last one. Every error names the file.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace safetensors {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;

enum class DType { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

const char* dtype_name(DType dtype);  // "F32"
int dtype_bytes(DType dtype);
// Throws std::invalid_argument listing the known names.
DType dtype_from_name(const std::string& name);

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;  // empty: a scalar
    uint64_t begin = 0;          // byte range in the data buffer
    uint64_t end = 0;
    int64_t numel() const;
};

class Reader {
  public:
    // Reads and validates the header (not the data); throws std::runtime_error naming `path`.
    explicit Reader(const std::string& path);

    const std::string& path() const { return path_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in data-buffer order
    const TensorInfo* find(const std::string& name) const;
    // Throws std::runtime_error naming the file and the missing tensor.
    const TensorInfo& get(const std::string& name) const;
    uint64_t data_start() const { return data_start_; }  // 8 + N

    std::vector<char> read_bytes(const TensorInfo& tensor) const;
    // F32, F16 and BF16 widened exactly to float (numel() values); other dtypes throw.
    void read_as_float32(const TensorInfo& tensor, float* dst) const;

  private:
    std::string path_;
    std::map<std::string, std::string> metadata_;
    std::vector<TensorInfo> tensors_;
    uint64_t data_start_ = 0;
};

// One tensor for write_file: `fill` writes its dtype_bytes(dtype) x numel bytes (little-endian,
// row-major) into `dst`, so that a caller can produce each tensor when its turn comes.
struct TensorToWrite {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::function<void(void* dst)> fill;
};

// Writes `path` through "<path>.tmp" and a rename. Throws std::invalid_argument for an empty or
// duplicate name, "__metadata__" as a tensor name or a negative dimension; std::runtime_error
// naming the file on I/O errors.
void write_file(const std::string& path, const std::map<std::string, std::string>& metadata,
                const std::vector<TensorToWrite>& tensors);

}  // namespace safetensors
