// Fixtures and helpers that the checkpoint test files (tests/test_checkpoint*.cpp) share: a
// scratch directory per test, a tiny model shape, reproducible weights, a sample state header with
// its optimizer buffers, and bit flips.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "host/checkpoint.h"
#include "tests/test_support.h"

namespace checkpoint_test {

class CheckpointTest : public ::testing::Test {
  protected:
    std::string path(const std::string& name) const { return scratch_.file(name); }
    test_support::ScratchDir scratch_{"test_checkpoint"};
    const std::string dir_ = scratch_.path.string();
};

inline ModelShape tiny_shape() {
    ModelShape shape;
    shape.n_layer = 2;
    shape.n_embd = 8;
    shape.n_head = 2;
    shape.max_seq_len = 16;
    shape.vocab_size = 50;
    shape.padded_vocab_size = 64;
    shape.scale_attn_by_inverse_layer_idx = true;
    return shape;
}

inline std::vector<float> random_floats(int64_t count, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    std::vector<float> values(static_cast<size_t>(count));
    for (float& v : values) v = normal(rng);
    return values;
}

inline StateHeader sample_state_header() {
    StateHeader header;
    header.identity.shape = tiny_shape();
    header.identity.rank = 1;
    header.identity.world_size = 2;
    header.identity.zero_stage = 1;
    header.identity.seed = 1111;
    header.step = 42;
    header.adam_step = 40;
    header.rng_state = {1, 2, 3, 0xFFFFFFFFFFFFFFFFull};
    header.loss_scale = 32768.0;
    header.clean_steps = 17;
    header.train_loader.epoch = 3;
    header.train_loader.window_in_epoch = 99;
    header.train_loader.total_windows = 12345;
    header.train_loader.seed = 1111;
    header.train_loader.seq_len = 16;
    header.train_loader.rank = 1;
    header.train_loader.world_size = 2;
    header.train_loader.shuffle = 1;
    return header;
}

struct Buffers {
    std::vector<float> master = random_floats(100, 11), m = random_floats(100, 12), v = random_floats(100, 13);
    std::vector<ConstFloatBuffer> to_write() const {
        return {{"master", master.data(), 100}, {"adam_m", m.data(), 100}, {"adam_v", v.data(), 100}};
    }
};

// Flips one bit of a file in place.
inline void flip_bit(const std::string& file, int64_t offset, int bit = 0) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(offset);
    char byte = 0;
    f.read(&byte, 1);
    byte = static_cast<char>(byte ^ (1 << bit));
    f.seekp(offset);
    f.write(&byte, 1);
}

}  // namespace checkpoint_test
