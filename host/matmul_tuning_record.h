// The matmul tuning record: which cuBLASLt algorithm and which epilogue path (fused or unfused)
// each GEMM shape of a run uses, as text. kernels/matmul.cuh makes the choices (by timing them
// once) and replays a record; the trainer saves it in the run directory (matmul_tuning.txt) and
// replays it on --resume, so a resumed run (and every rank) computes with exactly the algorithms
// of the run it continues. Plain C++ (no CUDA), so that its format is tested without a GPU.
//
// Format (version 2), one item per line; blank lines and lines starting with '#' are comments:
//   matmul-tuning-record 2
//   device <the GPU's name, as cudaDeviceProp::name>
//   cublaslt <cublasLtGetVersion()>
//   <site> <dtype> <M> <N> <K> <bias|nobias> <gelu|nogelu> <fused|unfused> <algorithm> <how> <ms>
//       <heuristic_ms> <index> <candidates>
// site: forward | backward_input | backward_weight; dtype: bf16 | fp16; M, N, K as the
// launchers take them; algorithm: the 64 bytes of cublasLtMatmulAlgo_t as 128 hex digits (cuBLASLt
// documents the struct as serializable for use with the same library version, hence the header
// lines: a record of another GPU or cuBLASLt version is not replayed). The rest is what the choice
// was based on, for people: how it was made (timed or heuristic), the median ms of the choice and of the
// default (the fused path with the heuristic's first algorithm), the chosen algorithm's place in
// the heuristic's list (0 = its first) and the list's length.
//
// Why the algorithm's bytes rather than its index in the heuristic's list: the list is only as
// stable as everything the heuristic looks at (workspace limit, alignment, requested count,
// cuBLASLt's own tuning tables), while the bytes name the kernel configuration itself, and the
// replaying side checks it with cublasLtMatmulAlgoCheck for the shape before using it.
//
// Version 1 (the choices without algorithms and without a header, printed by dev/cuda/matmul
// before algorithms were tuned) is refused with a message: it cannot say which algorithm ran.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>

enum class GemmSite { kForward, kBackwardInput, kBackwardWeight };
enum class GemmDtype { kBf16, kFp16 };

// One GEMM shape as the launchers see it (kernels/matmul.cuh).
struct GemmKey {
    GemmSite site = GemmSite::kForward;
    GemmDtype dtype = GemmDtype::kBf16;
    int M = 0, N = 0, K = 0;
    bool bias = false;  // forward: bias added
    bool gelu = false;  // forward: GELU applied; input grad: through GELU
    auto tied() const { return std::tie(site, dtype, M, N, K, bias, gelu); }
    bool operator<(const GemmKey& o) const { return tied() < o.tied(); }
    bool operator==(const GemmKey& o) const { return tied() == o.tied(); }
};

// The bytes of a cublasLtMatmulAlgo_t (8 x uint64).
using MatmulAlgoBytes = std::array<uint64_t, 8>;

struct GemmChoice {
    bool fused = true;         // the cuBLASLt epilogue (or, for a shape with nothing to fuse, the GEMM)
    MatmulAlgoBytes algo{};    // of the chosen path's GEMM
    std::string how = "timed"; // or "heuristic": the heuristic's first, not timed
    double ms = 0.0;           // median of the choice when timed
    double heuristic_ms = 0.0; // median of the default: fused path, the heuristic's first algorithm
    int index = 0;             // the algorithm's place in the heuristic's list
    int candidates = 1;        // the list's length
};

struct TuningRecord {
    static constexpr int kVersion = 2;
    std::string device;            // cudaDeviceProp::name of the GPU that made the choices
    uint64_t cublaslt_version = 0; // cublasLtGetVersion() of the library that made them
    std::map<GemmKey, GemmChoice> choices;
};

const char* gemm_site_name(GemmSite site);
const char* gemm_dtype_name(GemmDtype dtype);
// "forward bf16 M=32768 N=3072 K=768 bias gelu": for messages.
std::string describe_gemm(const GemmKey& key);

std::string algo_to_hex(const MatmulAlgoBytes& algo);
// 128 hex digits -> bytes; std::nullopt for anything else.
std::optional<MatmulAlgoBytes> algo_from_hex(const std::string& hex);

std::string format_tuning_record(const TuningRecord& record);
// Throws std::runtime_error "<source>, line N: what is wrong; what to do" on any malformed line.
TuningRecord parse_tuning_record(const std::string& text, const std::string& source);

// The record's place in a run directory.
std::string tuning_record_path(const std::string& run_dir);
// std::nullopt when `path` does not exist; throws (naming the file) when it cannot be read or parsed.
std::optional<TuningRecord> read_tuning_record_file(const std::string& path);
// Written under a temporary name and renamed (host/checkpoint.h's AtomicFileWriter).
void write_tuning_record_file(const std::string& path, const TuningRecord& record);
