// The KV cache of generation: every layer's keys and values for up to `slots` sequences of up to
// `max_seq` positions each (the layout is kernels/attention_decode.cuh's), in one allocation of
// the model's 16-bit type, plus the decode attention's scratch. A generation step reads and
// extends it through a DecodeContext in its Pass (model/block.cuh).
#pragma once

#include <cstddef>

#include "kernels/attention_decode.cuh"
#include "kernels/common.cuh"
#include "model/param_layout.h"

class KvCache {
  public:
    // element_bytes: sizeof the model's 16-bit type T, the one keys<T>() and values<T>() hand out.
    KvCache(const ModelShape& shape, int slots, int max_seq, size_t element_bytes)
        : layers_(shape.n_layer), heads_(shape.n_head), head_dim_(shape.n_embd / shape.n_head), slots_(slots),
          max_seq_(max_seq), element_bytes_(element_bytes) {
        REQUIRE(slots >= 1 && max_seq >= 1 && max_seq <= shape.max_seq_len,
                "KV cache: %d sequences of %d positions (the model takes %d)", slots, max_seq, shape.max_seq_len);
        CUDA_CHECK(cudaMalloc(&tensors_, 2 * layers_ * tensor_elements() * element_bytes_));
        CUDA_CHECK(cudaMalloc(&scratch_, scratch_floats() * sizeof(float)));
    }
    ~KvCache() {
        cudaFree(scratch_);
        cudaFree(tensors_);
    }
    KvCache(const KvCache&) = delete;
    KvCache& operator=(const KvCache&) = delete;

    int slots() const { return slots_; }
    int max_seq() const { return max_seq_; }
    // Layer l's keys and values, (slots, NH, max_seq, HD) each.
    template <typename T> T* keys(int layer) const { return tensor<T>(2 * layer); }
    template <typename T> T* values(int layer) const { return tensor<T>(2 * layer + 1); }
    float* scratch() const { return scratch_; }  // attention_decode_scratch_floats(slots, ...)

  private:
    size_t tensor_elements() const { return (size_t)slots_ * heads_ * max_seq_ * head_dim_; }
    size_t scratch_floats() const { return attention_decode_scratch_floats(slots_, heads_, head_dim_, max_seq_); }
    template <typename T> T* tensor(int index) const {
        REQUIRE(sizeof(T) == element_bytes_, "KV cache of %zu-byte elements read as %zu-byte ones", element_bytes_,
                sizeof(T));
        REQUIRE(index >= 0 && index < 2 * layers_, "KV cache: layer %d of %d", index / 2, layers_);
        return static_cast<T*>(tensors_) + (size_t)index * tensor_elements();
    }

    int layers_, heads_, head_dim_, slots_, max_seq_;
    size_t element_bytes_;
    void* tensors_ = nullptr;
    float* scratch_ = nullptr;
};

// What a generation step's pass (B sequences of one new token each) attends with: the cache of
// sequences 0..B-1 and where each sequence's new token sits.
struct DecodeContext {
    KvCache* cache;
    const int* positions;  // (B) on the device: the new token's position in each sequence
    int max_position;      // the largest of them (known on the host: it sizes the attention's split)
};
