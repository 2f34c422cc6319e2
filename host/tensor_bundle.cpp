#include "host/tensor_bundle.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <type_traits>

// The format is little-endian and elements are copied to and from memory as they are.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "tensor bundles are read on little-endian hosts only");

namespace tensor_bundle {

namespace {

// Sanity limits of the reader: far above any real bundle, low enough that a corrupt header
// fails with a clear message instead of a huge allocation.
constexpr int32_t kMaxTensors = 1 << 20;
constexpr int32_t kMaxNameLength = 1 << 16;
constexpr int32_t kMaxDims = 16;

const char* const kHowToFix = " (expected a tensor bundle written by dev/reference/gpt2_reference.py --out DIR; "
                              "regenerate it)";

template <typename T> constexpr DType dtype_of() {
    if constexpr (std::is_same_v<T, float>) return DType::kFloat32;
    else if constexpr (std::is_same_v<T, int32_t>) return DType::kInt32;
    else {
        static_assert(std::is_same_v<T, double>, "bundle elements are float, int32_t or double");
        return DType::kFloat64;
    }
}

size_t element_size(DType dtype) { return dtype == DType::kFloat64 ? 8 : 4; }

// Sequential reads that know how many bytes are left, so a bad length is reported as such
// before anything is allocated for it.
class Reader {
  public:
    explicit Reader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
        if (!in_) fail(std::string("cannot open tensor bundle: ") + std::strerror(errno), false);
        in_.seekg(0, std::ios::end);
        size_ = static_cast<int64_t>(in_.tellg());
        in_.seekg(0, std::ios::beg);
    }

    int64_t position() const { return position_; }
    int64_t remaining() const { return size_ - position_; }

    void read(void* destination, int64_t bytes, const std::string& what) {
        if (bytes > remaining()) {
            fail("truncated: " + what + " needs " + std::to_string(bytes) + " bytes at offset " +
                 std::to_string(position_) + " but only " + std::to_string(remaining()) + " remain");
        }
        in_.read(static_cast<char*>(destination), bytes);
        if (!in_) fail("read error in " + what);
        position_ += bytes;
    }
    template <typename T> T read_scalar(const std::string& what) {
        T value{};
        read(&value, sizeof value, what);
        return value;
    }

    [[noreturn]] void fail(const std::string& what, bool add_hint = true) const {
        throw std::runtime_error(path_ + ": " + what + (add_hint ? kHowToFix : ""));
    }

  private:
    std::string path_;
    std::ifstream in_;
    int64_t size_ = 0;
    int64_t position_ = 0;
};

template <typename T> Tensor::Values read_values(Reader& reader, int64_t count, const std::string& what) {
    std::vector<T> values(static_cast<size_t>(count));
    reader.read(values.data(), count * static_cast<int64_t>(sizeof(T)), what);
    return values;
}

}  // namespace

const char* dtype_name(DType dtype) {
    switch (dtype) {
        case DType::kFloat32: return "float32";
        case DType::kInt32: return "int32";
        case DType::kFloat64: return "float64";
    }
    return "unknown";
}

std::string shape_string(const std::vector<int64_t>& shape) {
    std::ostringstream out;
    out << "(";
    for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
    out << ")";
    return out.str();
}

int64_t Tensor::element_count() const {
    int64_t count = 1;
    for (int64_t dim : shape) count *= dim;
    return count;
}

