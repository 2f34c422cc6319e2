// Where the backward pass writes parameter gradients, and when it says they are complete.
//
// Backward adds (+=) every gradient to the views this interface hands out, or stores (=) them
// where gradient_write() says so: every element has one writer per backward pass (wte two: the
// LM head's GEMM writes every row, then the embedding lookups add theirs), so storing needs no
// cleared storage. Elements no pass writes (padding; wpe's rows past the sequence length) are
// left as they are: the storage keeps them zero. Backward calls the hooks in this order:
// before_non_layer_writes() and before_layer_writes(L-1) before its first write;
// before_layer_writes(l-1) as layer l's backward begins (pre-norm: layer l's LN1 backward writes
// layer l-1's fc_proj bias gradient); layer_ready(l) once everything that writes layer l's
// gradients is enqueued on the stream, from L-1 down to 0. wte, wpe and lnf are complete when
// backward returns. Gradient synchronisation (train/grad_sync.cuh) implements
// it: the storage, and reductions that overlap the rest of backward.
#pragma once

#include <cuda_runtime.h>

#include "kernels/common.cuh"  // GradWrite
#include "model/param_views.cuh"

class GradientSink {
  public:
    virtual ~GradientSink() = default;
    virtual const LayerParams<float>& layer_gradients(int layer) const = 0;
    virtual const NonLayerParams<float>& non_layer_gradients() const = 0;
    virtual GradWrite gradient_write() const { return GradWrite::add; }
    virtual void before_layer_writes(int /*layer*/, cudaStream_t /*stream*/) {}
    virtual void before_non_layer_writes(cudaStream_t /*stream*/) {}
    virtual void layer_ready(int /*layer*/, cudaStream_t /*stream*/) {}
};
