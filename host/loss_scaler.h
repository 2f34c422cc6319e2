// Dynamic loss scaling for fp16 training, with torch.cuda.amp.GradScaler's semantics: start at
// 2^16; a step whose gradients overflow (a non-finite gradient norm) is skipped and the scale is
// halved; after `growth_interval` consecutive clean steps the scale doubles. bf16 runs use a
// constant scale of 1 (bf16 has fp32's exponent range).
#pragma once

#include <cstdint>

class LossScaler {
  public:
    LossScaler(double initial_scale, int64_t growth_interval, bool dynamic)
        : scale_(dynamic ? initial_scale : 1.0), growth_interval_(growth_interval), dynamic_(dynamic) {}

    double scale() const { return scale_; }
    int64_t clean_steps() const { return clean_steps_; }
    bool dynamic() const { return dynamic_; }

    // After each step's gradient check. Returns whether the optimizer may apply the step.
    bool update(bool gradients_finite) {
        if (!dynamic_) return gradients_finite;
        if (!gradients_finite) {
            scale_ *= 0.5;
            clean_steps_ = 0;
            return false;
        }
        if (++clean_steps_ >= growth_interval_) {
            scale_ *= 2.0;
            clean_steps_ = 0;
        }
        return true;
    }

    // Checkpoint round trip.
    void restore(double scale, int64_t clean_steps) {
        scale_ = scale;
        clean_steps_ = clean_steps;
    }

  private:
    double scale_;
    int64_t clean_steps_ = 0;
    int64_t growth_interval_;
    bool dynamic_;
};
