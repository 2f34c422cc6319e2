// The largest model shape the project handles: the trainer's flags allow no more, and a model
// file whose header goes beyond is corrupt (host/checkpoint). Parameter counts and byte sizes of
// shapes within these limits fit int64.
#pragma once

namespace model_limits {

constexpr int kMaxLayers = 1024;
constexpr int kMaxEmbd = 65536;
constexpr int kMaxHeads = 1024;
constexpr int kMaxSeqLen = 1 << 20;
constexpr int kMaxVocab = 1 << 24;
constexpr int kMaxPadMultiple = 65536;  // padded_vocab_size - vocab_size < this

}  // namespace model_limits
