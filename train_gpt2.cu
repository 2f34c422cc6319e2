// train_gpt2cu: trains GPT-2 and GPT-3-style models from token shards, on one GPU or many.
//
//   make train_gpt2cu && ./train_gpt2cu -e d12                 one GPU, the `tiny` dataset
//   mpirun -np 8 ./train_gpt2cu -e gpt2l                       a node of 8 GPUs (or --nproc 8)
//   ./train_gpt2cu -e gpt3xl --print-config                    the resolved experiment as JSON
//
// main() is the table of contents: launch -> configuration -> ranks and GPU -> Trainer::run().
// The Trainer's stages (weights, resume, step, evaluation, samples, checkpoints, logging) are one
// method each; the model's math lives in model/gpt2.cuh, the kernels in kernels/.
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <cuda_profiler_api.h>
#include <sys/stat.h>

#include "host/checkpoint.h"
#include "host/config.h"
#include "host/dataloader.h"
#include "host/format.h"
#include "host/gpu_specs.h"
#include "host/loss_scaler.h"
#include "host/rank_shard.h"
#include "host/run_log.h"
#include "host/step_timeline.h"
#include "host/tokenizer.h"
#include "model/gpt2.cuh"
#include "train/nccl_context.cuh"

using distributed::DistributedContext;
using distributed::ReduceOp;

// ---------------------------------------------------------------------------------------------
// Per-process GPU state, passed explicitly (no globals).

struct GpuContext {
    cudaStream_t stream = nullptr;
    cudaDeviceProp props{};
    GpuPeak peak;
    std::unique_ptr<MatmulContext> matmul;

    GpuContext() {
        int device = 0;
        CUDA_CHECK(cudaGetDevice(&device));
        CUDA_CHECK(cudaGetDeviceProperties(&props, device));
        CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        peak = gpu_peak_for(props.name);
        // Always the fused cuBLASLt epilogues (falling back only where cuBLASLt has no algorithm):
        // a timing-based choice could differ between runs and break bit-exact reproducibility.
        matmul = std::make_unique<MatmulContext>(MatmulTuning::kAlwaysFused);
    }
    ~GpuContext() {
        matmul.reset();
        cudaStreamDestroy(stream);
    }
    double memory_used_gb() const {
        size_t free_bytes = 0, total_bytes = 0;
        CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        return (total_bytes - free_bytes) / 1e9;
    }
};

// Host buffers one micro-step's tokens pass through on their way to the GPU. Two sets, so the
// loader fills one while the previous copy may still be in flight.
struct PinnedBatch {
    int32_t* window = nullptr;   // (B, T+1) straight from the loader
    int32_t* inputs = nullptr;   // (B, T)
    int32_t* targets = nullptr;  // (B, T)
    cudaEvent_t copied = nullptr;

    PinnedBatch(int B, int T) {
        CUDA_CHECK(cudaMallocHost(&window, sizeof(int32_t) * B * (T + 1)));
        CUDA_CHECK(cudaMallocHost(&inputs, sizeof(int32_t) * B * T));
        CUDA_CHECK(cudaMallocHost(&targets, sizeof(int32_t) * B * T));
        CUDA_CHECK(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming));
    }
    ~PinnedBatch() {
        cudaFreeHost(window);
        cudaFreeHost(inputs);
        cudaFreeHost(targets);
        cudaEventDestroy(copied);
    }
    PinnedBatch(const PinnedBatch&) = delete;
    PinnedBatch& operator=(const PinnedBatch&) = delete;

    // Splits the (B, T+1) windows into inputs [0, T) and targets [1, T+1).
    void split(int B, int T) {
        for (int b = 0; b < B; ++b) {
            std::copy_n(window + (size_t)b * (T + 1), T, inputs + (size_t)b * T);
            std::copy_n(window + (size_t)b * (T + 1) + 1, T, targets + (size_t)b * T);
        }
    }
};

struct StepResult {
    double loss = 0.0;
    double grad_norm = 0.0;
    double lr = 0.0;
    double loss_scale = 1.0;
    bool skipped = false;  // fp16 overflow: no update
    double ms = 0.0;
};

// The sampler's random numbers: xoshiro256** (Blackman & Vigna), whose whole state is four
// words, so it goes into the checkpoint and resumed runs sample the same text.
struct SampleRng {
    std::array<uint64_t, 4> state{};

    SampleRng() = default;
    explicit SampleRng(uint64_t seed) {
        for (uint64_t& word : state) {  // splitmix64 expands the seed
            seed += 0x9E3779B97F4A7C15ull;
            uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            word = z ^ (z >> 31);
        }
    }
    uint64_t next() {
        const uint64_t result = rotl(state[1] * 5, 7) * 9;
        const uint64_t t = state[1] << 17;
        state[2] ^= state[0];
        state[3] ^= state[1];
        state[1] ^= state[2];
        state[0] ^= state[3];
        state[2] ^= t;
        state[3] = rotl(state[3], 45);
        return result;
    }
    double uniform() { return (next() >> 11) * 0x1.0p-53; }  // [0, 1)

  private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
};

[[noreturn]] void fail(const std::string& message) {
    std::fprintf(stderr, "error: %s\n", message.c_str());
    std::exit(2);
}

