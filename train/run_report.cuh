// What a run tells its user: the start-up table and memory plan, one console line and one
// log.jsonl record per step (loss, lr, norm, tokens/s, MFU, memory, ETA), validation losses,
// samples, HellaSwag accuracies, the norm monitor's statistics, and the benchmark's summary
// line; the same scalars go to a TensorBoard event file beside log.jsonl (--tensorboard).
// Rank 0 speaks; the other ranks stay quiet.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "host/checkpoint.h"
#include "host/config.h"
#include "host/format.h"
#include "host/hellaswag.h"
#include "host/param_norms.h"
#include "host/run_log.h"
#include "host/run_tensorboard.h"
#include "train/batch_feed.cuh"
#include "train/evaluation.cuh"
#include "train/gpu_context.cuh"
#include "train/nccl_context.cuh"

[[noreturn]] inline void fail_run(const std::string& message) {
    std::fprintf(stderr, "error: %s\n", message.c_str());
    std::exit(2);
}

struct StepResult {
    double loss = 0.0;
    double grad_norm = 0.0;
    double lr = 0.0;
    double loss_scale = 1.0;
    std::string skipped;          // why the update was skipped ("" = applied)
    int64_t skipped_updates = 0;  // so far in this process
    double ms = 0.0;
};

// Device memory the run will take, before taking it.
struct MemoryPlan {
    static constexpr size_t kReserveBytes = size_t(1) << 30;  // cuBLASLt workspace, NCCL buffers, allocator slack

    size_t state_bytes = 0;       // parameters, gradients and AdamW state
    size_t activation_bytes = 0;  // for one device batch

    size_t total() const { return state_bytes + activation_bytes; }

    // What a plan may take on this GPU now: its free memory less the reserve.
    static size_t budget() {
        size_t free_bytes = 0, total_bytes = 0;
        CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        return free_bytes > kReserveBytes ? free_bytes - kReserveBytes : 0;
    }

    // Fails before any allocation when the plan cannot fit, saying what would.
    void check_fits(const TrainConfig& config) const {
        size_t free_bytes = 0, total_bytes = 0;
        CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        const size_t needed = total();
        if (needed + kReserveBytes <= free_bytes) return;
        const double per_sequence = double(needed) / config.device_batch;  // rough: activations dominate
        const int fits = std::max(0, (int)((double(free_bytes) - kReserveBytes) / per_sequence) - 1);
        const int smaller = std::min(fits, config.device_batch - 1);
        const std::string advice =
            smaller >= 1
                ? string_format("Try --device-batch %d (the global batch stays the same; gradient accumulation "
                                "grows), or --zero-stage 1 on several GPUs.", smaller)
                : "Not even one sequence fits: shard the state over several GPUs (--zero-stage 1 or 2), or "
                  "shorten --seq-len.";
        fail_run(string_format("the model and a device batch of %d x %d tokens need %.1f GB of GPU memory, but "
                               "only %.1f GB of %.1f GB is free.\n  %s",
                               config.device_batch, config.seq_len, needed / 1e9, free_bytes / 1e9,
                               total_bytes / 1e9, advice.c_str()));
    }
};

class RunReport {
  public:
    RunReport(const TrainConfig& config, const distributed::DistributedContext& dist, const GpuContext& gpu)
        : config_(config), dist_(dist), gpu_(gpu) {
        if (!dist_.is_main()) return;
        std::error_code error;
        std::filesystem::create_directories(config_.out_dir, error);
        if (error)
            fail_run(string_format("cannot create the run directory %s: %s", config_.out_dir.c_str(),
                                   error.message().c_str()));
        log_ = std::make_unique<RunLog>(config_.out_dir + "/log.jsonl");
        if (config_.tensorboard) tensorboard_ = std::make_unique<RunTensorBoard>(config_.out_dir);
    }

    RunLog* log() { return log_.get(); }  // rank 0's; nullptr elsewhere

    // The resolved configuration as a table, the GPU and the memory plan; config.json beside the log.
    void startup(const MemoryPlan& plan, const char* precision) const {
        if (!dist_.is_main()) return;
        std::printf("%s\n", config_.to_table().c_str());
        std::printf("GPU: %s x %d (peak %s), %s build\n", gpu_.props.name, dist_.world_size,
                    gpu_.peak.dense_tflops ? string_format("%.0f dense TFLOP/s", *gpu_.peak.dense_tflops).c_str()
                                           : "unknown: MFU shown as n/a",
                    precision);
        std::printf("memory plan: parameters, gradients and AdamW state %.2f GB; activations for %d x %d tokens %.2f GB\n",
                    plan.state_bytes / 1e9, config_.device_batch, config_.seq_len, plan.activation_bytes / 1e9);
        std::printf("run directory: %s%s\n\n", config_.out_dir.c_str(),
                    tensorboard_ ? (" (TensorBoard: tensorboard --logdir " + config_.out_dir + ")").c_str() : "");
        const std::string json = config_.to_json() + "\n";
        AtomicFileWriter config_file(config_.out_dir + "/config.json");
        config_file.write(json.data(), json.size());
        config_file.finish();
        std::fflush(stdout);
    }

