// The model a configuration describes: its shape and what it computes beyond it (LayerNorm
// epsilon, dropout rates, GELU recomputation, the attention kernels). The trainer and the
// evaluation-only runs (train/inference_model.cuh) build their models from this one place.
#pragma once

#include "host/config.h"
#include "model/options.cuh"

inline ModelOptions model_options_for(const TrainConfig& config) {
    ModelOptions options;
    options.shape = config.model_shape();
    options.layernorm_eps = (float)config.layernorm_eps;
    options.dropout_embd = (float)config.dropout_embd;
    options.dropout_resid = (float)config.dropout_resid;
    options.dropout_attn = (float)config.dropout_attn;
    options.recompute_gelu = config.recompute_gelu;
    options.attention_kernel = config.attention_kernel;
    return options;
}
