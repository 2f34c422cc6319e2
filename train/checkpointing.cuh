// Weights in and out of the GPU: fresh initialization or --init-from, and checkpoints. A
// checkpoint is the model file (full fp32 weights, rank 0) and one state file per rank (its
// master/AdamW shard, step, loss scale, sampler and data position: host/checkpoint.h); resuming
// restores all of it, so the continued run computes exactly what an uninterrupted one would.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/checkpoint.h"
#include "host/checkpoint_retention.h"
#include "host/config.h"
#include "host/run_log.h"
#include "model/gpt2.cuh"
#include "train/grad_sync.cuh"

template <typename T, typename R> class Checkpointer {
  public:
    Checkpointer(const TrainConfig& config, DistributedContext& dist, Gpt2Model<T, R>& model, GradientSync<T>& sync)
        : config_(config), dist_(dist), model_(model), sync_(sync) {}
    ~Checkpointer() { cudaFree(own_staging_); }
    Checkpointer(const Checkpointer&) = delete;
    Checkpointer& operator=(const Checkpointer&) = delete;

    // What a state file must agree with to continue the run it came from.
    RunIdentity run_identity() const {
        RunIdentity identity;
        identity.shape = model_.options().shape;
        identity.rank = dist_.rank;
        identity.world_size = dist_.world_size;
        identity.zero_stage = sync_.zero_stage();
        identity.seed = config_.seed;
        return identity;
    }

    // Fresh weights from the seed, or the weights of --init-from.
    void initialize_weights(cudaStream_t stream) {
        if (!config_.init_from.empty()) {
            upload_weights(config_.init_from, stream);
            return;
        }
        model_.parameters().initialize(staging(), config_.seed, stream);
        model_.parameters().load(staging(), stream);
        CUDA_CHECK(cudaStreamSynchronize(stream));
    }

    // The checkpoint --resume names, if any: weights and this rank's optimizer shard on the GPU;
    // returns its state for the caller to restore (step, loss scale, data position, ...). With
    // "auto" or a directory, a damaged checkpoint is skipped for the newest one that every rank
    // finds intact: each rank verifies the model file and its own state file, and the verdicts
    // meet in an all-reduce so that all ranks resume from the same step.
    std::optional<StateHeader> resume(cudaStream_t stream) {
        const std::optional<CheckpointFiles> files = locate_resume_checkpoint(
            config_.resume, config_.out_dir, dist_.world_size, dist_.rank, [&](bool intact) {
                return dist_.all_reduce_host(intact ? 0.0f : 1.0f, ReduceOp::Max,
                                             "checkpoint verification") == 0.0f;
            });
        if (!files) return std::nullopt;
        upload_weights(files->model_path, stream);
        ModelParameters<T>& params = model_.parameters();
        const int64_t owned = params.shard().owned();
        std::vector<float> master(owned), m(owned), v(owned);
        const StateHeader header =
            read_state_file(files->state_paths[dist_.rank], run_identity(),
                            {{"master", master.data(), owned}, {"adam_m", m.data(), owned}, {"adam_v", v.data(), owned}});
        // The master shard comes from the state file: the model file's weights are the same
        // numbers, but the state file is the one that is per rank and exact under ZeRO.
        // On `stream`, as upload_weights() says why.
        CUDA_CHECK(cudaMemcpyAsync(params.master(), master.data(), owned * sizeof(float), cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(cudaMemcpyAsync(params.adam_m(), m.data(), owned * sizeof(float), cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(cudaMemcpyAsync(params.adam_v(), v.data(), owned * sizeof(float), cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(cudaStreamSynchronize(stream));
        if (dist_.is_main())
            std::printf("resumed from %s at step %lld\n\n", files->model_path.c_str(), (long long)header.step);
        resumed_from_ = header.step;
        resumed_model_path_ = files->model_path;
        return header;
    }

    // --eval-only: the weights of the checkpoint --resume names (auto, a run directory's newest
    // intact one, or a model file; the model file alone, so any number of GPUs can evaluate a
    // checkpoint of any run), else of -e FILE. Returns the model file and its step.
    CheckpointFiles load_weights_to_evaluate(cudaStream_t stream) {
        CheckpointFiles files;
        if (!config_.resume.empty()) {
            const std::optional<CheckpointFiles> located =
                locate_resume_checkpoint(config_.resume, config_.out_dir, /*world_size=*/0, dist_.rank);
            if (!located)
                throw std::runtime_error("--eval-only --resume " + config_.resume + ": no checkpoint in " +
                                         config_.out_dir + " to evaluate");
            files = *located;
        } else {
            files.model_path = config_.init_from;
            files.step = read_model_header(config_.init_from).step;
        }
        upload_weights(files.model_path, stream);
        return files;
    }

    // Every rank calls it; `header` is this rank's state (identity filled in here). `log`: rank 0's.
    // refuse_non_finite: write nothing if a weight is not finite (a checkpoint after an error).
    void save(StateHeader header, RunLog* log, cudaStream_t stream, bool refuse_non_finite = false) {
        ModelParameters<T>& params = model_.parameters();
        const int64_t bytes = checkpoint_bytes(model_.options().shape, params.shard().owned(), dist_.world_size);
        check_disk_space(config_.out_dir, bytes);  // before anything is written, on every rank
        float* full_master = staging();
        sync_.gather_master(full_master, params.master(), stream);
        CUDA_CHECK(cudaStreamSynchronize(stream));
        if (refuse_non_finite && !all_finite(full_master, params.count())) {
            std::fprintf(stderr, "no checkpoint written: the weights of step %lld are not all finite\n",
                         (long long)header.step);
            return;
        }
        if (dist_.is_main()) {
            std::vector<float> weights(params.count());
            CUDA_CHECK(cudaMemcpy(weights.data(), full_master, weights.size() * sizeof(float), cudaMemcpyDeviceToHost));
            const std::string path = model_file_path(config_.out_dir, header.step);
            write_model_file(path, model_.options().shape, header.step, weights.data());
            log->checkpoint(header.step, path);
            std::printf("step %lld | checkpoint %s (%.2f GB with the optimizer state)\n", (long long)header.step,
                        path.c_str(), bytes / 1e9);
        }
        const int64_t owned = params.shard().owned();
        std::vector<float> master(owned), m(owned), v(owned);
        CUDA_CHECK(cudaMemcpy(master.data(), params.master(), owned * sizeof(float), cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(m.data(), params.adam_m(), owned * sizeof(float), cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(v.data(), params.adam_v(), owned * sizeof(float), cudaMemcpyDeviceToHost));
        header.identity = run_identity();
        write_state_file(state_file_path(config_.out_dir, header.step, dist_.rank), header,
                         {{"master", master.data(), owned}, {"adam_m", m.data(), owned}, {"adam_v", v.data(), owned}});
        dist_.barrier();  // every rank's state file exists before anyone goes on
        if (dist_.is_main())  // the seed's retention: the newest, the best, the progress ones
            for (int64_t step : checkpoints_to_delete(list_checkpoints(config_.out_dir, dist_.world_size),
                                                      config_.checkpoint_retention(), resumed_from_))
                delete_checkpoint(config_.out_dir, step, dist_.world_size);
    }

    // The model file resume() continued from; "" for a fresh start.
    const std::string& resumed_model_path() const { return resumed_model_path_; }

  private:
    static bool all_finite(const float* device, int64_t count) {
        std::vector<float> values(count);
        CUDA_CHECK(cudaMemcpy(values.data(), device, count * sizeof(float), cudaMemcpyDeviceToHost));
        return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
    }

    // A model file's weights -> the GPU's compute copy and this rank's master shard.
    void upload_weights(const std::string& path, cudaStream_t stream) {
        ModelParameters<T>& params = model_.parameters();
        std::vector<float> weights(params.count());
        read_model_params(path, model_.options().shape, weights.data(), 0, params.count());
        // On `stream`: a cudaMemcpy from pageable memory may return before its DMA lands, and the
        // non-blocking compute stream would not wait for it.
        CUDA_CHECK(cudaMemcpyAsync(staging(), weights.data(), weights.size() * sizeof(float), cudaMemcpyHostToDevice,
                                   stream));
        params.load(staging(), stream);
        CUDA_CHECK(cudaStreamSynchronize(stream));  // before anyone writes the master shard again
    }

    // Full fp32 weights (padded_total floats) pass through the GPU between steps only, in memory
    // that holds nothing then: the gradient arena (ZeRO-0/1), else the activation arena when it
    // is large enough, else a buffer of its own.
    float* staging() {
        const size_t floats = model_.parameters().shard().padded_total;
        if (float* idle = sync_.idle_between_steps()) return idle;
        if (float* arena = model_.activation_arena_between_steps(floats)) return arena;
        if (!own_staging_) CUDA_CHECK(cudaMalloc(&own_staging_, floats * sizeof(float)));
        return own_staging_;
    }

    const TrainConfig& config_;
    DistributedContext& dist_;
    Gpt2Model<T, R>& model_;
    GradientSync<T>& sync_;
    float* own_staging_ = nullptr;
    std::optional<int64_t> resumed_from_;  // never deleted: a failed run falls back to it
    std::string resumed_model_path_;
};
