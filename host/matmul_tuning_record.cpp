#include "host/matmul_tuning_record.h"

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "host/checkpoint.h"
#include "host/format.h"

namespace {

constexpr const char* kMagicWord = "matmul-tuning-record";
constexpr const char* kWhatToDo =
    "delete the file to re-tune: a run resumed then times its GEMMs again, and its numerics may differ from "
    "those of the run it continues";
constexpr int kChoiceFields = 14;

std::vector<std::string> split_words(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> words;
    for (std::string word; in >> word;) words.push_back(word);
    return words;
}

bool parse_integer(const std::string& text, long long lo, long long hi, long long* value) {
    if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '-')) return false;
    errno = 0;
    char* end = nullptr;
    const long long parsed = std::strtoll(text.c_str(), &end, 10);
    if (errno == ERANGE || end != text.c_str() + text.size() || parsed < lo || parsed > hi) return false;
    *value = parsed;
    return true;
}

bool parse_milliseconds(const std::string& text, double* value) {
    if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
    char* end = nullptr;
    const double parsed = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || !std::isfinite(parsed) || parsed < 0.0) return false;
    *value = parsed;
    return true;
}

// GPU names are printable text; a control character would not survive the record's lines.
bool printable(const std::string& text) {
    for (unsigned char c : text)
        if (c < 0x20 || c == 0x7f) return false;
    return true;
}

// How a choice was made: by timing, or the heuristic's first without timing.
bool known_how(const std::string& how) { return how == "timed" || how == "heuristic"; }

std::optional<GemmSite> site_from_name(const std::string& name) {
    for (GemmSite site : {GemmSite::kForward, GemmSite::kBackwardInput, GemmSite::kBackwardWeight})
        if (name == gemm_site_name(site)) return site;
    return std::nullopt;
}
std::optional<GemmDtype> dtype_from_name(const std::string& name) {
    for (GemmDtype dtype : {GemmDtype::kBf16, GemmDtype::kFp16})
        if (name == gemm_dtype_name(dtype)) return dtype;
    return std::nullopt;
}

// Parses the record line by line; each problem throws naming the source and the line.
class RecordParser {
  public:
    explicit RecordParser(const std::string& source) : source_(source) {}

    TuningRecord parse(const std::string& text) {
        std::istringstream lines(text);
        for (std::string line; std::getline(lines, line);) {
            ++line_number_;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            const std::vector<std::string> words = split_words(line);
            if (words.empty() || words[0][0] == '#') continue;
            if (header_lines_ == 0) parse_version(words);
            else if (header_lines_ == 1) parse_device(words, line);
            else if (header_lines_ == 2) parse_library(words);
            else parse_choice(words);
        }
        if (header_lines_ < 3)
            throw std::runtime_error(source_ + ": ends before its header (the lines `" + kMagicWord +
                                     " 2`, `device NAME` and `cublaslt VERSION`); " + kWhatToDo);
        return std::move(record_);
    }

  private:
    std::runtime_error error(const std::string& what) const {
        return std::runtime_error(string_format("%s, line %d: %s; %s", source_.c_str(), line_number_, what.c_str(),
                                                kWhatToDo));
    }

    void parse_version(const std::vector<std::string>& words) {
        if (site_from_name(words[0]))
            throw error("a version-1 record (the fused/unfused choices without their algorithms and without a "
                        "header, as dev/cuda/matmul printed them): it cannot say which algorithm ran, so it "
                        "cannot be replayed");
        long long version = 0;
        if (words[0] != kMagicWord || words.size() != 2 || !parse_integer(words[1], 1, 1 << 30, &version))
            throw error(std::string("expected the header `") + kMagicWord + " 2`");
        if (version != TuningRecord::kVersion)
            throw error(string_format("version %lld is not known to this build, which reads version %d", version,
                                      TuningRecord::kVersion));
        ++header_lines_;
    }

    void parse_device(const std::vector<std::string>& words, const std::string& line) {
        if (words[0] != "device" || words.size() < 2) throw error("expected `device NAME` (the GPU's name)");
        const size_t name_start = line.find_first_not_of(" \t", line.find("device") + 6);
        const size_t name_end = line.find_last_not_of(" \t");
        record_.device = line.substr(name_start, name_end + 1 - name_start);
        if (!printable(record_.device)) throw error("the device name holds a control character");
        ++header_lines_;
    }

    void parse_library(const std::vector<std::string>& words) {
        long long version = 0;
        if (words[0] != "cublaslt" || words.size() != 2 || !parse_integer(words[1], 1, LLONG_MAX, &version))
            throw error("expected `cublaslt VERSION` (cublasLtGetVersion(), a positive integer)");
        record_.cublaslt_version = static_cast<uint64_t>(version);
        ++header_lines_;
    }

