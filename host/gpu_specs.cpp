#include "host/gpu_specs.h"

#include <cctype>
#include <cmath>
#include <vector>

namespace {

// Dense 16-bit tensor TFLOP/s with fp32 accumulation, from NVIDIA's product datasheets (the
// figures printed there "with sparsity" are halved). Datacenter parts run bf16 and fp16 at the
// same rate. GeForce cards run fp16 with fp32 accumulation at half their fp16-accumulate rate,
// and that is what training uses: RTX 4090 165.2 (Ada whitepaper), RTX 3090 71 (Ampere GA102
// whitepaper). V100 has no bf16; 125 is its fp16 rate (SXM2). A10G is AWS's variant of A10,
// listed at A10's datasheet rate.
struct PeakRow {
    const char* token;      // a word of the device name that identifies the GPU
    const char* qualifier;  // a second word that must also appear ("" = none)
    const char* model;
    double dense_tflops;
};

// First match wins: qualified rows precede the plain row of the same GPU.
constexpr PeakRow kPeakTable[] = {
    {"H100", "PCIE", "H100 PCIe", 756.0},
    {"H100", "NVL", "H100 NVL", 835.0},
    {"H100", "", "H100 SXM", 989.0},
    {"H200", "", "H200", 989.0},
    {"GH200", "", "GH200", 989.0},
    {"B200", "", "B200", 2250.0},
    {"A100", "", "A100", 312.0},
    {"A10", "", "A10", 125.0},
    {"A10G", "", "A10G", 125.0},
    {"L4", "", "L4", 121.0},
    {"L40S", "", "L40S", 362.0},
    {"4090", "", "RTX 4090", 165.2},
    {"3090", "", "RTX 3090", 71.0},
    {"V100", "", "V100", 125.0},
};

// Upper-cased words of a device name, split at anything that is not a letter or digit:
// "NVIDIA A100-SXM4-80GB" -> NVIDIA, A100, SXM4, 80GB. Whole-word matching keeps "A10" from
// matching an A100 and "L4" from matching an L40S.
std::vector<std::string> name_words(const std::string& name) {
    std::vector<std::string> words;
    std::string word;
    for (char c : name) {
        if (std::isalnum(static_cast<unsigned char>(c))) {
            word += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        } else if (!word.empty()) {
            words.push_back(word);
            word.clear();
        }
    }
    if (!word.empty()) words.push_back(word);
    return words;
}

bool has_word(const std::vector<std::string>& words, const std::string& wanted) {
    for (const std::string& w : words)
        if (w == wanted) return true;
    return false;
}

}  // namespace

GpuPeak gpu_peak_for(const std::string& device_name) {
    const std::vector<std::string> words = name_words(device_name);
    for (const PeakRow& row : kPeakTable) {
        if (!has_word(words, row.token)) continue;
        if (row.qualifier[0] != '\0' && !has_word(words, row.qualifier)) continue;
        return GpuPeak{row.model, row.dense_tflops};
    }
    return GpuPeak{"unknown", std::nullopt};
}

int64_t flops_per_token(int64_t num_params, int n_layer, int n_embd, int seq_len) {
    return 6 * num_params + int64_t{6} * n_layer * n_embd * seq_len;
}

std::optional<double> model_flops_utilization(double tokens_per_s, double flops_per_token,
                                              std::optional<double> peak_tflops) {
    if (!peak_tflops || !(*peak_tflops > 0.0) || !std::isfinite(*peak_tflops)) return std::nullopt;
    if (!(tokens_per_s > 0.0) || !std::isfinite(tokens_per_s)) return std::nullopt;
    if (!(flops_per_token > 0.0) || !std::isfinite(flops_per_token)) return std::nullopt;
    return tokens_per_s * flops_per_token / (*peak_tflops * 1e12);
}
