// train_gpt2cu: trains GPT-2 and GPT-3-style models from token shards, on one GPU or many.
//
//   make train_gpt2cu && ./train_gpt2cu -e d12                 one GPU, the `tiny` dataset
//   mpirun -np 8 ./train_gpt2cu -e gpt2l                       a node of 8 GPUs (or --nproc 8)
//   ./train_gpt2cu -e gpt3xl --print-config                    the resolved experiment as JSON
//   ./train_gpt2cu -e model.bin --hellaswag-only 1             evaluate a checkpoint, no training
//   ./train_gpt2cu -e model.bin --generate "Once upon a time"  continue a prompt (KV cache)
//
// main() is the table of contents: launch -> configuration -> ranks and GPU -> Trainer::run().
// The training machinery is in train/ (train/trainer.cuh first), the model in model/, the
// kernels in kernels/.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

#include "host/config.h"
#include "train/generate_run.cuh"
#include "train/hellaswag_eval.cuh"
#include "train/logits_dump.cuh"
#include "train/nccl_context.cuh"
#include "train/trainer.cuh"

// Training, or one of the runs of a checkpoint without training (evaluation, generation).
template <typename T, typename R> int run_with_types(const TrainConfig& config, DistributedContext& dist) {
    if (!config.logits_out.empty()) return dump_logits<T, R>(config);
    if (config.generation_run()) return run_generation<T, R>(config);
    if (config.hellaswag_only) return evaluate_hellaswag_only<T, R>(config, dist);
    return Trainer<T, R>(config, dist).run();
}

template <typename T> int run_with_precision(const TrainConfig& config, DistributedContext& dist) {
    if (config.fp32_residual) return run_with_types<T, float>(config, dist);
    return run_with_types<T, T>(config, dist);
}

int main(int argc, char** argv) {
    // Ranks started by --nproc share the launcher's start time, and so the default run directory.
    setenv("GPT_RUN_TIMESTAMP", std::to_string((long long)std::time(nullptr)).c_str(), /*overwrite=*/0);

    // Parsed before any rank starts: a bad flag is reported once, and --help and --print-config
    // need no GPU and no ranks.
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
    if (const std::optional<int> launcher_exit = distributed::launch_local_workers_if_requested(argc, argv))
        return *launcher_exit;

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
