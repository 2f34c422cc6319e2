#include "host/update_guard.h"

#include <cmath>

double RollingZScore::push(double value) {
    double z = 0.0;
    if ((int)values_.size() == window_ && window_ > 1) {
        double sum = 0.0, sum_squares = 0.0;
        for (double v : values_) sum += v;
        const double mean = sum / window_;
        for (double v : values_) sum_squares += (v - mean) * (v - mean);
        const double std = std::sqrt(sum_squares / (window_ - 1));
        z = std > 0.0 ? (value - mean) / std : 0.0;
    }
    values_.push_back(value);
    if ((int)values_.size() > window_) values_.pop_front();
    return z;
}

UpdateGuard::Verdict UpdateGuard::judge(double loss, double grad_norm) {
    if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
        ++skipped_;
        return ++nonfinite_in_a_row_ >= settings_.nonfinite_limit ? Verdict::stop : Verdict::skip_nonfinite;
    }
    nonfinite_in_a_row_ = 0;
    // Both windows see every finite step, so neither depends on what the other decided.
    const double loss_z = loss_.push(loss);
    const double norm_z = norm_.push(grad_norm);
    Verdict verdict = Verdict::apply;
    if (settings_.loss_z > 0.0 && loss_z > settings_.loss_z) verdict = Verdict::skip_loss_spike;
    else if (settings_.norm_z > 0.0 && norm_z > settings_.norm_z) verdict = Verdict::skip_norm_spike;
    if (verdict != Verdict::apply) ++skipped_;
    return verdict;
}

const char* verdict_name(UpdateGuard::Verdict verdict) {
    switch (verdict) {
        case UpdateGuard::Verdict::apply: return "applied";
        case UpdateGuard::Verdict::skip_nonfinite: return "non-finite loss or gradients";
        case UpdateGuard::Verdict::skip_loss_spike: return "loss spike";
        case UpdateGuard::Verdict::skip_norm_spike: return "gradient-norm spike";
        case UpdateGuard::Verdict::stop: return "non-finite too many steps in a row";
    }
    return "?";
}