// --timeline-step: a CUDA event at each mark of one step, summarized after the step's final
// synchronization (host/step_timeline.h says what each mark means).
class StepTimeline {
  public:
    StepTimeline() = default;
    StepTimeline(const StepTimeline&) = delete;
    StepTimeline& operator=(const StepTimeline&) = delete;
    ~StepTimeline() { clear(); }

    // Records this step's marks when `enabled`; until then mark() does nothing.
    void begin(bool enabled, cudaStream_t stream) {
        clear();
        enabled_ = enabled;
        mark(TimelineMark::StepStart, stream);
    }
    bool enabled() const { return enabled_; }
    void mark(TimelineMark what, cudaStream_t stream, int layer = -1) {
        if (!enabled_) return;
        cudaEvent_t event = nullptr;
        CUDA_CHECK(cudaEventCreate(&event));
        CUDA_CHECK(cudaEventRecord(event, stream));
        events_.push_back({what, layer, event});
    }
    // After the step's streams are synchronized.
    std::string report(long long step) {
        std::vector<TimedMark> marks;
        for (const Recorded& r : events_) {
            float ms = 0.0f;
            CUDA_CHECK(cudaEventElapsedTime(&ms, events_.front().event, r.event));
            marks.push_back({r.what, r.layer, ms});
        }
        clear();
        return summarize_step_timeline(step, marks);
    }

  private:
    struct Recorded {
        TimelineMark what;
        int layer;
        cudaEvent_t event;
    };
    void clear() {
        for (const Recorded& r : events_) cudaEventDestroy(r.event);
        events_.clear();
        enabled_ = false;
    }
    bool enabled_ = false;
    std::vector<Recorded> events_;
};

// ---------------------------------------------------------------------------------------------

