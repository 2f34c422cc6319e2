// The norm monitor's arithmetic (the seed's NormMonitor callback): for every parameter tensor,
// per layer as the seed's named parameters are, the largest and the mean absolute weight and
// gradient, and the global L1 and L2 norms of all weights and all gradients. The GPU sums each
// segment's absolute values and squares and takes its largest absolute value
// (train/norm_monitor.cuh); this turns those sums into the report log.jsonl and TensorBoard get.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/param_layout.h"

// A piece of the flat parameter array that the report names on its own: one layer of a
// per-layer tensor ("layers.3.qkv_w"), or a whole tensor without layers ("wte").
struct ParamSegment {
    std::string name;
    int64_t offset = 0;  // into the flat parameter array (ParamLayout order)
    int64_t count = 0;
};
// In ParamLayout order; together the segments tile [0, layout.total()) exactly once.
std::vector<ParamSegment> param_segments(const ParamLayout& layout);

// Sums over one segment's elements (over every rank's part of it).
struct SegmentSums {
    double abs_sum = 0.0;
    double square_sum = 0.0;
    double abs_max = 0.0;
};

struct TensorNorms {
    std::string name;
    int64_t count = 0;
    double weight_max = 0.0, weight_mean = 0.0;  // of |w|
    double grad_max = 0.0, grad_mean = 0.0;      // of |g|
};

struct NormReport {
    int64_t step = 0;
    std::vector<TensorNorms> tensors;  // in ParamLayout order
    double weight_l1 = 0.0, weight_l2 = 0.0;
    double grad_l1 = 0.0, grad_l2 = 0.0;
};

// weights[i], grads[i]: the sums of segments[i]. Throws std::invalid_argument when the three
// lists differ in length.
NormReport make_norm_report(int64_t step, const std::vector<ParamSegment>& segments,
                            const std::vector<SegmentSums>& weights, const std::vector<SegmentSums>& grads);
