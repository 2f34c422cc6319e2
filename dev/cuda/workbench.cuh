// Shared scaffolding of the dev/cuda workbench programs: random inputs, poisoned outputs,
// relative-error checks against a CPU reference, event timing, and the PyTorch baselines.
//
// Each dev/cuda/<op>.cu is one standalone program: CPU reference, numbered kernel variants,
// validation of every variant on fresh random inputs, then a benchmark table. It exits nonzero
// when any validation fails, so `make test-gpu` can run them all.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/common.cuh"

namespace workbench {

// ---------------------------------------------------------------------------------------------
// Host/device buffers

template <typename T> T* device_alloc(size_t count) {
    T* ptr = nullptr;
    CUDA_CHECK(cudaMalloc(&ptr, count * sizeof(T)));
    return ptr;
}

// Fresh random values every call: a fast kernel must compute the same function on any input.
inline std::vector<float> random_vector(size_t count, std::mt19937_64& rng, float scale = 1.0f) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> values(count);
    for (float& v : values) v = normal(rng);
    return values;
}

// Uploads fp32 values as T; returns the values as T saw them (rounded), so that CPU references
// compute on exactly the inputs the GPU gets.
template <typename T> std::vector<float> upload_rounded(T* device, const std::vector<float>& values) {
    std::vector<T> converted(values.size());
    std::vector<float> rounded(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
        converted[i] = from_float<T>(values[i]);
        rounded[i] = to_float(converted[i]);
    }
    CUDA_CHECK(cudaMemcpy(device, converted.data(), values.size() * sizeof(T), cudaMemcpyHostToDevice));
    return rounded;
}

template <typename T> std::vector<float> download(const T* device, size_t count) {
    std::vector<T> raw(count);
    CUDA_CHECK(cudaMemcpy(raw.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<float> values(count);
    for (size_t i = 0; i < count; ++i) values[i] = to_float(raw[i]);
    return values;
}

// Uniform values in [-scale, scale) generated on the GPU from Philox(seed, element): benchmark-sized
// inputs (billions of elements) take seconds to generate on the CPU. Download what a CPU
// reference needs. Pick a fresh seed per run (e.g. from std::random_device).
template <typename T> __global__ void fill_uniform_kernel(T* out, size_t count, uint64_t seed, float scale) {
    const size_t group = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;  // 4 elements each
    if (group * 4 >= count) return;
    const uint4 bits = philox4x32_10(make_uint4(static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32), 0u, 0u),
                                     make_uint2(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)));
    const uint32_t words[4] = {bits.x, bits.y, bits.z, bits.w};
    for (int j = 0; j < 4 && group * 4 + j < count; ++j)
        out[group * 4 + j] = from_float<T>((2.0f * uniform_from_bits(words[j]) - 1.0f) * scale);
}
template <typename T> void fill_uniform(T* device, size_t count, uint64_t seed, float scale = 1.0f) {
    const size_t groups = (count + 3) / 4;
    fill_uniform_kernel<<<static_cast<unsigned>((groups + 255) / 256), 256>>>(device, count, seed, scale);
    CUDA_CHECK_LAUNCH();
}

// Fills a buffer with NaN bit patterns (0xFF bytes) so that any element a kernel forgets to
// write fails validation.
template <typename T> void poison(T* device, size_t count) {
    CUDA_CHECK(cudaMemset(device, 0xFF, count * sizeof(T)));
}

// A device buffer freed with its scope (at least one element, so empty shapes still get a
// valid pointer to poison and pass).
template <typename T> struct DeviceArray {
    T* ptr;
    explicit DeviceArray(size_t count) : ptr(device_alloc<T>(std::max<size_t>(count, 1))) {}
    ~DeviceArray() { cudaFree(ptr); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
};

// ---------------------------------------------------------------------------------------------
// Validation: ||out - ref|| / ||ref|| over the whole tensor, plus a NaN/unwritten check.

// Counts of passed and failed checks; a program exits nonzero when `failed` is not zero.
struct Tally {
    int passed = 0, failed = 0;
    void add(bool ok) { ok ? ++passed : ++failed; }
    int checks() const { return passed + failed; }
};

struct CheckResult {
    double relative_error = 0.0;
    bool all_finite = true;
};

// The error relative to `magnitude`, the size of the terms that made each reference value. Where
// a value is a difference of nearly equal terms (a sum that cancels), fp32's rounding of those
// terms is large against the small result, and a relative error measured against the result would
// flag a correct kernel; with one element that happens often enough to make a check flaky.
inline CheckResult compare(const std::vector<float>& out, const std::vector<double>& ref,
                           const std::vector<double>& magnitude) {
    CheckResult result;
    double diff2 = 0.0, magnitude2 = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (!std::isfinite(out[i])) result.all_finite = false;
        const double d = static_cast<double>(out[i]) - ref[i];
        diff2 += d * d;
        magnitude2 += magnitude[i] * magnitude[i];
    }
    result.relative_error = std::sqrt(diff2 / std::max(magnitude2, 1e-300));
    return result;
}
// The error relative to the reference itself.
inline CheckResult compare(const std::vector<float>& out, const std::vector<double>& ref) {
    return compare(out, ref, ref);
}

