// The run's record: one JSON object per line in <out_dir>/log.jsonl, and the console line of a
// training step.
//
// Events (every line has "event" and "step"):
//   train       total, loss, lr, grad_norm, ms, tokens_per_s, mfu, mem_gb, loss_scale
//   val         loss, ppl
//   eval        split ("val" or "test"), loss, ppl, tokens (targets evaluated), checkpoint: a split
//               evaluated whole by --eval-only (checkpoint: the model file) or after the last step
//               (checkpoint: null); kept apart from "val", which checkpoint retention ranks by
//   sample      text
//   checkpoint  path
//   hellaswag   acc, acc_norm, items
//   norms       weight_l1, weight_l2, grad_l1, grad_l2, and tensors: {name: {weight_max,
//               weight_mean, grad_max, grad_mean}} (host/param_norms.h)
// Values that are unknown or not finite are JSON null: mfu on a GPU without a known peak
// (host/gpu_specs.h), loss_scale in bf16 runs, a NaN loss. mfu is a fraction (0.45 = 45%).
// Each line is flushed when written, so `tail -f` and a crash both see every finished event.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "host/param_norms.h"

struct TrainStepRecord {
    int64_t step = 0;            // optimizer steps completed (1 after the first)
    int64_t total_steps = 0;
    double loss = 0.0;
    double lr = 0.0;
    double grad_norm = 0.0;
    double ms = 0.0;             // wall time of this step
    double tokens_per_s = 0.0;
    std::optional<double> mfu;   // fraction of the GPU's peak
    double mem_gb = 0.0;         // peak device memory
    std::optional<double> loss_scale;  // fp16 only
    int64_t tokens_seen = 0;     // training tokens of all ranks up to this step
    std::string skipped;         // why this step's update was skipped ("" = applied)
    int64_t skipped_updates = 0; // updates skipped so far in this process
};

class RunLog {
  public:
    // Opens `path` for appending (a resumed run continues its log). Throws naming the file.
    explicit RunLog(const std::string& path);
    ~RunLog();
    RunLog(const RunLog&) = delete;
    RunLog& operator=(const RunLog&) = delete;

    void train(const TrainStepRecord& record);
    void val(int64_t step, double loss);  // ppl = exp(loss)
    // checkpoint: the model file evaluated, "" when it is the run's own weights.
    void eval(int64_t step, const std::string& split, double loss, int64_t tokens, const std::string& checkpoint);
    // `text` may be any bytes (a sample can end inside a UTF-8 character): invalid UTF-8 is
    // written as U+FFFD.
    void sample(int64_t step, const std::string& text);
    void checkpoint(int64_t step, const std::string& path);
    void hellaswag(int64_t step, double acc, double acc_norm, int64_t items);
    void norms(const NormReport& report);

  private:
    void write_line(const std::string& line);
    std::string path_;
    std::FILE* file_ = nullptr;
};

// "step   120/400000 | loss 3.4567 | ppl 31.71 | lr 6.00e-04 | norm 0.8123 | 310.2 ms |
//  1,690,123 tok/s | 62.9M tokens | MFU 45.1% | mem 15.8 GB | ETA 34:26:40" (plus "| scale 65536"
// for fp16 before the ETA, and "| update skipped: REASON" at the end). ETA absent -> "n/a".
std::string format_step_line(const TrainStepRecord& record, std::optional<double> eta_seconds);
// 950, 12.3K, 62.9M, 1.50B, 2.10T (three significant digits from a thousand on).
std::string format_count(double count);
// h:mm:ss, hours unbounded ("123:04:05"); negative or non-finite -> "n/a".
std::string format_duration(double seconds);