template <typename T, typename R> class Trainer {
  public:
    Trainer(const TrainConfig& config, DistributedContext& dist)
        : config_(config), dist_(dist), options_(model_options(config)),
          shard_(optimizer_shard(config, dist)),
          loss_scaler_(config.loss_scale_init, config.loss_scale_growth_interval, config.precision == Precision::fp16) {
        // Data first: a missing or bad dataset is reported before the slow GPU set-up.
        train_loader_ = std::make_unique<DataLoader>(loader_options(config_.train_pattern, true));
        if (config_.val_every > 0 && config_.bench_steps == 0)
            val_loader_ = std::make_unique<DataLoader>(loader_options(config_.val_pattern, false));
        check_memory_fits();
        model_ = std::make_unique<Gpt2Model<T, R>>(options_, config_.base_init_std, config_.device_batch,
                                                   config_.seq_len, shard_);
        if (overlaps_grad_reduce() || config_.zero_stage == 2) plan_gradient_buckets();
        for (auto& batch : pinned_) batch = std::make_unique<PinnedBatch>(config_.device_batch, config_.seq_len);
        CUDA_CHECK(cudaMallocHost(&losses_host_, sizeof(float) * config_.grad_accum * tokens_per_micro()));
        CUDA_CHECK(cudaMallocHost(&norm_host_, sizeof(float)));
        CUDA_CHECK(cudaMalloc(&norm_device_, sizeof(float)));
        CUDA_CHECK(cudaMalloc(&norm_scratch_, sizeof(float) * global_norm_squared_scratch_floats()));
        sample_rng_ = SampleRng(config_.seed);
        if (dist_.is_main()) {
            mkdir_p(config_.out_dir);
            log_ = std::make_unique<RunLog>(config_.out_dir + "/log.jsonl");
        }
    }
    ~Trainer() {
        cudaFreeHost(losses_host_);
        cudaFreeHost(norm_host_);
        cudaFree(norm_device_);
        cudaFree(norm_scratch_);
    }

    int run() {
        print_startup();
        if (!resume_from_checkpoint()) initialize_weights();
        if (config_.bench_steps > 0) return benchmark();

        std::vector<double> step_ms;
        while (step_ < config_.steps) {
            const StepResult result = train_step();
            step_ms.push_back(result.ms);
            if (dist_.is_main()) log_step(result, step_ms);
            const bool last = step_ == config_.steps;
            if (config_.val_every > 0 && (step_ % config_.val_every == 0 || last)) log_validation(evaluate());
            if (config_.sample_every > 0 && (step_ % config_.sample_every == 0 || last)) log_sample();
            if ((config_.checkpoint_every > 0 && step_ % config_.checkpoint_every == 0) || last) save_checkpoint();
        }
        return 0;
    }

  private:
    // ------------------------------------------------------------------------------------------
    // Set-up

    static ModelOptions model_options(const TrainConfig& config) {
        ModelOptions options;
        options.shape = config.model_shape();
        options.layernorm_eps = (float)config.layernorm_eps;
        options.dropout_embd = (float)config.dropout_embd;
        options.dropout_resid = (float)config.dropout_resid;
        options.dropout_attn = (float)config.dropout_attn;
        options.recompute_gelu = config.recompute_gelu;
        return options;
    }

    static OptimizerShard optimizer_shard(const TrainConfig& config, const DistributedContext& dist) {
        const int64_t n = config.num_params;
        if (config.zero_stage == 0) return {0, n, (int64_t)distributed::shard_of(n, 0, 1).padded_count};
        const distributed::Shard shard = distributed::shard_of(n, dist.rank, dist.world_size);
        return {(int64_t)shard.begin, (int64_t)shard.end, (int64_t)shard.padded_count, config.zero_stage == 2};
    }

    DataLoaderOptions loader_options(const std::string& pattern, bool training) const {
        DataLoaderOptions options;
        options.pattern = pattern;
        options.batch_size = config_.device_batch;
        options.seq_len = config_.seq_len;
        options.rank = dist_.rank;
        options.world_size = dist_.world_size;
        options.seed = config_.seed;
        options.shuffle = training;
        options.max_tokens = training ? 0 : config_.val_tokens;
        options.vocab_size = config_.vocab_size;
        options.role = training ? "training" : "validation";
        return options;
    }

    int tokens_per_micro() const { return config_.device_batch * config_.seq_len; }

    // Fails before any allocation when the plan cannot fit, saying what would.
    void check_memory_fits() const {
        size_t free_bytes = 0, total_bytes = 0;
        CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        const size_t needed = Gpt2Model<T, R>::parameter_bytes(options_.shape, shard_) +
                              Gpt2Model<T, R>::activation_bytes(options_, config_.device_batch, config_.seq_len);
        const size_t reserve = size_t(1) << 30;  // cuBLASLt workspace, NCCL buffers, allocator slack
        if (needed + reserve > free_bytes) {
            const double per_sequence = double(needed) / config_.device_batch;  // rough: activations dominate
            const int fits = std::max(0, (int)((double(free_bytes) - reserve) / per_sequence) - 1);
            fail(string_format("the model and a device batch of %d x %d tokens need %.1f GB of GPU memory, but "
                               "only %.1f GB of %.1f GB is free.\n  Try --device-batch %d (the global batch "
                               "stays the same; gradient accumulation grows), or --zero-stage 1 on several GPUs.",
                               config_.device_batch, config_.seq_len, needed / 1e9, free_bytes / 1e9,
                               total_bytes / 1e9, std::max(1, fits)));
        }
    }

    void print_startup() const {
        if (!dist_.is_main()) return;
        std::printf("%s\n", config_.to_table().c_str());
        std::printf("GPU: %s x %d (peak %s), %s build\n", gpu_.props.name, dist_.world_size,
                    gpu_.peak.dense_tflops ? string_format("%.0f dense TFLOP/s", *gpu_.peak.dense_tflops).c_str()
                                           : "unknown: MFU shown as n/a",
                    precision_name<T>());
        std::printf("memory plan: parameters, gradients and AdamW state %.2f GB; activations for %d x %d tokens %.2f GB\n",
                    Gpt2Model<T, R>::parameter_bytes(options_.shape, shard_) / 1e9, config_.device_batch,
                    config_.seq_len,
                    Gpt2Model<T, R>::activation_bytes(options_, config_.device_batch, config_.seq_len) / 1e9);
        std::printf("run directory: %s\n\n", config_.out_dir.c_str());
        const std::string json = config_.to_json() + "\n";
        AtomicFileWriter config_file(config_.out_dir + "/config.json");
        config_file.write(json.data(), json.size());
        config_file.finish();
        std::fflush(stdout);
    }

    void initialize_weights() {
        if (!config_.init_from.empty()) {
            std::vector<float> weights(model_->num_params());
            read_model_params(config_.init_from, options_.shape, weights.data(), 0, model_->num_params());
            CUDA_CHECK(cudaMemcpy(model_->weight_staging(), weights.data(), weights.size() * sizeof(float),
                                  cudaMemcpyHostToDevice));
        } else {
            model_->init_weights_into_staging(config_.seed, gpu_.stream);
        }
        model_->finish_weights(gpu_.stream);
        CUDA_CHECK(cudaStreamSynchronize(gpu_.stream));
    }

    // ------------------------------------------------------------------------------------------
    // One optimizer step: grad_accum micro-steps, gradient reduction, clipping, AdamW.

    StepResult train_step() {
        const auto start = std::chrono::steady_clock::now();
        ++step_;
        // --profile-step: only this step's kernels reach `ncu --profile-from-start off`.
        const bool profiled = step_ == config_.profile_step;
        if (profiled) CUDA_CHECK(cudaProfilerStart());
        timeline_.begin(step_ == config_.timeline_step && dist_.is_main(), gpu_.stream);
        const int B = config_.device_batch, seq = config_.seq_len, N = B * seq;
        const int64_t targets_per_step = (int64_t)N * config_.grad_accum * dist_.world_size;
        // The loss is a mean over the global batch; the fp16 loss scale rides on the gradient.
        const double loss_scale = loss_scaler_.scale();
        const float grad_scale = (float)(loss_scale / (double)targets_per_step);

        model_->zero_grads(gpu_.stream);
        // With overlap, the last micro-step's backward hands each finished layer to the comm stream;
        // the earlier micro-steps only accumulate locally, so each bucket is sent once per step.
        // ZeRO-2 keeps no full gradient to accumulate into: every micro-step sends every layer to
        // the ranks that own it.
        std::function<void(int)> reduce_layer;
        if (config_.zero_stage == 2 || overlaps_grad_reduce()) {
            reduce_layer = [this](int layer) {
                timeline_.mark(TimelineMark::LayerHandoff, gpu_.stream, layer);
                if (config_.zero_stage == 2) {
                    reduce_bucket_to_owners(layer_buckets_[layer]);
                    model_->release_layer_gradients(layer, dist_.comm_stream);
                } else {
                    all_reduce_bucket(layer_buckets_[layer]);
                }
                timeline_.mark(TimelineMark::LayerReduced, dist_.comm_stream, layer);
            };
        }
        for (int micro = 0; micro < config_.grad_accum; ++micro) {
            PinnedBatch& batch = next_train_batch(micro);
            DropoutSchedule rng = dropout_schedule((step_ - 1) * config_.grad_accum + micro, true);
            model_->forward(*gpu_.matmul, B, seq, rng, true, grad_scale, gpu_.stream);
            CUDA_CHECK(cudaMemcpyAsync(losses_host_ + (size_t)micro * N, model_->losses(), sizeof(float) * N,
                                       cudaMemcpyDeviceToHost, gpu_.stream));
            const bool last_micro = micro == config_.grad_accum - 1;
            if (last_micro) timeline_.mark(TimelineMark::BackwardStart, gpu_.stream);
            model_->backward(*gpu_.matmul, B, seq, rng, batch.inputs, gpu_.stream,
                             last_micro || config_.zero_stage == 2 ? reduce_layer : nullptr);
            if (config_.zero_stage == 2) {
                reduce_bucket_to_owners(non_layer_bucket_);
                model_->release_non_layer_gradients(dist_.comm_stream);
            }
        }

        timeline_.mark(TimelineMark::BackwardEnd, gpu_.stream);

        // Gradients: summed over ranks (ZeRO-0: all of them; ZeRO-1: each rank its shard; ZeRO-2:
        // summed into each rank's shard during backward).
        const OptimizerShard& shard = model_->shard();
        if (config_.zero_stage == 2) {
            dist_.compute_waits_for_comm(gpu_.stream);
        } else if (dist_.is_distributed()) {
            if (overlaps_grad_reduce()) {
                all_reduce_bucket(non_layer_bucket_);  // the layers' buckets are in flight already
            } else if (config_.zero_stage == 0) {
                dist_.comm_waits_for(gpu_.stream);
                dist_.all_reduce(model_->grads(), shard.padded_total, ReduceOp::Sum, "gradient all-reduce");
            } else {
                dist_.comm_waits_for(gpu_.stream);
                dist_.reduce_scatter(model_->grads(), model_->grads() + shard.begin, shard.end - shard.begin,
                                     ReduceOp::Sum, "gradient reduce-scatter");
            }
            dist_.compute_waits_for_comm(gpu_.stream);
        }
        timeline_.mark(TimelineMark::GradientsReduced, gpu_.stream);
        global_norm_squared(norm_device_, model_->shard_grads(), shard.end - shard.begin, norm_scratch_, gpu_.stream);
        CUDA_CHECK(cudaMemcpyAsync(norm_host_, norm_device_, sizeof(float), cudaMemcpyDeviceToHost, gpu_.stream));
        CUDA_CHECK(cudaStreamSynchronize(gpu_.stream));
        double norm_squared = *norm_host_;
        if (config_.zero_stage > 0) norm_squared = dist_.all_reduce_host((float)norm_squared, ReduceOp::Sum, "gradient norm");

        StepResult result;
        result.grad_norm = std::sqrt(norm_squared) / loss_scale;
        result.lr = config_.lr_schedule().lr_at(step_ - 1);
        result.loss_scale = loss_scale;
        result.loss = mean_loss(targets_per_step);
        const bool finite = std::isfinite(result.grad_norm);
        // bf16 has the range of fp32: a non-finite gradient there is a diverged run. fp16 skips
        // the step and lowers the scale (LossScaler).
        if (!finite && !loss_scaler_.dynamic())
            fail(string_format("step %lld: the gradient norm is not finite (loss %.4f); the run diverged. "
                               "Try a lower --lr or a longer --warmup-steps.", (long long)step_, result.loss));
        result.skipped = !loss_scaler_.update(finite);
        if (!result.skipped) {
            const double clip = config_.grad_clip > 0 && result.grad_norm > config_.grad_clip
                                    ? config_.grad_clip / (result.grad_norm + 1e-6)
                                    : 1.0;
            ++adam_step_;
            model_->optimizer_step((float)result.lr, (float)config_.beta1, (float)config_.beta2,
                                   (float)config_.adam_eps, (float)config_.weight_decay,
                                   (float)(clip / loss_scale), (int)adam_step_, gpu_.stream);
            if (config_.zero_stage > 0 && dist_.is_distributed()) {
                dist_.comm_waits_for(gpu_.stream);
                dist_.all_gather(model_->params() + shard.begin, model_->params(), shard.end - shard.begin,
                                 "parameter all-gather");
                dist_.compute_waits_for_comm(gpu_.stream);
            }
        }
        timeline_.mark(TimelineMark::StepEnd, gpu_.stream);
        CUDA_CHECK(cudaStreamSynchronize(gpu_.stream));
        if (timeline_.enabled()) std::printf("%s", timeline_.report(step_).c_str());
        if (profiled) CUDA_CHECK(cudaProfilerStop());
        result.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        return result;
    }

    // ZeRO-0 only: ZeRO-1's reduce-scatter gives each rank one contiguous shard of the flat
    // arena, which cuts across the per-layer buckets, so it stays one collective after backward.
    bool overlaps_grad_reduce() const {
        return config_.overlap_grad_reduce && config_.zero_stage == 0 && dist_.is_distributed();
    }

    // ZeRO-2: the part of a slice that one rank's optimizer shard holds.
    struct OwnedPiece {
        float* data;
        int64_t offset, count;
        int owner;
    };
    struct GradientBucket {
        std::vector<GradientSlice> slices;
        std::vector<OwnedPiece> pieces;  // ZeRO-2: the slices cut at shard boundaries
        std::string what;                // names it in NCCL error and timeout messages
    };

    // One bucket per layer (its slice of each per-layer tensor) and one for wte, wpe and lnf,
    // which are final only after the embedding backward. The arena's padding past num_params
    // is zero on every rank and stays so: no bucket needs it.
    void plan_gradient_buckets() {
        const char* verb = config_.zero_stage == 2 ? "reduce" : "all-reduce";
        auto bucket = [&](std::vector<GradientSlice> slices, std::string what) {
            GradientBucket planned{std::move(slices), {}, std::move(what)};
            if (config_.zero_stage == 2)
                for (const GradientSlice& slice : planned.slices)
                    for (int rank = 0; rank < dist_.world_size; ++rank) {
                        const distributed::Shard owned =
                            distributed::shard_of(config_.num_params, rank, dist_.world_size);
                        const int64_t begin = std::max(slice.offset, (int64_t)owned.begin);
                        const int64_t end = std::min(slice.offset + slice.count, (int64_t)owned.end);
                        if (begin < end)
                            planned.pieces.push_back({slice.data + (begin - slice.offset), begin, end - begin, rank});
                    }
            return planned;
        };
        for (int layer = 0; layer < options_.shape.n_layer; ++layer)
            layer_buckets_.push_back(
                bucket(model_->layer_gradient_slices(layer), string_format("gradient %s, layer %d", verb, layer)));
        non_layer_bucket_ = bucket(model_->non_layer_gradient_slices(),
                                   string_format("gradient %s, embeddings and final LayerNorm", verb));
    }

    // Sums one bucket over ranks in place on the comm stream, after the work enqueued on the
    // compute stream so far: one NCCL group, so its ~12 slices go out as one launch.
    void all_reduce_bucket(const GradientBucket& bucket) {
        dist_.comm_waits_for(gpu_.stream);
        dist_.group_begin();
        for (const GradientSlice& slice : bucket.slices)
            dist_.all_reduce(slice.data, (size_t)slice.count, ReduceOp::Sum, bucket.what.c_str());
        dist_.group_end(bucket.what.c_str());
    }

    // ZeRO-2: sums each slice of one bucket onto the rank whose optimizer shard holds it (a slice
    // that crosses a shard boundary goes to two), which adds it to its accumulated shard; all on
    // the comm stream, after the work enqueued on the compute stream so far.
    void reduce_bucket_to_owners(const GradientBucket& bucket) {
        dist_.comm_waits_for(gpu_.stream);
        dist_.group_begin();
        for (const OwnedPiece& piece : bucket.pieces)
            dist_.reduce(piece.data, piece.data, (size_t)piece.count, piece.owner, ReduceOp::Sum, bucket.what.c_str());
        dist_.group_end(bucket.what.c_str());
        const OptimizerShard& shard = model_->shard();
        for (const OwnedPiece& piece : bucket.pieces)
            if (piece.owner == dist_.rank)
                accumulate(model_->shard_grads() + (piece.offset - shard.begin), piece.data, (size_t)piece.count,
                           dist_.comm_stream);
    }

    // Loads the next training batch into one of the two pinned sets and starts its upload.
    PinnedBatch& next_train_batch(int micro) {
        PinnedBatch& batch = *pinned_[micro % 2];
        CUDA_CHECK(cudaEventSynchronize(batch.copied));  // its previous upload is done
        train_loader_->next_batch(batch.window);
        upload(batch);
        return batch;
    }

    void upload(PinnedBatch& batch) {
        const int B = config_.device_batch, seq = config_.seq_len;
        batch.split(B, seq);
        CUDA_CHECK(cudaMemcpyAsync(model_->device_tokens(), batch.inputs, sizeof(int32_t) * B * seq,
                                   cudaMemcpyHostToDevice, gpu_.stream));
        CUDA_CHECK(cudaMemcpyAsync(model_->device_targets(), batch.targets, sizeof(int32_t) * B * seq,
                                   cudaMemcpyHostToDevice, gpu_.stream));
        CUDA_CHECK(cudaEventRecord(batch.copied, gpu_.stream));
    }

    DropoutSchedule dropout_schedule(int64_t micro, bool training) const {
        DropoutSchedule rng;
        rng.seed = config_.seed;
        rng.micro = micro;
        rng.world_size = dist_.world_size;
        rng.rank = dist_.rank;
        rng.training = training;
        return rng;
    }

    // Mean loss of the step over all ranks (the per-token losses of every micro-step are on the
    // host once the step's stream has finished).
    double mean_loss(int64_t targets_per_step) {
        const size_t count = (size_t)config_.grad_accum * tokens_per_micro();
        const double local = std::accumulate(losses_host_, losses_host_ + count, 0.0);
        return dist_.all_reduce_host((float)local, ReduceOp::Sum, "loss") / (double)targets_per_step;
    }

    // ------------------------------------------------------------------------------------------
    // Validation: mean loss over the (capped) validation split, dropout off.

    double evaluate() {
        if (!val_loader_) return NAN;
        const int B = config_.device_batch, seq = config_.seq_len, N = B * seq;
        val_loader_->reset();
        const int64_t batches = val_loader_->batches_per_epoch();
        double loss_sum = 0.0;
        std::vector<float> losses(N);
        PinnedBatch& batch = *pinned_[0];
        for (int64_t i = 0; i < batches; ++i) {
            CUDA_CHECK(cudaEventSynchronize(batch.copied));
            val_loader_->next_batch(batch.window);
            upload(batch);
            model_->forward(*gpu_.matmul, B, seq, dropout_schedule(0, false), true, 0.0f, gpu_.stream);
            CUDA_CHECK(cudaMemcpyAsync(losses.data(), model_->losses(), sizeof(float) * N, cudaMemcpyDeviceToHost,
                                       gpu_.stream));
            CUDA_CHECK(cudaStreamSynchronize(gpu_.stream));
            loss_sum += std::accumulate(losses.begin(), losses.end(), 0.0);
        }
        const double total = dist_.all_reduce_host((float)loss_sum, ReduceOp::Sum, "validation loss");
        return total / ((double)batches * N * dist_.world_size);
    }

    void log_validation(double loss) {
        if (!dist_.is_main()) return;
        std::printf("step %lld | validation loss %.4f | perplexity %.2f\n", (long long)step_, loss, std::exp(loss));
        log_->val(step_, loss);
    }

    // ------------------------------------------------------------------------------------------
    // Samples: autoregressive generation from <|endoftext|> on rank 0 (temperature, top-k).
    // Each token runs one forward pass over a fixed window (batch 1), so one set of matmul
    // shapes serves every length; causal attention keeps the padding from leaking backwards.

    void log_sample() {
        if (!dist_.is_main()) return;
        const std::string text = sample_text();
        std::printf("step %lld | sample:\n%s\n---\n", (long long)step_, text.c_str());
        log_->sample(step_, text);
    }

    std::string sample_text() {
        const int window = std::min(config_.seq_len, (config_.sample_tokens + 1 + 63) / 64 * 64);
        const int Vp = options_.shape.padded_vocab_size, V = options_.shape.vocab_size;
        std::vector<int32_t> tokens(window, Gpt2Tokenizer::kEndOfText);
        std::vector<T> logits_row(Vp);
        std::vector<std::pair<float, int>> candidates(V);
        const int count = std::min(config_.sample_tokens, window - 1);
        for (int position = 0; position < count; ++position) {
            CUDA_CHECK(cudaMemcpyAsync(model_->device_tokens(), tokens.data(), sizeof(int32_t) * window,
                                       cudaMemcpyHostToDevice, gpu_.stream));
            model_->forward(*gpu_.matmul, 1, window, dropout_schedule(0, false), false, 0.0f, gpu_.stream);
            CUDA_CHECK(cudaMemcpyAsync(logits_row.data(), model_->logits() + (size_t)position * Vp, sizeof(T) * Vp,
                                       cudaMemcpyDeviceToHost, gpu_.stream));
            CUDA_CHECK(cudaStreamSynchronize(gpu_.stream));
            for (int v = 0; v < V; ++v) candidates[v] = {to_float(logits_row[v]), v};
            tokens[position + 1] = sample_token(candidates);
        }
        std::vector<int> generated(tokens.begin() + 1, tokens.begin() + 1 + count);
        return tokenizer().decode(generated);
    }

    int sample_token(std::vector<std::pair<float, int>>& candidates) {
        const int k = config_.top_k > 0 ? std::min<int>(config_.top_k, candidates.size()) : (int)candidates.size();
        std::partial_sort(candidates.begin(), candidates.begin() + k, candidates.end(),
                          [](const auto& a, const auto& b) { return a.first > b.first; });
        const double temperature = std::max(config_.temperature, 1e-6);
        std::vector<double> weights(k);
        for (int i = 0; i < k; ++i) weights[i] = std::exp((candidates[i].first - candidates[0].first) / temperature);
        const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
        double u = sample_rng_.uniform() * total;
        for (int i = 0; i < k; ++i) {
            u -= weights[i];
            if (u < 0.0) return candidates[i].second;
        }
        return candidates[k - 1].second;
    }

    const Gpt2Tokenizer& tokenizer() {
        if (!tokenizer_) {
            const std::string dir = config_.vocab_dir.empty() ? Gpt2Tokenizer::default_vocab_dir() : config_.vocab_dir;
            tokenizer_ = std::make_unique<Gpt2Tokenizer>(Gpt2Tokenizer::load(dir));
        }
        return *tokenizer_;
    }

    // ------------------------------------------------------------------------------------------
    // Checkpoints: the model file (full fp32 weights, rank 0) and one state file per rank (its
    // master/AdamW shard, step, loss scale, data position). Resuming restores all of it, so the
    // continued run computes exactly what an uninterrupted one would.

    void save_checkpoint() {
        const OptimizerShard& shard = model_->shard();
        float* full_master = model_->weight_staging();  // the gradients are dead until the next step
        const int64_t owned = shard.end - shard.begin;
        CUDA_CHECK(cudaMemcpyAsync(full_master + shard.begin, model_->master(), owned * sizeof(float),
                                   cudaMemcpyDeviceToDevice, gpu_.stream));
        if (config_.zero_stage > 0 && dist_.is_distributed()) {
            dist_.comm_waits_for(gpu_.stream);
            dist_.all_gather(full_master + shard.begin, full_master, owned, "checkpoint weights all-gather");
            dist_.compute_waits_for_comm(gpu_.stream);
        }
        CUDA_CHECK(cudaStreamSynchronize(gpu_.stream));
        if (dist_.is_main()) {
            std::vector<float> weights(model_->num_params());
            CUDA_CHECK(cudaMemcpy(weights.data(), full_master, weights.size() * sizeof(float), cudaMemcpyDeviceToHost));
            const std::string path = model_file_path(config_.out_dir, step_);
            write_model_file(path, options_.shape, step_, weights.data());
            log_->checkpoint(step_, path);
            std::printf("step %lld | checkpoint %s\n", (long long)step_, path.c_str());
        }
        std::vector<float> master(owned), m(owned), v(owned);
        CUDA_CHECK(cudaMemcpy(master.data(), model_->master(), owned * sizeof(float), cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(m.data(), model_->adam_m(), owned * sizeof(float), cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(v.data(), model_->adam_v(), owned * sizeof(float), cudaMemcpyDeviceToHost));
        write_state_file(state_file_path(config_.out_dir, step_, dist_.rank), state_header(),
                         {{"master", master.data(), owned}, {"adam_m", m.data(), owned}, {"adam_v", v.data(), owned}});
        model_->zero_grads(gpu_.stream);
        dist_.barrier();  // every rank's state file exists before anyone goes on
    }

    StateHeader state_header() const {
        StateHeader header;
        header.identity = run_identity();
        header.step = step_;
        header.adam_step = (int64_t)adam_step_;
        header.rng_state = sample_rng_.state;
        header.loss_scale = loss_scaler_.scale();
        header.clean_steps = loss_scaler_.clean_steps();
        header.train_loader = train_loader_->state();
        return header;
    }

    RunIdentity run_identity() const {
        RunIdentity identity;
        identity.shape = options_.shape;
        identity.rank = dist_.rank;
        identity.world_size = dist_.world_size;
        identity.zero_stage = config_.zero_stage;
        identity.seed = config_.seed;
        return identity;
    }

    bool resume_from_checkpoint() {
        const std::optional<CheckpointFiles> files =
            locate_resume_checkpoint(config_.resume, config_.out_dir, dist_.world_size);
        if (!files) return false;
        std::vector<float> weights(model_->num_params());
        read_model_params(files->model_path, options_.shape, weights.data(), 0, model_->num_params());
        CUDA_CHECK(cudaMemcpy(model_->weight_staging(), weights.data(), weights.size() * sizeof(float),
                              cudaMemcpyHostToDevice));
        model_->finish_weights(gpu_.stream);
        const int64_t owned = model_->shard().end - model_->shard().begin;
        std::vector<float> master(owned), m(owned), v(owned);
        const StateHeader header = read_state_file(files->state_paths[dist_.rank], run_identity(),
                                                   {{"master", master.data(), owned},
                                                    {"adam_m", m.data(), owned},
                                                    {"adam_v", v.data(), owned}});
        // The master shard comes from the state file: the model file's weights are the same
        // numbers, but the state file is the one that is per rank and exact under ZeRO.
        CUDA_CHECK(cudaMemcpy(model_->master(), master.data(), owned * sizeof(float), cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(model_->adam_m(), m.data(), owned * sizeof(float), cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(model_->adam_v(), v.data(), owned * sizeof(float), cudaMemcpyHostToDevice));
        step_ = header.step;
        adam_step_ = (uint64_t)header.adam_step;
        sample_rng_.state = header.rng_state;
        loss_scaler_.restore(header.loss_scale, header.clean_steps);
        train_loader_->restore(header.train_loader);
        if (dist_.is_main())
            std::printf("resumed from %s at step %lld\n\n", files->model_path.c_str(), (long long)step_);
        return true;
    }

    // ------------------------------------------------------------------------------------------
    // Output

    void log_step(const StepResult& result, const std::vector<double>& step_ms) {
        TrainStepRecord line;
        line.step = step_;
        line.total_steps = config_.steps;
        line.loss = result.loss;
        line.lr = result.lr;
        line.grad_norm = result.grad_norm;
        line.ms = result.ms;
        line.tokens_per_s = config_.tokens_per_step / (result.ms / 1000.0);
        line.mfu = mfu(line.tokens_per_s);
        line.mem_gb = gpu_.memory_used_gb();
        line.loss_scale = config_.precision == Precision::fp16 ? std::optional<double>(result.loss_scale) : std::nullopt;
        // ETA from the mean of the recent steps (the first steps include warm-up).
        const size_t recent = std::min<size_t>(step_ms.size(), 20);
        const double mean_ms =
            std::accumulate(step_ms.end() - recent, step_ms.end(), 0.0) / std::max<size_t>(recent, 1);
        const double eta_s = mean_ms / 1000.0 * (config_.steps - step_);
        if (config_.log_every > 0 && (step_ % config_.log_every == 0 || step_ == config_.steps || step_ == 1))
            std::printf("%s%s\n", format_step_line(line, eta_s).c_str(), result.skipped ? " | fp16 overflow: step skipped" : "");
        log_->train(line);
        std::fflush(stdout);
    }

    // Model FLOPs utilization of the whole job (tokens/s over all ranks against all their GPUs'
    // peak); nullopt for a GPU whose peak is unknown.
    std::optional<double> mfu(double tokens_per_s) const {
        if (!gpu_.peak.dense_tflops) return std::nullopt;
        return model_flops_utilization(tokens_per_s, (double)config_.flops_per_token,
                                       *gpu_.peak.dense_tflops * dist_.world_size);
    }

    // --bench-steps N: N steps on real data; the median after warm-up gives the figures.
    int benchmark() {
        const int warmup = std::min<int64_t>(5, std::max<int64_t>(1, config_.bench_steps / 4));
        std::vector<double> ms;
        for (int64_t i = 0; i < config_.bench_steps; ++i) {
            const StepResult result = train_step();
            if (i >= warmup) ms.push_back(result.ms);
            if (dist_.is_main())
                std::printf("bench step %lld/%lld | loss %.4f | %.1f ms\n", (long long)(i + 1),
                            (long long)config_.bench_steps, result.loss, result.ms);
        }
        REQUIRE(!ms.empty(), "--bench-steps must exceed the %d warm-up steps", warmup);
        std::sort(ms.begin(), ms.end());
        const double median_ms = ms[ms.size() / 2];
        const double tokens_per_s = config_.tokens_per_step / (median_ms / 1000.0);
        const std::optional<double> utilization = mfu(tokens_per_s);
        if (dist_.is_main())
            std::printf("BENCH tokens_per_s=%.0f mfu=%s peak_mem_gb=%.2f step_ms=%.2f gpu=\"%s\" gpus=%d\n",
                        tokens_per_s, utilization ? string_format("%.2f", *utilization * 100.0).c_str() : "n/a",
                        gpu_.memory_used_gb(), median_ms, gpu_.props.name, dist_.world_size);
        return 0;
    }

    static void mkdir_p(const std::string& dir) {
        std::string partial;
        for (size_t i = 0; i <= dir.size(); ++i) {
            if (i == dir.size() || dir[i] == '/') {
                if (!partial.empty() && mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
                    fail(string_format("cannot create the run directory %s: %s", partial.c_str(), std::strerror(errno)));
            }
            if (i < dir.size()) partial += dir[i];
        }
    }

    TrainConfig config_;
    DistributedContext& dist_;
    GpuContext gpu_;
    ModelOptions options_;
    OptimizerShard shard_;
    std::unique_ptr<Gpt2Model<T, R>> model_;
    std::vector<GradientBucket> layer_buckets_;  // [layer]; empty unless overlaps_grad_reduce() or ZeRO-2
    GradientBucket non_layer_bucket_;
    StepTimeline timeline_;                      // --timeline-step
    std::unique_ptr<DataLoader> train_loader_;
    std::unique_ptr<DataLoader> val_loader_;
    std::unique_ptr<PinnedBatch> pinned_[2];
    std::unique_ptr<RunLog> log_;
    std::unique_ptr<Gpt2Tokenizer> tokenizer_;
    float* losses_host_ = nullptr;  // (grad_accum, B*T) per-token losses of the current step
    float* norm_host_ = nullptr;
    float* norm_device_ = nullptr;
    float* norm_scratch_ = nullptr;
    SampleRng sample_rng_;
    int64_t step_ = 0;       // optimizer steps taken (skipped fp16 steps included)
    uint64_t adam_step_ = 0; // updates applied (AdamW bias correction)
    LossScaler loss_scaler_;
};

// ---------------------------------------------------------------------------------------------

template <typename T> int run_with_precision(const TrainConfig& config, DistributedContext& dist) {
    if (config.fp32_residual) return Trainer<T, float>(config, dist).run();
    return Trainer<T, T>(config, dist).run();
}

int main(int argc, char** argv) {
    // Ranks started by --nproc share the launcher's start time, and so the default run directory.
    setenv("GPT_RUN_TIMESTAMP", std::to_string((long long)std::time(nullptr)).c_str(), /*overwrite=*/0);
    if (const std::optional<int> launcher_exit = distributed::launch_local_workers_if_requested(argc, argv)) return *launcher_exit;

    ParsedArgs args;
    try {
        args = parse_args(argc, argv);
    } catch (const ConfigError& error) {
        std::fprintf(stderr, "error: %s\n(see ./train_gpt2cu --help)\n", error.what());
        return 2;
    }
    if (args.show_help) {
        std::printf("%s", help_text().c_str());
        return 0;
    }
    if (args.print_config) {
        std::printf("%s\n", args.config.to_json().c_str());
        return 0;
    }

    distributed::DistributedOptions dist_options;
    dist_options.rendezvous_path = args.config.rendezvous;
    dist_options.timeout_s = args.config.nccl_timeout;
    DistributedContext dist(dist_options);
    TrainConfig config = args.config;
    try {
        config.resolve(dist.world_size);
    } catch (const ConfigError& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 2;
    }
    try {
        return config.precision == Precision::bf16 ? run_with_precision<__nv_bfloat16>(config, dist)
                                                   : run_with_precision<__half>(config, dist);
    } catch (const std::exception& error) {
        std::fprintf(stderr, "error (rank %d): %s\n", dist.rank, error.what());
        return 1;
    }
}
