// Whether a step's update is applied. A step whose loss or gradient norm is not finite is skipped
// (bf16 as fp16 overflow is: its weights and optimizer state stay as they were), and the run
// stops after `nonfinite_limit` such steps in a row, since by then it has diverged rather than met
// one bad batch. Optionally, as llm.c's outlier detector, a step whose loss or gradient norm lies
// more than z standard deviations above the mean of the last `window` finite steps is skipped too
// (a loss spike from a bad batch would otherwise move the weights).
#pragma once

#include <cstdint>
#include <deque>

// z-scores of a value against the last `window` values seen (none until the window is full).
class RollingZScore {
  public:
    explicit RollingZScore(int window) : window_(window) {}
    // The z-score of `value` against the values before it (0 while fewer than `window`), then
    // remembers it.
    double push(double value);
    void clear() { values_.clear(); }

  private:
    int window_;
    std::deque<double> values_;
};

class UpdateGuard {
  public:
    struct Settings {
        int nonfinite_limit = 10;  // stop after this many non-finite steps in a row
        double loss_z = 0.0;       // skip a step whose loss z-score exceeds this (0 = off)
        double norm_z = 0.0;       // the same for the gradient norm (0 = off)
        int window = 128;          // steps the z-scores look back over
    };
    enum class Verdict { apply, skip_nonfinite, skip_loss_spike, skip_norm_spike, stop };

    explicit UpdateGuard(const Settings& settings)
        : settings_(settings), loss_(settings.window), norm_(settings.window) {}

    Verdict judge(double loss, double grad_norm);
    int nonfinite_in_a_row() const { return nonfinite_in_a_row_; }
    int64_t skipped() const { return skipped_; }  // updates skipped so far, for any reason

  private:
    Settings settings_;
    RollingZScore loss_;
    RollingZScore norm_;
    int nonfinite_in_a_row_ = 0;
    int64_t skipped_ = 0;
};

const char* verdict_name(UpdateGuard::Verdict verdict);
