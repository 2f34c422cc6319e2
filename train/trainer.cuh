// The training loop: steps, and between them validation, samples and checkpoints; after the
// last step the test split. --eval-only runs none of it: it evaluates a checkpoint's weights on
// the validation and test splits. Each stage lives in its own unit; this class wires them and
// reads as the order of a step:
//   host/device_batch.h       --device-batch auto: the largest B that fits the GPU
//   train/batch_feed.cuh      token windows -> pinned buffers -> the GPU
//   model/gpt2.cuh            forward and backward
//   train/grad_sync*.cuh      gradient storage and reduction over ranks (the ZeRO strategies)
//   train/step_graph.cuh      --cuda-graphs: the micro-steps and the update replayed from CUDA graphs
//   train/checkpointing.cuh   initial weights, checkpoints, resume
//   train/matmul_tuning.cuh   the GEMM algorithms: timed in the first step, saved, replayed on resume
//   train/evaluation.cuh      validation and test loss
//   train/hellaswag_eval.cuh  HellaSwag accuracy (--hellaswag-every)
//   train/norm_monitor.cuh    per-tensor weight and gradient statistics (--norm-monitor-every)
//   train/sampler.cuh         text samples
//   train/run_report.cuh      console lines, log.jsonl, the benchmark line
#pragma once

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <vector>

#include <cuda_profiler_api.h>

#include "host/config.h"
#include "host/device_batch.h"
#include "host/loss_scaler.h"
#include "host/stop_request.h"
#include "host/update_guard.h"
#include "model/gpt2.cuh"
#include "train/batch_feed.cuh"
#include "train/checkpointing.cuh"
#include "train/evaluation.cuh"
#include "train/gpu_context.cuh"
#include "train/grad_sync_choice.cuh"
#include "train/hellaswag_eval.cuh"
#include "train/matmul_tuning.cuh"
#include "train/model_options.cuh"
#include "train/nccl_context.cuh"
#include "train/norm_monitor.cuh"
#include "train/run_report.cuh"
#include "train/sampler.cuh"
#include "train/step_graph.cuh"
#include "train/step_timeline_events.cuh"

