// Learning-rate schedules: linear warmup, then linear decay, cosine decay, or constant.
//
// Step s (counting optimizer steps from 0) is taken with lr_at(s). With W = warmup_steps,
// E = decay_end_step, peak = lr and floor = min_lr_ratio * lr:
//
//   s < W            warmup_init_lr + (peak - warmup_init_lr) * s / W
//   linear,  W<=s<E  floor + (peak - floor) * (E - s) / (E - W)
//   cosine,  W<=s<E  floor + (peak - floor) * (1 + cos(pi * s / E)) / 2
//   s >= E           floor (held; E <= W means the decay is empty)
//   constant         peak after the warmup
//
// These are the seed's two schedulers exactly: the OpenWebText runs use HuggingFace's
// get_linear_schedule_with_warmup (step 0 has lr 0, zero at the last step), the Pile runs use
// timm's CosineLRScheduler with warmup_prefix=False, whose cosine phase is measured from step 0,
// not from the end of the warmup: at step W the lr is already a hair below the peak
// (0.9996 * peak for W = 8000, E = 600000). Reproduced on purpose, so the curves match.
#pragma once

#include <cmath>
#include <cstdint>

enum class LrScheduleKind { linear, cosine, constant };

inline const char* lr_schedule_name(LrScheduleKind kind) {
    switch (kind) {
        case LrScheduleKind::linear: return "linear";
        case LrScheduleKind::cosine: return "cosine";
        case LrScheduleKind::constant: return "constant";
    }
    return "?";
}

struct LrSchedule {
    LrScheduleKind kind = LrScheduleKind::cosine;
    double lr = 6e-4;               // peak
    double warmup_init_lr = 0.0;    // lr at step 0
    int64_t warmup_steps = 0;
    int64_t decay_end_step = 1;     // first step at the floor (linear and cosine)
    double min_lr_ratio = 0.0;      // floor = min_lr_ratio * lr

    double lr_at(int64_t step) const {
        if (step < warmup_steps) {
            const double progress = static_cast<double>(step) / static_cast<double>(warmup_steps);
            return warmup_init_lr + (lr - warmup_init_lr) * progress;
        }
        if (kind == LrScheduleKind::constant) return lr;
        const double floor_lr = min_lr_ratio * lr;
        if (step >= decay_end_step) return floor_lr;
        if (kind == LrScheduleKind::linear) {
            const double remaining = static_cast<double>(decay_end_step - step) /
                                     static_cast<double>(decay_end_step - warmup_steps);
            return floor_lr + (lr - floor_lr) * remaining;
        }
        const double kPi = 3.14159265358979323846;
        const double phase = kPi * static_cast<double>(step) / static_cast<double>(decay_end_step);
        return floor_lr + (lr - floor_lr) * 0.5 * (1.0 + std::cos(phase));
    }
};
