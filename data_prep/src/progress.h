// A progress line on stderr for long jobs (downloads, tokenization): bytes, documents, tokens,
// rates and ETA. On a terminal it redraws one line in place a few times a second; otherwise
// (a log file, CI) it prints a full line only every `log_interval_s` seconds and at the end, so
// logs stay short.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace data_prep {

class Progress {
  public:
    // Cumulative counts; a negative documents/tokens count is not shown.
    struct Counts {
        int64_t bytes = 0;
        int64_t documents = -1;
        int64_t tokens = -1;
    };

    // total_bytes < 0: unknown (no percentage, no ETA). initial_bytes: bytes already done before
    // this job started (a resumed download), excluded from the rate.
    Progress(std::string label, int64_t total_bytes, int64_t initial_bytes = 0, double log_interval_s = 10.0);
    void set_total_bytes(int64_t total_bytes) { total_bytes_ = total_bytes; }
    void update(const Counts& counts);
    // Prints the final line (with the elapsed time in place of the ETA).
    void finish(const Counts& counts);

  private:
    std::string format_line(const Counts& counts, bool final_line) const;
    double seconds_since_start() const;

    std::string label_;
    int64_t total_bytes_;
    int64_t initial_bytes_;
    double log_interval_s_;
    bool is_terminal_;
    std::chrono::steady_clock::time_point start_;
    double last_draw_s_ = 0.0;
};

// Human-readable quantities for messages: "12.3 MB", "4.56M", "1:02:03".
std::string format_bytes(double bytes);
std::string format_count(double count);
std::string format_duration(double seconds);

}  // namespace data_prep