template <typename T, typename R> class Trainer {
  public:
    Trainer(const TrainConfig& config, DistributedContext& dist)
        : gpu_(config.matmul_engine), config_(with_device_batch_for_gpu(config, dist)), dist_(dist),
          feed_(config_, dist_), report_(config_, dist_, gpu_),
          shard_(optimizer_shard_for(config_, dist_)), sampler_(config_),
          loss_scaler_(config_.loss_scale_init, config_.loss_scale_growth_interval,
                       config_.precision == Precision::fp16),
          guard_({config_.nonfinite_limit, config_.skip_loss_zscore, config_.skip_norm_zscore, config_.zscore_window}) {
        memory_plan().check_fits(config_);
        model_ = std::make_unique<Gpt2Model<T, R>>(model_options(), config_.base_init_std, config_.device_batch,
                                                   config_.seq_len, shard_);
        grad_sync_ = make_gradient_sync<T>(config_, dist_, model_->layout(), shard_, timeline_);
        checkpointer_ = std::make_unique<Checkpointer<T, R>>(config_, dist_, *model_, *grad_sync_);
        graphs_ = std::make_unique<StepGraphs>(
            config_.cuda_graphs, [&](bool last) { return grad_sync_->backward_communicates(last); },
            config_.timeline_step, dist_.is_main());
        if (config_.hellaswag_every > 0) hellaswag_.emplace(hellaswag_evaluator(config_, dist_));
        if (config_.norm_monitor_every > 0)
            norm_monitor_.emplace(model_->layout(), shard_, grad_sync_->zero_stage() > 0);
        CUDA_CHECK(cudaMallocHost(&losses_host_, sizeof(float) * config_.grad_accum * tokens_per_micro()));
    }
    ~Trainer() { cudaFreeHost(losses_host_); }
    Trainer(const Trainer&) = delete;
    Trainer& operator=(const Trainer&) = delete;

    // Returns the process's exit status: 0, or kExitStopped after a stop signal's checkpoint.
    int run() {
        if (config_.eval_only) return evaluate_checkpoint();
        report_.startup(memory_plan(), precision_name<T>());
        if (dist_.is_main()) std::printf("%s", graphs_->notes().c_str());
        if (const std::optional<StateHeader> state = checkpointer_->resume(gpu_.stream)) restore(*state);
        else checkpointer_->initialize_weights(gpu_.stream);
        matmul_tuning_.start(*gpu_.matmul, config_, checkpointer_->resumed_model_path(), dist_);
        if (config_.bench_steps > 0) return benchmark();
        stop_request::install();
        try {
            return train();
        } catch (const std::exception& error) {
            save_after_error(error);
            throw;
        }
    }

  private:
    int train() {
        while (step_ < config_.steps) {
            report_.step(step_, train_step());
            const bool last = step_ == config_.steps;
            if (due(config_.val_every, last)) report_.validation(step_, evaluate(EvalSplit::validation).loss);
            if (hellaswag_ && due(config_.hellaswag_every, last))
                report_.hellaswag(step_, hellaswag_->evaluate(*model_, *gpu_.matmul, config_.device_batch, dist_,
                                                              gpu_.stream));
            if (due(config_.sample_every, last) && dist_.is_main())
                report_.sample(step_, sampler_.sample(*model_, *gpu_.matmul, gpu_.stream));
            const int stop_signal = agreed_stop_signal();
            if (due(config_.checkpoint_every, false) || due(config_.keep_checkpoint_every, false) || last || stop_signal)
                checkpointer_->save(state_header(), report_.log(), gpu_.stream);
            if (stop_signal) {
                if (dist_.is_main())
                    std::printf("stopped at step %lld on signal %d (%s) after its checkpoint; --resume auto "
                                "continues from it\n", (long long)step_, stop_signal, strsignal(stop_signal));
                return kExitStopped;
            }
        }
        if (config_.test_at_end && feed_.has(EvalSplit::test))
            report_.evaluation(step_, EvalSplit::test, evaluate(EvalSplit::test), "", config_.test_pattern);
        return 0;
    }

    SplitLoss evaluate(EvalSplit split) {
        return evaluate_split(*model_, feed_, split, *gpu_.matmul, config_.device_batch, config_.seq_len, dist_,
                              gpu_.stream);
    }

    // --eval-only: the checkpoint's loss and perplexity on the validation split and the test
    // split (where the dataset has one), into the console and out_dir's log as "eval" events,
    // and its HellaSwag accuracy with --hellaswag-every;
    // no training, no config.json (out_dir may be the run's own directory).
    int evaluate_checkpoint() {
        const CheckpointFiles checkpoint = checkpointer_->load_weights_to_evaluate(gpu_.stream);
        RunMatmulTuning::replay_beside(*gpu_.matmul, checkpoint.model_path, dist_.is_main());
        if (dist_.is_main())
            std::printf("evaluating %s (step %lld): %s, %s, %d x %d tokens per batch on %d GPU(s)\n",
                        checkpoint.model_path.c_str(), (long long)checkpoint.step, config_.experiment.c_str(),
                        precision_name<T>(), config_.device_batch, config_.seq_len, dist_.world_size);
        report_.evaluation(checkpoint.step, EvalSplit::validation, evaluate(EvalSplit::validation),
                           checkpoint.model_path, config_.val_pattern);
        report_.evaluation(checkpoint.step, EvalSplit::test, evaluate(EvalSplit::test), checkpoint.model_path,
                           config_.test_pattern);
        if (hellaswag_)
            report_.hellaswag(checkpoint.step, hellaswag_->evaluate(*model_, *gpu_.matmul, config_.device_batch, dist_,
                                                                    gpu_.stream));
        return 0;
    }

    // --device-batch auto: the largest B that divides the per-GPU sequences of a step and whose
    // memory plan fits this GPU (host/device_batch.h); with several GPUs, the smallest of their
    // choices, so that all take the same B. The choice and why go to the console.
    static TrainConfig with_device_batch_for_gpu(const TrainConfig& config, DistributedContext& dist) {
        if (config.device_batch != kDeviceBatchAuto) return config;
        const DeviceBatchChoice choice = choose_device_batch(
            config.sequences_per_gpu, MemoryPlan::budget(),
            [&](int batch) { return memory_plan(config, dist, batch).total(); }, kMaxDeviceBatch);
        // No Min among the reductions: the largest negated choice is the smallest.
        const int agreed = dist.is_distributed()
                               ? -(int)dist.all_reduce_host(-(float)choice.batch, ReduceOp::Max, "device batch")
                               : choice.batch;
        if (dist.is_main()) {
            std::printf("%s", choice.reason.c_str());
            if (agreed != choice.batch) std::printf("; %d, the smallest choice over the %d GPUs", agreed, dist.world_size);
            std::printf("\n");
        }
        return config.with_device_batch(agreed);
    }

    // A stop signal reached at least one rank: every rank stops after the same step.
    int agreed_stop_signal() {
        const int local = stop_request::signal_number();
        if (!dist_.is_distributed()) return local;
        return (int)dist_.all_reduce_host((float)local, ReduceOp::Max, "stop request");
    }

    // An error inside the training loop (a bad shard, a full disk): one process saves what it
    // safely can, the state after the last complete step, unless its weights are not finite.
    // With several ranks the others' state is out of reach; the last checkpoint stands.
    void save_after_error(const std::exception& error) {
        if (dist_.is_distributed()) {
            std::fprintf(stderr, "rank %d: %s\n  no checkpoint written (the other ranks' state is out of reach); "
                                 "--resume auto continues from the last one\n", dist_.rank, error.what());
            return;
        }
        if (step_in_progress_) {  // the step's update never happened: back to where it began
            --step_;
            feed_.train_loader().restore(loader_at_step_start_);
        }
        std::fprintf(stderr, "error at step %lld: %s\nwriting a checkpoint of step %lld first\n",
                     (long long)step_ + step_in_progress_, error.what(), (long long)step_);
        checkpointer_->save(state_header(), report_.log(), gpu_.stream, /*refuse_non_finite=*/true);
    }

    // One optimizer step: grad_accum micro-steps, gradient reduction, clipping, AdamW.
    StepResult train_step() {
        const auto start = std::chrono::steady_clock::now();
        loader_at_step_start_ = feed_.train_loader().state();
        step_in_progress_ = true;
        ++step_;
        const bool profiled = step_ == config_.profile_step;  // only this step reaches `ncu --profile-from-start off`
        if (profiled) CUDA_CHECK(cudaProfilerStart());
        timeline_.begin(step_ == config_.timeline_step && dist_.is_main(), gpu_.stream);
        graphs_->begin_step(step_, step_ == config_.timeline_step);
        // The loss is a mean over the global batch; the fp16 loss scale rides on the gradient.
        const double loss_scale = loss_scaler_.scale();
        const float grad_scale = (float)(loss_scale / (double)targets_per_step());

        grad_sync_->begin_step(gpu_.stream);
        for (int micro = 0; micro < config_.grad_accum; ++micro) run_micro_step(micro, grad_scale);
        timeline_.mark(TimelineMark::BackwardEnd, gpu_.stream);
        grad_sync_->finish_step(gpu_.stream);
        if (injects_nan()) grad_sync_->inject_nan(gpu_.stream);
        timeline_.mark(TimelineMark::GradientsReduced, gpu_.stream);

        StepResult result;
        result.grad_norm = std::sqrt(grad_sync_->norm_squared(gpu_.stream)) / loss_scale;
        result.lr = config_.lr_schedule().lr_at(step_ - 1);
        result.loss_scale = loss_scale;
        result.loss = mean_loss();
        if (norm_monitor_ && due(config_.norm_monitor_every, false))  // before the update changes the weights
            report_.norms(norm_monitor_->measure(step_, model_->parameters().master(), grad_sync_->shard_gradients(),
                                                 loss_scale, dist_, gpu_.stream));
        apply_update(result);
        step_in_progress_ = false;
        timeline_.mark(TimelineMark::StepEnd, gpu_.stream);
        CUDA_CHECK(cudaStreamSynchronize(gpu_.stream));
        matmul_tuning_.after_first_step(*gpu_.matmul, config_, dist_);
        if (timeline_.enabled()) std::printf("%s", timeline_.report(step_).c_str());
        if (profiled) CUDA_CHECK(cudaProfilerStop());
        result.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        return result;
    }

    // Forward and backward of one micro-batch; all but the embedding backward from the micro-step
    // graph in steps that replay graphs (train/step_graph.cuh).
    void run_micro_step(int micro, float grad_scale) {
        const int B = config_.device_batch, seq = config_.seq_len, N = B * seq;
        const int32_t* inputs = feed_.next_train_batch(micro, model_->device_tokens(), model_->device_targets(), gpu_.stream);
        const DropoutSchedule dropout = training_dropout((step_ - 1) * config_.grad_accum + micro);
        const bool last = micro == config_.grad_accum - 1;
        grad_sync_->begin_micro_step(last);
        graphs_->micro_step(
            dropout, model_->options().shape.n_layer, {B, seq, grad_scale, grad_sync_->gradient_write()},
            !grad_sync_->backward_communicates(last),
            [&](const DropoutSchedule& schedule) {
                model_->forward(*gpu_.matmul, B, seq, schedule, true, grad_scale, gpu_.stream);
                if (last) timeline_.mark(TimelineMark::BackwardStart, gpu_.stream);
                model_->backward_to_embedding(*gpu_.matmul, B, seq, schedule, *grad_sync_, gpu_.stream);
            },
            gpu_.stream);
        CUDA_CHECK(cudaMemcpyAsync(losses_host_ + (size_t)micro * N, model_->losses(), sizeof(float) * N,
                                   cudaMemcpyDeviceToHost, gpu_.stream));
        model_->embedding_backward(B, seq, inputs, *grad_sync_, gpu_.stream);
        grad_sync_->end_micro_step(gpu_.stream);
    }

    // Clipping and AdamW, unless the step is skipped: a non-finite loss or norm (fp16: an
    // overflow, which also lowers the loss scale), or a spike (UpdateGuard); the skipped steps
    // leave weights and optimizer state as they were.
    void apply_update(StepResult& result) {
        const UpdateGuard::Verdict verdict = guard_.judge(result.loss, result.grad_norm);
        if (verdict == UpdateGuard::Verdict::stop)
            fail_run(string_format("step %lld: the loss or the gradient norm was not finite in %d steps in a row "
                                   "(loss %.4f, norm %.4g); the run diverged. Resume from an earlier checkpoint with "
                                   "a lower --lr or a longer --warmup-steps (--nonfinite-limit sets how many).",
                                   (long long)step_, guard_.nonfinite_in_a_row(), result.loss, result.grad_norm));
        const bool finite = verdict != UpdateGuard::Verdict::skip_nonfinite;
        const bool scale_ok = loss_scaler_.update(finite);
        result.skipped_updates = guard_.skipped();
        if (!scale_ok || verdict != UpdateGuard::Verdict::apply) {
            result.skipped = loss_scaler_.dynamic() && !finite ? "fp16 overflow, loss scale halved" : verdict_name(verdict);
            return;
        }
        const double clip = config_.grad_clip > 0 && result.grad_norm > config_.grad_clip
                                ? config_.grad_clip / (result.grad_norm + 1e-6)
                                : 1.0;
        ++adam_step_;
        const AdamWSettings adamw{(float)result.lr,           (float)config_.beta1,        (float)config_.beta2,
                                  (float)config_.adam_eps,    (float)config_.weight_decay, (float)(clip / result.loss_scale)};
        ModelParameters<T>& params = model_->parameters();
        params.set_adamw_step(adamw, (int)adam_step_, gpu_.stream);
        graphs_->optimizer([&] { params.apply_adamw(grad_sync_->shard_gradients(), gpu_.stream); }, gpu_.stream);
        grad_sync_->parameters_updated(params.compute_copy(), gpu_.stream);
    }

    // Mean loss of the step over all ranks (the per-token losses of every micro-step are on the
    // host once the step's stream has finished).
    double mean_loss() {
        const size_t count = (size_t)config_.grad_accum * tokens_per_micro();
        const double local = std::accumulate(losses_host_, losses_host_ + count, 0.0);
        return dist_.all_reduce_host((float)local, ReduceOp::Sum, "loss") / (double)targets_per_step();
    }

    // --bench-steps N: N steps on real data; the median after warm-up gives the figures.
    int benchmark() {
        const int warmup = std::min<int64_t>(5, std::max<int64_t>(1, config_.bench_steps / 4));
        std::vector<double> ms;
        for (int64_t i = 0; i < config_.bench_steps; ++i) {
            const StepResult result = train_step();
            if (i >= warmup) ms.push_back(result.ms);
            if (dist_.is_main())
                std::printf("bench step %lld/%lld | loss %.4f | %.2f ms\n", (long long)(i + 1),
                            (long long)config_.bench_steps, result.loss, result.ms);
        }
        REQUIRE(!ms.empty(), "--bench-steps must exceed the %d warm-up steps", warmup);
        report_.benchmark(ms);
        return 0;
    }

    StateHeader state_header() {
        StateHeader header;
        header.step = step_;
        header.adam_step = (int64_t)adam_step_;
        header.rng_state = sampler_.rng().state;
        header.loss_scale = loss_scaler_.scale();
        header.clean_steps = loss_scaler_.clean_steps();
        header.train_loader = feed_.train_loader().state();
        return header;
    }
    void restore(const StateHeader& header) {
        step_ = header.step;
        adam_step_ = (uint64_t)header.adam_step;
        sampler_.rng().state = header.rng_state;
        loss_scaler_.restore(header.loss_scale, header.clean_steps);
        feed_.train_loader().restore(header.train_loader);
    }

    ModelOptions model_options() const { return model_options_for(config_); }
    MemoryPlan memory_plan() const { return memory_plan(config_, dist_, config_.device_batch); }
    static MemoryPlan memory_plan(const TrainConfig& config, const DistributedContext& dist, int batch) {
        const OptimizerShard shard = optimizer_shard_for(config, dist);
        const ParamLayout layout(config.model_shape(), config.base_init_std);
        return {ModelParameters<T>::bytes(shard) + gradient_bytes<T>(config, layout, shard),
                Gpt2Model<T, R>::activation_bytes(model_options_for(config), batch, config.seq_len)};
    }
    DropoutSchedule training_dropout(int64_t micro) const {
        DropoutSchedule schedule;
        schedule.seed = config_.seed;
        schedule.micro = micro;
        schedule.world_size = dist_.world_size;
        schedule.rank = dist_.rank;
        return schedule;
    }
    bool injects_nan() const {
        return config_.inject_nan_step > 0 && step_ >= config_.inject_nan_step &&
               step_ < config_.inject_nan_step + config_.inject_nan_count;
    }
    bool due(int64_t every, bool last) const { return every > 0 && (step_ % every == 0 || last); }
    int tokens_per_micro() const { return config_.device_batch * config_.seq_len; }
    int64_t targets_per_step() const { return (int64_t)tokens_per_micro() * config_.grad_accum * dist_.world_size; }

    GpuContext gpu_;  // first: --device-batch auto measures the free memory with its workspace taken
    TrainConfig config_;
    DistributedContext& dist_;
    BatchFeed feed_;
    RunReport report_;
    OptimizerShard shard_;
    TextSampler sampler_;
    LossScaler loss_scaler_;
    UpdateGuard guard_;      // skips non-finite and spiking steps; stops a diverged run
    StepTimeline timeline_;  // --timeline-step
    RunMatmulTuning matmul_tuning_;  // the GEMM algorithms: timed in the first step, saved, replayed on resume
    std::unique_ptr<Gpt2Model<T, R>> model_;
    std::unique_ptr<GradientSync<T>> grad_sync_;
    std::unique_ptr<Checkpointer<T, R>> checkpointer_;
    std::unique_ptr<StepGraphs> graphs_;           // replays or enqueues a step's launches (--cuda-graphs)
    std::optional<HellaSwagEvaluator> hellaswag_;  // with --hellaswag-every
    std::optional<NormMonitor> norm_monitor_;      // with --norm-monitor-every
    float* losses_host_ = nullptr;  // (grad_accum, B*T) per-token losses of the current step
    int64_t step_ = 0;              // optimizer steps taken (skipped fp16 steps included)
    bool step_in_progress_ = false;       // from a step's start until its update is applied or skipped
    DataLoaderState loader_at_step_start_;
    uint64_t adam_step_ = 0;        // updates applied (AdamW bias correction)
};
