#include "data_prep/src/holdout.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "host/numpy_random.h"

namespace data_prep {

int64_t hugging_face_test_count(int64_t documents, double fraction) {
    if (!(fraction > 0.0 && fraction < 1.0))
        throw std::invalid_argument("the validation fraction must be in (0, 1), not " + std::to_string(fraction));
    const int64_t test = static_cast<int64_t>(std::ceil(fraction * static_cast<double>(documents)));
    if (documents > 0 && test >= documents)
        throw std::invalid_argument("a validation fraction of " + std::to_string(fraction) + " of " +
                                    std::to_string(documents) +
                                    " document(s) leaves none for training: give more documents or a smaller "
                                    "--val-fraction");
    return test;
}

Holdout::Holdout(int64_t documents, double fraction, uint64_t seed) : documents_(documents) {
    const int64_t test = hugging_face_test_count(documents, fraction);
    if (documents == 0) return;
    std::vector<int64_t> permutation = numpy_random::Generator(seed).permutation(documents);
    validation_.assign(permutation.begin(), permutation.begin() + test);
    for (int64_t position = 0; position < test; ++position)
        by_document_.emplace_back(validation_[static_cast<size_t>(position)], position);
    std::sort(by_document_.begin(), by_document_.end());
}

int64_t Holdout::validation_position(int64_t document) const {
    const auto found = std::lower_bound(by_document_.begin(), by_document_.end(), std::make_pair(document, int64_t{0}));
    return found != by_document_.end() && found->first == document ? found->second : -1;
}

}  // namespace data_prep
