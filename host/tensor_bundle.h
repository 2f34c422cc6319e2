// Tensor bundles: named tensors in one file. dev/reference/gpt2_reference.py writes the
// reference state (inputs, logits, loss, gradients, losses) as a bundle; test_gpt2cu reads it.
//
// Layout, all little-endian:
//   int32 magic = 20261129, int32 version = 1, int32 count; then per tensor:
//   int32 name_length, name bytes (UTF-8, no NUL), int32 dtype (0 float32, 1 int32, 2 float64),
//   int32 ndim, int64 dims[ndim], the elements in row-major order.
// Writers write "<path>.tmp" and rename it when complete, so a file with the final name is whole.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace tensor_bundle {

constexpr int32_t kMagic = 20261129;
constexpr int32_t kVersion = 1;

// The on-disk dtype code is the index of the element type in Tensor::Values.
enum class DType : int32_t { kFloat32 = 0, kInt32 = 1, kFloat64 = 2 };
const char* dtype_name(DType dtype);
std::string shape_string(const std::vector<int64_t>& shape);  // "(2, 3)"; "()" for a scalar

struct Tensor {
    using Values = std::variant<std::vector<float>, std::vector<int32_t>, std::vector<double>>;
    std::string name;
    std::vector<int64_t> shape;  // empty = scalar (one element)
    Values values;

    DType dtype() const { return static_cast<DType>(values.index()); }
    int64_t element_count() const;
};

class Bundle {
  public:
    // Reads and validates a whole bundle. Throws std::runtime_error naming the file and what is
    // wrong (unreadable, wrong magic or version, unknown dtype, bad shape, truncated, trailing
    // bytes, duplicate name).
    static Bundle load(const std::string& path);

    // The file this bundle was loaded from ("" for one built in memory); errors name it.
    const std::string& path() const { return path_; }
    const std::vector<Tensor>& tensors() const { return tensors_; }  // in file order
    bool contains(const std::string& name) const { return index_.count(name) != 0; }
    // Throws std::runtime_error naming the file, the missing tensor and the tensors present.
    const Tensor& get(const std::string& name) const;

    // The elements of `name`, checked to be of type T (float, int32_t or double) and of exactly
    // `shape`; throws std::runtime_error naming the file, the tensor, and expected vs. found.
    template <typename T>
    const std::vector<T>& values(const std::string& name, const std::vector<int64_t>& shape) const;
    // Any floating-point tensor widened to double (for comparisons indifferent to how the
    // reference stored it); int32 tensors are rejected like a dtype mismatch.
    std::vector<double> values_as_double(const std::string& name, const std::vector<int64_t>& shape) const;

    // Appends a tensor. Throws std::invalid_argument if the name is empty, contains NUL or is
    // already present, or if values.size() disagrees with the shape.
    template <typename T> void add(const std::string& name, std::vector<int64_t> shape, std::vector<T> values);

    // Writes the bundle to "<path>.tmp" and renames it to `path`. Throws std::runtime_error
    // naming the file on any I/O failure (and leaves no temporary behind).
    void save(const std::string& path) const;

  private:
    void append(Tensor tensor);
    const Tensor& checked(const std::string& name, const std::vector<int64_t>& shape) const;

    std::string path_;
    std::vector<Tensor> tensors_;
    std::map<std::string, size_t> index_;
};

}  // namespace tensor_bundle