    void step(int64_t step, const StepResult& result) {
        step_ms_.push_back(result.ms);
        if (!dist_.is_main()) return;
        TrainStepRecord line;
        line.step = step;
        line.total_steps = config_.steps;
        line.loss = result.loss;
        line.lr = result.lr;
        line.grad_norm = result.grad_norm;
        line.ms = result.ms;
        line.tokens_per_s = config_.tokens_per_step / (result.ms / 1000.0);
        line.mfu = mfu(line.tokens_per_s);
        line.mem_gb = gpu_.memory_used_gb();
        line.loss_scale = config_.precision == Precision::fp16 ? std::optional<double>(result.loss_scale) : std::nullopt;
        line.tokens_seen = step * config_.tokens_per_step;
        line.skipped = result.skipped;
        line.skipped_updates = result.skipped_updates;
        // ETA from the mean of the recent steps (the first steps include warm-up).
        const size_t recent = std::min<size_t>(step_ms_.size(), 20);
        const double mean_ms =
            std::accumulate(step_ms_.end() - recent, step_ms_.end(), 0.0) / std::max<size_t>(recent, 1);
        const double eta_s = mean_ms / 1000.0 * (config_.steps - step);
        if (config_.log_every > 0 && (step % config_.log_every == 0 || step == config_.steps || step == 1 ||
                                      !result.skipped.empty()))
            std::printf("%s\n", format_step_line(line, eta_s).c_str());
        log_->train(line);
        if (tensorboard_) tensorboard_->train(line);
        std::fflush(stdout);
    }

    void validation(int64_t step, double loss) {
        if (!dist_.is_main()) return;
        std::printf("step %lld | validation loss %.4f | perplexity %.2f\n", (long long)step, loss, std::exp(loss));
        log_->val(step, loss);
        if (tensorboard_) tensorboard_->split_loss("val", step, loss);
    }

    void hellaswag(int64_t step, const hellaswag::Result& result) {
        if (!dist_.is_main()) return;
        std::printf("step %lld | HellaSwag acc %.4f | acc_norm %.4f | %lld items\n", (long long)step, result.acc,
                    result.acc_norm, (long long)result.items);
        log_->hellaswag(step, result.acc, result.acc_norm, result.items);
        if (tensorboard_) tensorboard_->hellaswag(step, result.acc, result.acc_norm);
    }

    void norms(const NormReport& report) {
        if (!dist_.is_main()) return;
        log_->norms(report);
        if (tensorboard_) tensorboard_->norms(report);
    }

    // A split evaluated whole: after the last step (test), or by --eval-only (`checkpoint`: its
    // model file). A split the run does not have (loss NAN) is said to be absent.
    void evaluation(int64_t step, EvalSplit split, const SplitLoss& result, const std::string& checkpoint,
                    const std::string& pattern) {
        if (!dist_.is_main()) return;
        if (std::isnan(result.loss) && result.tokens == 0) {
            std::printf("step %lld | %s split: none (no shards match %s)\n", (long long)step, split_name(split),
                        pattern.empty() ? "--test-glob" : pattern.c_str());
            return;
        }
        std::printf("step %lld | %s loss %.4f | perplexity %.2f | %s tokens\n", (long long)step, split_name(split),
                    result.loss, std::exp(result.loss), format_count((double)result.tokens).c_str());
        log_->eval(step, split_name(split), result.loss, result.tokens, checkpoint);
        if (tensorboard_) tensorboard_->split_loss(split_name(split), step, result.loss);
        std::fflush(stdout);
    }

    void sample(int64_t step, const std::string& text) {
        if (!dist_.is_main()) return;
        std::printf("step %lld | sample:\n%s\n---\n", (long long)step, text.c_str());
        log_->sample(step, text);
    }

    // --bench-steps: the median of the timed steps gives the figures.
    void benchmark(std::vector<double> ms) const {
        std::sort(ms.begin(), ms.end());
        const double median_ms = ms[ms.size() / 2];
        const double tokens_per_s = config_.tokens_per_step / (median_ms / 1000.0);
        const std::optional<double> utilization = mfu(tokens_per_s);
        if (dist_.is_main())
            std::printf("BENCH tokens_per_s=%.0f mfu=%s peak_mem_gb=%.2f step_ms=%.2f gpu=\"%s\" gpus=%d\n",
                        tokens_per_s, utilization ? string_format("%.2f", *utilization * 100.0).c_str() : "n/a",
                        gpu_.memory_used_gb(), median_ms, gpu_.props.name, dist_.world_size);
    }

  private:
    // Model FLOPs utilization of the whole job (tokens/s over all ranks against all their GPUs'
    // peak); nullopt for a GPU whose peak is unknown.
    std::optional<double> mfu(double tokens_per_s) const {
        if (!gpu_.peak.dense_tflops) return std::nullopt;
        return model_flops_utilization(tokens_per_s, (double)config_.flops_per_token,
                                       *gpu_.peak.dense_tflops * dist_.world_size);
    }

    const TrainConfig& config_;
    const distributed::DistributedContext& dist_;
    const GpuContext& gpu_;
    std::unique_ptr<RunLog> log_;
    std::unique_ptr<RunTensorBoard> tensorboard_;  // rank 0's, with --tensorboard
    std::vector<double> step_ms_;
};
