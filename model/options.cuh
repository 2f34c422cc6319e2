// What the model computes beyond its shape (model/param_layout.h): LayerNorm epsilon, the three
// dropout rates and where each dropout mask comes from, whether the GELU output is stored, and
// which attention kernels compute it.
#pragma once

#include <cstdint>

#include "host/attention_kernel.h"
#include "kernels/common.cuh"
#include "model/param_layout.h"

struct ModelOptions {
    ModelShape shape;
    float layernorm_eps = 1e-5f;
    float dropout_embd = 0.0f;
    float dropout_resid = 0.0f;
    float dropout_attn = 0.0f;
    // Store only each MLP's GELU input and recompute gelu(pre_gelu) in backward (one element-wise
    // pass per layer) instead of keeping L x (N, 4C) GELU outputs.
    bool recompute_gelu = false;
    // The family the attention forward and backward run (resolve_attention_kernel() checks that
    // this GPU and build can run it).
    AttentionKernelChoice attention_kernel = AttentionKernelChoice::automatic;
};

// Where one pass's dropout masks come from. Every dropout site of every micro-step of every rank
// has its own Philox offset, so no two masks repeat and backward regenerates each:
//   micro = (step - 1) * grad_accum + micro_step
//   offset = (micro * world_size + rank) * (1 + 3 * n_layer) + site
// (dev/reference/philox.py computes the same; DropoutSites names the sites.) The first term is
// the pass's share, pass_offset(); a pass captured in a CUDA graph reads it at run time from
// `pass_offset_on_device` instead of `micro` (DropoutParams::offset_base).
struct DropoutSchedule {
    uint64_t seed = 0;
    int64_t micro = 0;
    int world_size = 1;
    int rank = 0;
    bool training = true;
    const uint64_t* pass_offset_on_device = nullptr;  // device memory holding pass_offset(); replaces micro

    static uint64_t sites_per_pass(int n_layer) { return 1 + 3 * (uint64_t)n_layer; }
    uint64_t pass_offset(int n_layer) const {
        return ((uint64_t)micro * world_size + rank) * sites_per_pass(n_layer);
    }
};

// The dropout sites of one pass, by name: site 0 is the embedding; layer l has 1 + 3l for the
// attention probabilities, 2 + 3l after attention and 3 + 3l after the MLP. Outside training
// every rate is 0.
class DropoutSites {
  public:
    DropoutSites(const DropoutSchedule& schedule, const ModelOptions& options)
        : schedule_(schedule), options_(options) {}

    DropoutParams embedding() const { return site(options_.dropout_embd, 0); }
    DropoutParams attention_probs(int layer) const { return site(options_.dropout_attn, 1 + 3 * layer); }
    DropoutParams after_attention(int layer) const { return site(options_.dropout_resid, 2 + 3 * layer); }
    DropoutParams after_mlp(int layer) const { return site(options_.dropout_resid, 3 + 3 * layer); }

  private:
    DropoutParams site(float p, int site_index) const {
        DropoutParams params;
        params.p = schedule_.training ? p : 0.0f;
        params.seed = schedule_.seed;
        params.offset_base = schedule_.pass_offset_on_device;
        params.offset = (params.offset_base ? 0 : schedule_.pass_offset(options_.shape.n_layer)) + site_index;
        return params;
    }
    DropoutSchedule schedule_;
    const ModelOptions& options_;
};
