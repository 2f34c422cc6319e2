#include "data_prep/src/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace data_prep {

namespace {
// Redraws on a terminal at most this often: faster is flicker and wasted syscalls.
constexpr double kTerminalRedrawSeconds = 0.2;
}  // namespace

std::string format_bytes(double bytes) {
    const char* units[] = {"B", "kB", "MB", "GB", "TB"};
    int unit = 0;
    while (bytes >= 1000.0 && unit < 4) {
        bytes /= 1000.0;
        unit++;
    }
    char text[32];
    std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
    return text;
}

std::string format_count(double count) {
    const char* suffixes[] = {"", "k", "M", "B", "T"};
    int suffix = 0;
    while (count >= 1000.0 && suffix < 4) {
        count /= 1000.0;
        suffix++;
    }
    char text[32];
    std::snprintf(text, sizeof text, suffix == 0 ? "%.0f%s" : "%.2f%s", count, suffixes[suffix]);
    return text;
}

std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "?";
    const long long s = std::llround(seconds);
    char text[32];
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
    return text;
}

Progress::Progress(std::string label, int64_t total_bytes, int64_t initial_bytes, double log_interval_s)
    : label_(std::move(label)),
      total_bytes_(total_bytes),
      initial_bytes_(initial_bytes),
      log_interval_s_(log_interval_s),
      is_terminal_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

double Progress::seconds_since_start() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::format_line(const Counts& counts, bool final_line) const {
    const double elapsed = seconds_since_start();
    std::string line = label_ + ": " + format_bytes(double(counts.bytes));
    if (total_bytes_ > 0) {
        char percent[32];
        std::snprintf(percent, sizeof percent, " (%.1f%%)", 100.0 * double(counts.bytes) / double(total_bytes_));
        line += " / " + format_bytes(double(total_bytes_)) + percent;
    }
    if (counts.documents >= 0) line += " | " + format_count(double(counts.documents)) + " docs";
    if (counts.tokens >= 0) line += " | " + format_count(double(counts.tokens)) + " tokens";
    if (elapsed > 0) {
        const double byte_rate = double(counts.bytes - initial_bytes_) / elapsed;
        line += " | " + format_bytes(byte_rate) + "/s";
        if (counts.tokens >= 0) line += ", " + format_count(double(counts.tokens) / elapsed) + " tok/s";
        if (final_line) {
            line += " | took " + format_duration(elapsed);
        } else if (total_bytes_ > 0 && byte_rate > 0) {
            line += " | ETA " + format_duration(double(total_bytes_ - counts.bytes) / byte_rate);
        }
    }
    return line;
}

void Progress::update(const Counts& counts) {
    const double now = seconds_since_start();
    const double interval = is_terminal_ ? kTerminalRedrawSeconds : log_interval_s_;
    if (now - last_draw_s_ < interval) return;
    last_draw_s_ = now;
    if (is_terminal_) {
        std::fprintf(stderr, "\r%s\033[K", format_line(counts, false).c_str());
    } else {
        std::fprintf(stderr, "%s\n", format_line(counts, false).c_str());
    }
    std::fflush(stderr);
}

void Progress::finish(const Counts& counts) {
    std::fprintf(stderr, "%s%s\n", is_terminal_ ? "\r\033[K" : "", format_line(counts, true).c_str());
    std::fflush(stderr);
}

}  // namespace data_prep
