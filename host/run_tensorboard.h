// The run's scalars in TensorBoard (host/tensorboard_writer.h), beside log.jsonl and from the
// same records, so both say the same (tags below; "perf/mfu" is a fraction like the log's):
//   train      train/loss, train/perplexity, train/lr, train/grad_norm, train/tokens_seen,
//              train/loss_scale (fp16), perf/tokens_per_s, perf/step_ms, perf/mfu (known GPUs),
//              perf/memory_gb
//   val, test  val/loss, val/perplexity (during training and of whole splits), test/loss,
//              test/perplexity
//   hellaswag  hellaswag/acc, hellaswag/acc_norm
//   norms      norms/weight_l1, norms/weight_l2, norms/grad_l1, norms/grad_l2, and per tensor
//              norms/<name>/{weight_max, weight_mean, grad_max, grad_mean}
// Each call flushes, so TensorBoard sees a running job and a crash loses nothing written.
#pragma once

#include <cstdint>
#include <string>

#include "host/param_norms.h"
#include "host/run_log.h"
#include "host/tensorboard_writer.h"

class RunTensorBoard {
  public:
    // A new event file in `dir` (a resumed run adds a file; TensorBoard reads them as one run).
    explicit RunTensorBoard(const std::string& dir) : writer_(dir) {}

    void train(const TrainStepRecord& record);
    // "<split>/loss" and "<split>/perplexity"; split "val" or "test".
    void split_loss(const std::string& split, int64_t step, double loss);
    void hellaswag(int64_t step, double acc, double acc_norm);
    void norms(const NormReport& report);
    const std::string& path() const { return writer_.path(); }

  private:
    TensorBoardWriter writer_;
};
