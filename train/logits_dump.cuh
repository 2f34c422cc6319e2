// --logits-in TOKENS --logits-out LOGITS with -e CHECKPOINT: one forward pass over given tokens,
// its logits written for another program to compare (scripts/test_hf_interop.py holds them
// against transformers' on the exported model). No training and no training data.
//   in:  tensor bundle (host/tensor_bundle.h) with "tokens", int32 (B, T), T <= max_seq_len
//   out: tensor bundle with "logits", float32 (B, T, vocab_size): the padded columns dropped
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "host/config.h"
#include "host/format.h"
#include "host/tensor_bundle.h"
#include "train/inference_model.cuh"

// The tokens of a --logits-in bundle, checked against the model; returns (B, T) in *B, *T.
inline std::vector<int32_t> read_logits_tokens(const TrainConfig& config, int* B, int* T) {
    const tensor_bundle::Bundle bundle = tensor_bundle::Bundle::load(config.logits_in);
    const tensor_bundle::Tensor& tokens = bundle.get("tokens");
    if (tokens.dtype() != tensor_bundle::DType::kInt32 || tokens.shape.size() != 2)
        throw std::runtime_error(string_format("--logits-in %s: \"tokens\" is %s %s; expected int32 (B, T)",
                                               config.logits_in.c_str(), tensor_bundle::dtype_name(tokens.dtype()),
                                               tensor_bundle::shape_string(tokens.shape).c_str()));
    *B = (int)tokens.shape[0];
    *T = (int)tokens.shape[1];
    if (*B < 1 || *T < 1 || *T > config.max_seq_len)
        throw std::runtime_error(string_format("--logits-in %s: tokens (%d, %d) need B >= 1 and 1 <= T <= the "
                                               "model's max_seq_len %d", config.logits_in.c_str(), *B, *T,
                                               config.max_seq_len));
    const std::vector<int32_t>& values = std::get<std::vector<int32_t>>(tokens.values);
    for (size_t i = 0; i < values.size(); ++i)
        if (values[i] < 0 || values[i] >= config.vocab_size)
            throw std::runtime_error(string_format("--logits-in %s: token %d at position %zu is outside the "
                                                   "vocabulary [0, %d)", config.logits_in.c_str(), values[i], i,
                                                   config.vocab_size));
    return values;
}

template <typename T, typename R> int dump_logits(const TrainConfig& config) {
    int B = 0, seq = 0;
    const std::vector<int32_t> tokens = read_logits_tokens(config, &B, &seq);
    InferenceModel<T, R> inference(config, B, seq);
    Gpt2Model<T, R>& model = inference.model();
    cudaStream_t stream = inference.gpu().stream;
    CUDA_CHECK(cudaMemcpyAsync(model.device_tokens(), tokens.data(), tokens.size() * sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream));
    inference.forward(B, seq, /*with_targets=*/false);
    const int V = config.vocab_size, Vp = config.padded_vocab_size;
    const size_t rows = (size_t)B * seq;
    std::vector<T> padded(rows * Vp);
    CUDA_CHECK(cudaMemcpyAsync(padded.data(), model.logits(), padded.size() * sizeof(T), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<float> logits(rows * V);
    for (size_t row = 0; row < rows; ++row)
        for (int v = 0; v < V; ++v) logits[row * V + v] = to_float(padded[row * Vp + v]);
    tensor_bundle::Bundle out;
    out.add("logits", {B, seq, V}, std::move(logits));
    out.save(config.logits_out);
    std::printf("logits of %s over %d x %d tokens -> %s\n", config.init_from.c_str(), B, seq, config.logits_out.c_str());
    return 0;
}