Bundle Bundle::load(const std::string& path) {
    Reader reader(path);
    const auto magic = reader.read_scalar<int32_t>("the magic number");
    if (magic != kMagic) {
        reader.fail("not a tensor bundle: magic " + std::to_string(magic) + ", expected " + std::to_string(kMagic));
    }
    const auto version = reader.read_scalar<int32_t>("the version");
    if (version != kVersion) {
        reader.fail("unsupported version " + std::to_string(version) + ", expected " + std::to_string(kVersion));
    }
    const auto count = reader.read_scalar<int32_t>("the tensor count");
    if (count < 0 || count > kMaxTensors) reader.fail("implausible tensor count " + std::to_string(count));

    Bundle bundle;
    bundle.path_ = path;
    for (int32_t t = 0; t < count; ++t) {
        const std::string which = "tensor #" + std::to_string(t);
        const auto name_length = reader.read_scalar<int32_t>("the name length of " + which);
        if (name_length <= 0 || name_length > kMaxNameLength) {
            reader.fail(which + " has an implausible name length " + std::to_string(name_length));
        }
        Tensor tensor;
        tensor.name.resize(static_cast<size_t>(name_length));
        reader.read(tensor.name.data(), name_length, "the name of " + which);
        if (tensor.name.find('\0') != std::string::npos) reader.fail(which + " has a NUL byte in its name");
        if (bundle.contains(tensor.name)) reader.fail("tensor \"" + tensor.name + "\" appears twice");

        const std::string named = "tensor \"" + tensor.name + "\"";
        const auto dtype_code = reader.read_scalar<int32_t>("the dtype of " + named);
        if (dtype_code < 0 || dtype_code > 2) {
            reader.fail(named + " has unknown dtype code " + std::to_string(dtype_code) +
                        " (0 float32, 1 int32, 2 float64)");
        }
        const auto dtype = static_cast<DType>(dtype_code);
        const auto ndim = reader.read_scalar<int32_t>("the rank of " + named);
        if (ndim < 0 || ndim > kMaxDims) reader.fail(named + " has an implausible rank " + std::to_string(ndim));
        tensor.shape.resize(static_cast<size_t>(ndim));
        reader.read(tensor.shape.data(), int64_t{8} * ndim, "the shape of " + named);

        // The element count is bounded by the bytes left before it is multiplied out, so that a
        // corrupt shape can neither overflow nor allocate.
        const int64_t max_elements = reader.remaining() / static_cast<int64_t>(element_size(dtype));
        int64_t elements = 1;
        for (int64_t dim : tensor.shape) {
            if (dim < 0) reader.fail(named + " has a negative dimension in shape " + shape_string(tensor.shape));
            if (dim != 0 && elements > max_elements / dim) {
                reader.fail("truncated: " + named + " of " + dtype_name(dtype) + " shape " +
                            shape_string(tensor.shape) + " needs more than the " +
                            std::to_string(reader.remaining()) + " bytes that remain");
            }
            elements *= dim;
        }
        const std::string data = "the data of " + named;
        switch (dtype) {
            case DType::kFloat32: tensor.values = read_values<float>(reader, elements, data); break;
            case DType::kInt32: tensor.values = read_values<int32_t>(reader, elements, data); break;
            case DType::kFloat64: tensor.values = read_values<double>(reader, elements, data); break;
        }
        bundle.append(std::move(tensor));
    }
    if (reader.remaining() != 0) {
        reader.fail(std::to_string(reader.remaining()) + " unexpected bytes after the last of " +
                    std::to_string(count) + " tensors");
    }
    return bundle;
}

const Tensor& Bundle::get(const std::string& name) const {
    const auto found = index_.find(name);
    if (found == index_.end()) {
        std::string present;
        for (const Tensor& tensor : tensors_) present += (present.empty() ? "" : ", ") + tensor.name;
        throw std::runtime_error((path_.empty() ? std::string("tensor bundle") : path_) + ": no tensor \"" + name +
                                 "\" (present: " + (present.empty() ? "none" : present) + ")" + kHowToFix);
    }
    return tensors_[found->second];
}

const Tensor& Bundle::checked(const std::string& name, const std::vector<int64_t>& shape) const {
    const Tensor& tensor = get(name);
    if (tensor.shape != shape) {
        throw std::runtime_error((path_.empty() ? std::string("tensor bundle") : path_) + ": tensor \"" + name +
                                 "\" has shape " + shape_string(tensor.shape) + ", expected " + shape_string(shape) +
                                 " (was the reference written for another model or batch? regenerate it with "
                                 "the same shape flags)");
    }
    return tensor;
}

template <typename T>
const std::vector<T>& Bundle::values(const std::string& name, const std::vector<int64_t>& shape) const {
    const Tensor& tensor = checked(name, shape);
    const auto* typed = std::get_if<std::vector<T>>(&tensor.values);
    if (!typed) {
        throw std::runtime_error((path_.empty() ? std::string("tensor bundle") : path_) + ": tensor \"" + name +
                                 "\" is " + dtype_name(tensor.dtype()) + ", expected " + dtype_name(dtype_of<T>()));
    }
    return *typed;
}

