// Which documents form the validation split: Hugging Face datasets'
// train_test_split(test_size=fraction, seed=seed, shuffle=True) over the documents in input order,
// which is how the seed holds out OpenWebText's validation documents (fraction 0.0005, seed 2357):
//
//   n_test = ceil(fraction * n)                    (Python float arithmetic; 0 < fraction < 1)
//   permutation = numpy.random.default_rng(seed).permutation(n)
//   test = permutation[:n_test]                    the held-out documents, in this order
//   train = permutation[n_test:]                   (HF: in permutation order; here input order)
//
// numpy's permutation is reproduced exactly by host/numpy_random.h.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace data_prep {

// n_test for `documents` documents; throws std::invalid_argument where train_test_split raises
// (fraction outside (0, 1), or no document left for training).
int64_t hugging_face_test_count(int64_t documents, double fraction);

class Holdout {
  public:
    // No holdout: every document trains.
    Holdout() = default;
    // train_test_split over `documents` documents (see the top of this file). Needs the
    // permutation of all documents once (8 bytes each); keeps only the held-out ones.
    Holdout(int64_t documents, double fraction, uint64_t seed);

    int64_t documents() const { return documents_; }
    // Document indices of the validation split, in its order (permutation[:n_test]).
    const std::vector<int64_t>& validation_documents() const { return validation_; }
    // Position of `document` in validation_documents(), or -1 when it trains.
    int64_t validation_position(int64_t document) const;

  private:
    int64_t documents_ = 0;
    std::vector<int64_t> validation_;
    std::vector<std::pair<int64_t, int64_t>> by_document_;  // (document, position), sorted
};

}  // namespace data_prep
