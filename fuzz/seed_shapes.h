// The small model and run the seed corpora of the checkpoint targets are written for
// (fuzz/make_seeds.cpp), and the state file target expects.
#pragma once

#include "host/checkpoint.h"

namespace fuzz {

inline ModelShape seed_model_shape() {
    ModelShape shape;
    shape.n_layer = 1;
    shape.n_embd = 4;
    shape.n_head = 2;
    shape.max_seq_len = 4;
    shape.vocab_size = 6;
    shape.padded_vocab_size = 8;
    return shape;
}

constexpr int64_t kSeedStateFloats = 16;

inline RunIdentity seed_run_identity() {
    RunIdentity identity;
    identity.shape = seed_model_shape();
    identity.rank = 0;
    identity.world_size = 1;
    identity.zero_stage = 0;
    identity.seed = 1111;
    return identity;
}

}  // namespace fuzz
