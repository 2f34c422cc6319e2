#include "host/run_log.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace {

using Json = nlohmann::ordered_json;

// JSON has no NaN or infinity: such values become null rather than an invalid line.
Json number_or_null(double value) { return std::isfinite(value) ? Json(value) : Json(nullptr); }
Json number_or_null(const std::optional<double>& value) { return value ? number_or_null(*value) : Json(nullptr); }

Json event(const char* name, int64_t step) {
    Json line = Json::object();
    line["event"] = name;
    line["step"] = step;
    return line;
}

std::string with_thousands(double value) {
    if (!std::isfinite(value)) return "n/a";
    const long long whole = std::llround(value);
    std::string digits = std::to_string(whole < 0 ? -whole : whole);
    for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<size_t>(i), ",");
    return (whole < 0 ? "-" : "") + digits;
}

}  // namespace

RunLog::RunLog(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "a");
    if (!file_)
        throw std::runtime_error("cannot open the run log " + path + " for writing: " + std::strerror(errno) +
                                 " (is --out-dir writable?)");
}

RunLog::~RunLog() { std::fclose(file_); }

void RunLog::write_line(const std::string& line) {
    if (std::fputs(line.c_str(), file_) < 0 || std::fputc('\n', file_) == EOF || std::fflush(file_) != 0)
        throw std::runtime_error("cannot write the run log " + path_ + ": " + std::strerror(errno) +
                                 " (is the disk full?)");
}

void RunLog::train(const TrainStepRecord& record) {
    Json line = event("train", record.step);
    line["total"] = record.total_steps;
    line["loss"] = number_or_null(record.loss);
    line["lr"] = number_or_null(record.lr);
    line["grad_norm"] = number_or_null(record.grad_norm);
    line["ms"] = number_or_null(record.ms);
    line["tokens_per_s"] = number_or_null(record.tokens_per_s);
    line["mfu"] = number_or_null(record.mfu);
    line["mem_gb"] = number_or_null(record.mem_gb);
    line["loss_scale"] = number_or_null(record.loss_scale);
    line["ppl"] = number_or_null(std::exp(record.loss));
    line["tokens"] = record.tokens_seen;
    line["skipped"] = record.skipped.empty() ? Json(nullptr) : Json(record.skipped);
    line["skipped_updates"] = record.skipped_updates;
    write_line(line.dump());
}

void RunLog::val(int64_t step, double loss) {
    Json line = event("val", step);
    line["loss"] = number_or_null(loss);
    line["ppl"] = number_or_null(std::exp(loss));
    write_line(line.dump());
}

void RunLog::eval(int64_t step, const std::string& split, double loss, int64_t tokens,
                  const std::string& checkpoint) {
    Json line = event("eval", step);
    line["split"] = split;
    line["loss"] = number_or_null(loss);
    line["ppl"] = number_or_null(std::exp(loss));
    line["tokens"] = tokens;
    line["checkpoint"] = checkpoint.empty() ? Json(nullptr) : Json(checkpoint);
    write_line(line.dump());
}

void RunLog::sample(int64_t step, const std::string& text) {
    Json line = event("sample", step);
    line["text"] = text;
    write_line(line.dump(-1, ' ', false, Json::error_handler_t::replace));
}

void RunLog::checkpoint(int64_t step, const std::string& path) {
    Json line = event("checkpoint", step);
    line["path"] = path;
    write_line(line.dump(-1, ' ', false, Json::error_handler_t::replace));
}

void RunLog::hellaswag(int64_t step, double acc, double acc_norm, int64_t items) {
    Json line = event("hellaswag", step);
    line["acc"] = number_or_null(acc);
    line["acc_norm"] = number_or_null(acc_norm);
    line["items"] = items;
    write_line(line.dump());
}

void RunLog::norms(const NormReport& report) {
    Json line = event("norms", report.step);
    line["weight_l1"] = number_or_null(report.weight_l1);
    line["weight_l2"] = number_or_null(report.weight_l2);
    line["grad_l1"] = number_or_null(report.grad_l1);
    line["grad_l2"] = number_or_null(report.grad_l2);
    Json tensors = Json::object();
    for (const TensorNorms& tensor : report.tensors)
        tensors[tensor.name] = {{"weight_max", number_or_null(tensor.weight_max)},
                                {"weight_mean", number_or_null(tensor.weight_mean)},
                                {"grad_max", number_or_null(tensor.grad_max)},
                                {"grad_mean", number_or_null(tensor.grad_mean)}};
    line["tensors"] = std::move(tensors);
    write_line(line.dump());
}

std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "n/a";
    const long long total = std::llround(seconds);
    char text[48];
    std::snprintf(text, sizeof(text), "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
    return text;
}

std::string format_count(double count) {
    static const char* const kSuffixes[] = {"", "K", "M", "B", "T"};
    int power = 0;
    while (std::fabs(count) >= 999.5 && power < 4) {
        count /= 1000.0;
        ++power;
    }
    char text[32];
    if (power == 0) std::snprintf(text, sizeof(text), "%.0f", count);
    else std::snprintf(text, sizeof(text), std::fabs(count) < 9.995 ? "%.2f%s" : std::fabs(count) < 99.95 ? "%.1f%s" : "%.0f%s",
                       count, kSuffixes[power]);
    return text;
}

std::string format_step_line(const TrainStepRecord& record, std::optional<double> eta_seconds) {
    const int width = static_cast<int>(std::to_string(record.total_steps).size());
    char text[256];
    std::snprintf(text, sizeof(text), "step %*lld/%lld | loss %.4f | ppl %.2f | lr %.2e | norm %.4f | %.1f ms | ",
                  width, static_cast<long long>(record.step), static_cast<long long>(record.total_steps), record.loss,
                  std::exp(record.loss), record.lr, record.grad_norm, record.ms);
    std::string line = text;
    line += with_thousands(record.tokens_per_s) + " tok/s | " + format_count((double)record.tokens_seen) + " tokens | MFU ";
    if (record.mfu && std::isfinite(*record.mfu)) {
        std::snprintf(text, sizeof(text), "%.1f%%", *record.mfu * 100.0);
        line += text;
    } else {
        line += "n/a";
    }
    std::snprintf(text, sizeof(text), " | mem %.1f GB", record.mem_gb);
    line += text;
    if (record.loss_scale) {
        std::snprintf(text, sizeof(text), " | scale %g", *record.loss_scale);
        line += text;
    }
    line += " | ETA " + (eta_seconds ? format_duration(*eta_seconds) : std::string("n/a"));
    if (!record.skipped.empty()) line += " | update skipped: " + record.skipped;
    return line;
}
