#include "host/param_norms.h"

#include <cmath>
#include <stdexcept>

std::vector<ParamSegment> param_segments(const ParamLayout& layout) {
    std::vector<ParamSegment> segments;
    for (const ParamTensor& tensor : layout.tensors()) {
        if (!tensor.per_layer) {
            segments.push_back({tensor.name, tensor.offset, tensor.numel});
            continue;
        }
        const int64_t per_layer = tensor.numel / layout.n_layer();
        for (int layer = 0; layer < layout.n_layer(); ++layer)
            segments.push_back({"layers." + std::to_string(layer) + "." + tensor.name,
                                layout.layer_offset(tensor, layer), per_layer});
    }
    return segments;
}

NormReport make_norm_report(int64_t step, const std::vector<ParamSegment>& segments,
                            const std::vector<SegmentSums>& weights, const std::vector<SegmentSums>& grads) {
    if (weights.size() != segments.size() || grads.size() != segments.size())
        throw std::invalid_argument("make_norm_report: " + std::to_string(segments.size()) + " segments but " +
                                    std::to_string(weights.size()) + " weight and " + std::to_string(grads.size()) +
                                    " gradient sums");
    NormReport report;
    report.step = step;
    double weight_squares = 0.0, grad_squares = 0.0;
    for (size_t i = 0; i < segments.size(); ++i) {
        TensorNorms tensor;
        tensor.name = segments[i].name;
        tensor.count = segments[i].count;
        const double count = static_cast<double>(segments[i].count);
        tensor.weight_max = weights[i].abs_max;
        tensor.weight_mean = weights[i].abs_sum / count;
        tensor.grad_max = grads[i].abs_max;
        tensor.grad_mean = grads[i].abs_sum / count;
        report.weight_l1 += weights[i].abs_sum;
        report.grad_l1 += grads[i].abs_sum;
        weight_squares += weights[i].square_sum;
        grad_squares += grads[i].square_sum;
        report.tensors.push_back(tensor);
    }
    report.weight_l2 = std::sqrt(weight_squares);
    report.grad_l2 = std::sqrt(grad_squares);
    return report;
}
