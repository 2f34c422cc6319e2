// numpy's random numbers, bit for bit, where the project must agree with numpy: the seed's
// OpenWebText holdout is Hugging Face's train_test_split, whose shuffle is numpy's
// default_rng(seed).permutation(n). tests/test_numpy_random.cpp compares every piece with numpy.
//
//   default_rng(seed)  Generator(PCG64(SeedSequence(seed)))
//   SeedSequence       the seed as 32-bit words (lowest first) hashed into a pool of 4 words
//                      (M. O'Neill's seed_seq design); generate_state(n) hashes the pool, cycled,
//                      into n words
//   PCG64              a 128-bit LCG (multiplier 0x2360ED051FC65DA4'4385DF649FCCF645) with the
//                      XSL-RR output; state and increment from generate_state(4, uint64) as
//                      (state_hi, state_lo, inc_hi, inc_lo). A 32-bit draw returns the low half of
//                      a 64-bit draw and keeps its high half for the next 32-bit draw; 64-bit draws
//                      leave that kept half alone.
//   permutation(n)     arange(n) shuffled by Fisher-Yates from the last element down: element i
//                      swaps with j = random_interval(i), which draws values masked to the smallest
//                      all-ones mask >= i until one is <= i, from 32-bit draws while i < 2^32 and
//                      from 64-bit draws above (not the Lemire method of Generator.integers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace numpy_random {

// SeedSequence(entropy) for a non-negative integer seed.
class SeedSequence {
  public:
    explicit SeedSequence(uint64_t seed);
    // generate_state(words, dtype=uint32); a uint64 state is consecutive pairs, low word first.
    std::vector<uint32_t> generate_state(size_t words) const;

  private:
    uint32_t pool_[4] = {};
};

class Pcg64 {
  public:
    explicit Pcg64(const SeedSequence& seed_sequence);
    uint64_t next_uint64();  // bit_generator.random_raw()
    uint32_t next_uint32();

  private:
    unsigned __int128 state_ = 0;
    unsigned __int128 increment_ = 0;
    bool has_kept_half_ = false;
    uint32_t kept_half_ = 0;
};

// numpy.random.default_rng(seed): the parts of Generator the project needs.
class Generator {
  public:
    explicit Generator(uint64_t seed);
    // Uniform in [0, max] as numpy's random_interval (see the top of this file).
    uint64_t random_interval(uint64_t max);
    // Generator.permutation(n): a shuffled 0, 1, ..., n-1.
    std::vector<int64_t> permutation(int64_t n);
    Pcg64& bit_generator() { return bits_; }

  private:
    Pcg64 bits_;
};

}  // namespace numpy_random