std::vector<double> Bundle::values_as_double(const std::string& name, const std::vector<int64_t>& shape) const {
    const Tensor& tensor = checked(name, shape);
    if (const auto* f32 = std::get_if<std::vector<float>>(&tensor.values)) return {f32->begin(), f32->end()};
    if (const auto* f64 = std::get_if<std::vector<double>>(&tensor.values)) return *f64;
    throw std::runtime_error((path_.empty() ? std::string("tensor bundle") : path_) + ": tensor \"" + name + "\" is " +
                             dtype_name(tensor.dtype()) + ", expected float32 or float64");
}

template <typename T> void Bundle::add(const std::string& name, std::vector<int64_t> shape, std::vector<T> values) {
    Tensor tensor{name, std::move(shape), std::move(values)};
    for (int64_t dim : tensor.shape) {
        if (dim < 0) {
            throw std::invalid_argument("tensor \"" + name + "\": negative dimension in " + shape_string(tensor.shape));
        }
    }
    const auto& stored = std::get<std::vector<T>>(tensor.values);
    if (static_cast<int64_t>(stored.size()) != tensor.element_count()) {
        throw std::invalid_argument("tensor \"" + name + "\": " + std::to_string(stored.size()) +
                                    " values do not fill shape " + shape_string(tensor.shape));
    }
    append(std::move(tensor));
}

void Bundle::append(Tensor tensor) {
    if (tensor.name.empty() || tensor.name.size() > static_cast<size_t>(kMaxNameLength) ||
        tensor.name.find('\0') != std::string::npos) {
        throw std::invalid_argument("tensor name \"" + tensor.name + "\" must be 1 to 65536 bytes without NUL");
    }
    if (contains(tensor.name)) throw std::invalid_argument("tensor \"" + tensor.name + "\" is already in the bundle");
    index_.emplace(tensor.name, tensors_.size());
    tensors_.push_back(std::move(tensor));
}

void Bundle::save(const std::string& path) const {
    const std::string temporary = path + ".tmp";
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(path + ": cannot create " + temporary + ": " + std::strerror(errno));
    const auto write = [&out](const void* data, size_t bytes) {
        out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
    };
    const auto write_int32 = [&write](int32_t value) { write(&value, sizeof value); };
    write_int32(kMagic);
    write_int32(kVersion);
    write_int32(static_cast<int32_t>(tensors_.size()));
    for (const Tensor& tensor : tensors_) {
        write_int32(static_cast<int32_t>(tensor.name.size()));
        write(tensor.name.data(), tensor.name.size());
        write_int32(static_cast<int32_t>(tensor.dtype()));
        write_int32(static_cast<int32_t>(tensor.shape.size()));
        write(tensor.shape.data(), tensor.shape.size() * sizeof(int64_t));
        std::visit([&write](const auto& values) { write(values.data(), values.size() * sizeof(values[0])); },
                   tensor.values);
    }
    out.close();
    if (!out) {
        std::remove(temporary.c_str());
        throw std::runtime_error(path + ": write failed (disk full?) while writing " + temporary);
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
        const int error = errno;
        std::remove(temporary.c_str());
        throw std::runtime_error(path + ": cannot rename " + temporary + " into place: " + std::strerror(error));
    }
}

template const std::vector<float>& Bundle::values<float>(const std::string&, const std::vector<int64_t>&) const;
template const std::vector<int32_t>& Bundle::values<int32_t>(const std::string&, const std::vector<int64_t>&) const;
template const std::vector<double>& Bundle::values<double>(const std::string&, const std::vector<int64_t>&) const;
template void Bundle::add<float>(const std::string&, std::vector<int64_t>, std::vector<float>);
template void Bundle::add<int32_t>(const std::string&, std::vector<int64_t>, std::vector<int32_t>);
template void Bundle::add<double>(const std::string&, std::vector<int64_t>, std::vector<double>);

}  // namespace tensor_bundle