// A gradient's reference minus the values its storage started from: what a backward that stores
// (GradWrite::store) rather than adds must leave, where the reference was computed as an addition.
inline std::vector<double> without_initial(std::vector<double> reference, const std::vector<float>& initial) {
    for (size_t i = 0; i < reference.size(); ++i) reference[i] -= initial[i];
    return reference;
}

// Prints one validation line and returns whether it passed.
inline bool report_check(const char* what, const CheckResult& result, double tolerance) {
    const bool pass = result.all_finite && result.relative_error <= tolerance;
    std::printf("  %-28s rel.err %.3e (tolerance %.1e)%s  %s\n", what, result.relative_error, tolerance,
                result.all_finite ? "" : "  NON-FINITE/UNWRITTEN", pass ? "ok" : "FAIL");
    return pass;
}

// ---------------------------------------------------------------------------------------------
// Timing: CUDA events, warm-up first, median of repeats.

template <typename Launch> float median_ms(Launch&& launch, int repeats = 20, int warmup = 3) {
    for (int i = 0; i < warmup; ++i) launch();
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    std::vector<float> times;
    for (int i = 0; i < repeats; ++i) {
        CUDA_CHECK(cudaEventRecord(start));
        launch();
        CUDA_CHECK(cudaEventRecord(stop));
        CUDA_CHECK(cudaEventSynchronize(stop));
        float ms = 0.0f;
        CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        times.push_back(ms);
    }
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

// ---------------------------------------------------------------------------------------------
// PyTorch baselines: dev/cuda/<op>.py prints lines "name milliseconds"; the C++ program runs
// it on the same GPU in the same run and prints its figures beside its own. Returns an empty
// list (and says why) when no Python with PyTorch is available.

struct BaselineTiming {
    std::string name;
    double ms;
};

inline std::vector<BaselineTiming> run_torch_baseline(const std::string& script_and_args) {
    const char* python = std::getenv("PYTHON");
    const std::string command = std::string(python && *python ? python : "python3") + " " + script_and_args;
    std::vector<BaselineTiming> timings;
    FILE* pipe = popen(command.c_str(), "r");
    if (!pipe) {
        std::printf("  (PyTorch baseline not run: cannot start `%s`)\n", command.c_str());
        return timings;
    }
    char line[512];
    while (std::fgets(line, sizeof line, pipe)) {
        char name[256];
        double ms = 0.0;
        if (std::sscanf(line, "%255s %lf", name, &ms) == 2) timings.push_back({name, ms});
    }
    if (pclose(pipe) != 0) std::printf("  (PyTorch baseline `%s` failed; its figures are missing)\n", command.c_str());
    return timings;
}

// The command line every workbench shares: --quick (validation only, small shapes: what the test
// suite runs) and, where the program has PyTorch baselines to skip, --no-torch. Any other argument
// prints the usage and exits with status 2.
struct Options {
    bool quick = false;
    bool with_torch = true;
};
inline Options parse_options(int argc, char** argv, bool accepts_no_torch) {
    // Line-buffered even into a log file: a run stopped by a time limit keeps every finished row.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    Options options;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--quick") == 0) {
            options.quick = true;
        } else if (accepts_no_torch && std::strcmp(argv[i], "--no-torch") == 0) {
            options.with_torch = false;
        } else {
            std::fprintf(stderr, "%s: unknown option '%s'\nusage: %s [--quick]%s\n"
                         "  --quick     validation only, small shapes (the test suite)\n%s",
                         argv[0], argv[i], argv[0], accepts_no_torch ? " [--no-torch]" : "",
                         accepts_no_torch ? "  --no-torch  skip the PyTorch baselines in the benchmark\n" : "");
            std::exit(2);
        }
    }
    return options;
}

// Device facts for achieved-vs-ceiling columns.
struct DeviceInfo {
    std::string name;
    int sm_count = 0;
};
inline DeviceInfo device_info() {
    cudaDeviceProp prop{};
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    return {prop.name, prop.multiProcessorCount};
}

// The GPU's measured memory ceiling: a large device-to-device copy, counting bytes read plus
// bytes written (what a memory-bound kernel's GB/s figure is compared with).
inline double measured_copy_bandwidth_gbs() {
    const size_t bytes = size_t(1) << 30;
    char* a = device_alloc<char>(bytes);
    char* b = device_alloc<char>(bytes);
    CUDA_CHECK(cudaMemset(a, 1, bytes));
    const float ms = median_ms([&] { CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); }, 10, 2);
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

}  // namespace workbench
