#include "host/numpy_random.h"

#include <numeric>
#include <stdexcept>
#include <utility>

namespace numpy_random {
namespace {

// SeedSequence's hashing constants (numpy/random/bit_generator.pyx).
constexpr uint32_t kInitA = 0x43b0d7e5, kMultA = 0x931e8875;
constexpr uint32_t kInitB = 0x8b51f9dd, kMultB = 0x58f38ded;
constexpr uint32_t kMixMultL = 0xca01f9dd, kMixMultR = 0x4973f715;
constexpr int kXShift = 16;
constexpr size_t kPoolWords = 4;

// Hashes `value` with the running multiplier `hash_const`, which it advances.
uint32_t hashmix(uint32_t value, uint32_t& hash_const) {
    value ^= hash_const;
    hash_const *= kMultA;
    value *= hash_const;
    return value ^ (value >> kXShift);
}

uint32_t mix(uint32_t x, uint32_t y) {
    const uint32_t result = kMixMultL * x - kMixMultR * y;
    return result ^ (result >> kXShift);
}

constexpr unsigned __int128 kPcgMultiplier =
    (static_cast<unsigned __int128>(0x2360ED051FC65DA4ull) << 64) | 0x4385DF649FCCF645ull;

}  // namespace

SeedSequence::SeedSequence(uint64_t seed) {
    // The seed's 32-bit words, lowest first; 0 is one word.
    std::vector<uint32_t> entropy = {static_cast<uint32_t>(seed)};
    if (seed >> 32) entropy.push_back(static_cast<uint32_t>(seed >> 32));

    uint32_t hash_const = kInitA;
    for (size_t i = 0; i < kPoolWords; ++i) pool_[i] = hashmix(i < entropy.size() ? entropy[i] : 0, hash_const);
    for (size_t source = 0; source < kPoolWords; ++source)
        for (size_t dest = 0; dest < kPoolWords; ++dest)
            if (source != dest) pool_[dest] = mix(pool_[dest], hashmix(pool_[source], hash_const));
    // Entropy beyond the pool's 4 words is mixed into every pool word; a 64-bit seed has at most 2.
}

std::vector<uint32_t> SeedSequence::generate_state(size_t words) const {
    std::vector<uint32_t> state(words);
    uint32_t hash_const = kInitB;
    for (size_t i = 0; i < words; ++i) {
        uint32_t value = pool_[i % kPoolWords] ^ hash_const;
        hash_const *= kMultB;
        value *= hash_const;
        state[i] = value ^ (value >> kXShift);
    }
    return state;
}

Pcg64::Pcg64(const SeedSequence& seed_sequence) {
    const std::vector<uint32_t> words = seed_sequence.generate_state(8);
    uint64_t values[4];
    for (int i = 0; i < 4; ++i) values[i] = uint64_t{words[2 * i]} | (uint64_t{words[2 * i + 1]} << 32);
    const unsigned __int128 initial_state = (static_cast<unsigned __int128>(values[0]) << 64) | values[1];
    const unsigned __int128 sequence = (static_cast<unsigned __int128>(values[2]) << 64) | values[3];
    // pcg_setseq_128_srandom_r: the increment is odd; the state is stepped around adding the seed.
    increment_ = (sequence << 1) | 1;
    state_ = 0;
    state_ = state_ * kPcgMultiplier + increment_;
    state_ += initial_state;
    state_ = state_ * kPcgMultiplier + increment_;
}

uint64_t Pcg64::next_uint64() {
    state_ = state_ * kPcgMultiplier + increment_;
    const uint64_t high = static_cast<uint64_t>(state_ >> 64), low = static_cast<uint64_t>(state_);
    const unsigned rotation = static_cast<unsigned>(state_ >> 122);
    const uint64_t folded = high ^ low;
    return (folded >> rotation) | (folded << ((64 - rotation) & 63));
}

uint32_t Pcg64::next_uint32() {
    if (has_kept_half_) {
        has_kept_half_ = false;
        return kept_half_;
    }
    const uint64_t draw = next_uint64();
    has_kept_half_ = true;
    kept_half_ = static_cast<uint32_t>(draw >> 32);
    return static_cast<uint32_t>(draw);
}

Generator::Generator(uint64_t seed) : bits_(SeedSequence(seed)) {}

uint64_t Generator::random_interval(uint64_t max) {
    if (max == 0) return 0;
    uint64_t mask = max;
    for (int shift = 1; shift <= 32; shift *= 2) mask |= mask >> shift;
    uint64_t value;
    if (max <= 0xffffffffull) {
        do {
            value = bits_.next_uint32() & mask;
        } while (value > max);
    } else {
        do {
            value = bits_.next_uint64() & mask;
        } while (value > max);
    }
    return value;
}

std::vector<int64_t> Generator::permutation(int64_t n) {
    if (n < 0) throw std::invalid_argument("permutation of a negative count " + std::to_string(n));
    std::vector<int64_t> values(static_cast<size_t>(n));
    std::iota(values.begin(), values.end(), int64_t{0});
    for (int64_t i = n - 1; i >= 1; --i)
        std::swap(values[static_cast<size_t>(i)], values[random_interval(static_cast<uint64_t>(i))]);
    return values;
}

}  // namespace numpy_random