    void parse_choice(const std::vector<std::string>& words) {
        if (words.size() != kChoiceFields)
            throw error(string_format("%zu fields where %d are expected: site dtype M N K bias gelu path algorithm "
                                      "how ms heuristic_ms index candidates", words.size(), kChoiceFields));
        GemmKey key;
        const std::optional<GemmSite> site = site_from_name(words[0]);
        if (!site) throw error("site '" + words[0] + "' is not forward, backward_input or backward_weight");
        key.site = *site;
        const std::optional<GemmDtype> dtype = dtype_from_name(words[1]);
        if (!dtype) throw error("dtype '" + words[1] + "' is not bf16 or fp16");
        key.dtype = *dtype;
        long long dims[3] = {};
        for (int i = 0; i < 3; ++i)
            if (!parse_integer(words[2 + i], 1, INT32_MAX, &dims[i]))
                throw error(string_format("%c '%s' is not a positive integer", "MNK"[i], words[2 + i].c_str()));
        key.M = (int)dims[0], key.N = (int)dims[1], key.K = (int)dims[2];
        key.bias = flag(words[5], "bias", "nobias");
        key.gelu = flag(words[6], "gelu", "nogelu");
        GemmChoice choice;
        choice.fused = flag(words[7], "fused", "unfused");
        const std::optional<MatmulAlgoBytes> algo = algo_from_hex(words[8]);
        if (!algo) throw error("the algorithm is not 128 hex digits (the 64 bytes of cublasLtMatmulAlgo_t)");
        choice.algo = *algo;
        if (!known_how(words[9])) throw error("how '" + words[9] + "' is neither timed nor heuristic");
        choice.how = words[9];
        if (!parse_milliseconds(words[10], &choice.ms) || !parse_milliseconds(words[11], &choice.heuristic_ms))
            throw error("ms and heuristic_ms must be numbers >= 0");
        long long index = 0, candidates = 0;
        if (!parse_integer(words[13], 1, 1 << 20, &candidates) || !parse_integer(words[12], 0, candidates - 1, &index))
            throw error("index must lie in [0, candidates) and candidates be positive");
        choice.index = (int)index, choice.candidates = (int)candidates;
        if (!record_.choices.emplace(key, choice).second) throw error(describe_gemm(key) + " appears twice");
    }

    bool flag(const std::string& word, const char* yes, const char* no) const {
        if (word == yes) return true;
        if (word == no) return false;
        throw error("'" + word + "' is neither " + yes + " nor " + no);
    }

    std::string source_;
    int line_number_ = 0;
    int header_lines_ = 0;  // of the three, those read so far
    TuningRecord record_;
};

}  // namespace

const char* gemm_site_name(GemmSite site) {
    switch (site) {
    case GemmSite::kForward: return "forward";
    case GemmSite::kBackwardInput: return "backward_input";
    case GemmSite::kBackwardWeight: return "backward_weight";
    }
    return "?";
}

const char* gemm_dtype_name(GemmDtype dtype) { return dtype == GemmDtype::kBf16 ? "bf16" : "fp16"; }

std::string describe_gemm(const GemmKey& key) {
    return string_format("%s %s M=%d N=%d K=%d %s %s", gemm_site_name(key.site), gemm_dtype_name(key.dtype), key.M,
                         key.N, key.K, key.bias ? "bias" : "nobias", key.gelu ? "gelu" : "nogelu");
}

std::string algo_to_hex(const MatmulAlgoBytes& algo) {
    std::string hex;
    for (uint64_t word : algo) hex += string_format("%016llx", (unsigned long long)word);
    return hex;
}

std::optional<MatmulAlgoBytes> algo_from_hex(const std::string& hex) {
    if (hex.size() != 128 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) return std::nullopt;
    MatmulAlgoBytes algo{};
    for (size_t i = 0; i < algo.size(); ++i) algo[i] = std::strtoull(hex.substr(16 * i, 16).c_str(), nullptr, 16);
    return algo;
}

std::string format_tuning_record(const TuningRecord& record) {
    if (record.device.empty() || !printable(record.device) || record.device.front() == ' ' ||
        record.device.back() == ' ')
        throw std::invalid_argument("matmul tuning record: the device name must be one non-empty line of printable "
                                    "text without spaces around it");
    std::string text =
        "# train_gpt2cu matmul tuning record (host/matmul_tuning_record.h): each GEMM shape's cuBLASLt algorithm\n"
        "# and epilogue path; a run resumed from this directory replays them.\n";
    text += string_format("%s %d\ndevice %s\ncublaslt %llu\n", kMagicWord, TuningRecord::kVersion,
                          record.device.c_str(), (unsigned long long)record.cublaslt_version);
    text += "# site dtype M N K bias gelu path algorithm how ms heuristic_ms index candidates\n";
    for (const auto& [key, choice] : record.choices) {
        if (!known_how(choice.how))
            throw std::invalid_argument("matmul tuning record: `how` must be timed or heuristic, not '" + choice.how + "'");
        text += string_format("%s %s %d %d %d %s %s %s %s %s %.4f %.4f %d %d\n", gemm_site_name(key.site),
                              gemm_dtype_name(key.dtype), key.M, key.N, key.K, key.bias ? "bias" : "nobias",
                              key.gelu ? "gelu" : "nogelu", choice.fused ? "fused" : "unfused",
                              algo_to_hex(choice.algo).c_str(), choice.how.c_str(), choice.ms, choice.heuristic_ms,
                              choice.index, choice.candidates);
    }
    return text;
}

TuningRecord parse_tuning_record(const std::string& text, const std::string& source) {
    return RecordParser(source).parse(text);
}

std::string tuning_record_path(const std::string& run_dir) {
    return (std::filesystem::path(run_dir) / "matmul_tuning.txt").string();
}

std::optional<TuningRecord> read_tuning_record_file(const std::string& path) {
    std::error_code error;
    if (!std::filesystem::exists(path, error)) return std::nullopt;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open this matmul tuning record");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw std::runtime_error(path + ": cannot read this matmul tuning record");
    return parse_tuning_record(text.str(), path);
}

void write_tuning_record_file(const std::string& path, const TuningRecord& record) {
    const std::string text = format_tuning_record(record);
    AtomicFileWriter file(path);
    file.write(text.data(), text.size());
    file.finish();
}
