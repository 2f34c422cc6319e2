// A run's matmul tuning (kernels/matmul.cuh chooses, host/matmul_tuning_record.h records): which
// record the run replays, the timing in its first step, and the record it saves in the run
// directory, so that a resumed run, and every rank, computes with exactly the same cuBLASLt
// algorithms and epilogue paths.
//
//   start()             before the first step: --matmul-tuning FILE, else on --resume the
//                       matmul_tuning.txt beside the checkpoint, is replayed; shapes it lacks are
//                       timed (auto) or take the heuristic's first (off). With several ranks this
//                       is rank 0's work, and each shape's choice is rank 0's, sent to all as the
//                       shape is first used (every rank runs the same shapes in the same order in
//                       the first step).
//   after_first_step()  rank 0 writes the record to --out-dir; shapes first used later
//                       (evaluation and sampling batches, which may differ between ranks) are
//                       not timed: they take the heuristic's first, the same in every run.
//   replay_beside()     an evaluation of a checkpoint file (--eval-only, --hellaswag-only,
//                       --logits-out) computes as its run did: the record beside the file, no timing.
// A record that cannot be replayed (another GPU or cuBLASLt version) is said so on the console and
// the shapes are timed again: the numerics of such a resume may differ from the run's before it.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

#include "host/config.h"
#include "host/matmul_tuning_record.h"
#include "kernels/matmul.cuh"
#include "train/nccl_context.cuh"

class RunMatmulTuning {
  public:
    // `resumed_model_path`: the checkpoint the run resumed from, "" for a fresh start. With
    // several ranks, rank 0 alone replays and times; the others take its choice of each shape as
    // the shape is first used, so they need no record and time nothing.
    void start(MatmulContext& matmul, const TrainConfig& config, const std::string& resumed_model_path,
               distributed::DistributedContext& dist) {
        const bool timed = config.matmul_tuning != "off";
        matmul.set_tuning(timed && dist.is_main() ? MatmulTuning::kAutotune : MatmulTuning::kAlwaysFused);
        if (dist.is_distributed())
            matmul.set_agreement(
                [&dist](const GemmKey& key, const GemmChoice& mine) { return rank0_choice(key, mine, dist); });
        std::string error;
        if (dist.is_main()) {
            try {
                replay_starting_record(matmul, config, resumed_model_path);
            } catch (const std::exception& e) {
                error = e.what();
            }
        }
        // Every rank stops at once when rank 0 cannot read its record (the others would wait for
        // its choices until the collectives time out).
        const float failed = error.empty() ? 0.0f : 1.0f;
        if (dist.all_reduce_host(failed, distributed::ReduceOp::Max, "matmul tuning record") != 0.0f)
            throw std::runtime_error(dist.is_main() ? error : "rank 0 could not read its matmul tuning record (its "
                                                              "message says why)");
    }

    // Call after every step; acts after the first one only.
    void after_first_step(MatmulContext& matmul, const TrainConfig& config,
                          const distributed::DistributedContext& dist) {
        if (settled_) return;
        settled_ = true;
        matmul.set_tuning(MatmulTuning::kAlwaysFused);
        matmul.set_agreement({});
        if (!dist.is_main()) return;
        const TuningRecord record = matmul.tuning_record();
        const std::string path = tuning_record_path(config.out_dir);
        write_tuning_record_file(path, record);
        int timed = 0, other_algorithm = 0, unfused = 0;
        for (const auto& [key, choice] : record.choices) {
            timed += choice.how == "timed";
            other_algorithm += choice.index != 0;
            unfused += !choice.fused;
        }
        std::printf("matmul: %zu GEMM shapes, %d of them chosen by timing: %d with another algorithm than cuBLASLt's "
                    "first heuristic one, %d unfused; the choices are in %s\n",
                    record.choices.size(), timed, other_algorithm, unfused, path.c_str());
    }

    // `print`: say on the console what is replayed (rank 0).
    static void replay_beside(MatmulContext& matmul, const std::string& model_path, bool print) {
        matmul.set_tuning(MatmulTuning::kAlwaysFused);
        const std::string path = record_beside(model_path);
        if (const std::optional<TuningRecord> record = read_tuning_record_file(path))
            replay(matmul, *record, path, print);
    }

  private:
    // --matmul-tuning FILE, else on --resume the record beside the checkpoint, if any.
    static void replay_starting_record(MatmulContext& matmul, const TrainConfig& config,
                                       const std::string& resumed_model_path) {
        const bool given = config.matmul_tuning != "auto" && config.matmul_tuning != "off";
        if (!given && resumed_model_path.empty()) return;
        const std::string path = given ? config.matmul_tuning : record_beside(resumed_model_path);
        const std::optional<TuningRecord> record = read_tuning_record_file(path);
        if (!record && given)
            throw std::runtime_error("--matmul-tuning " + path + ": no such file (give a run's matmul_tuning.txt, "
                                     "or auto or off)");
        if (!record) {
            // A checkpoint of a run from before tuning records: it ran the fused epilogues with
            // the heuristic's first algorithms, so its continuation does too.
            matmul.set_tuning(MatmulTuning::kAlwaysFused);
            std::printf("matmul: no %s beside the checkpoint (a run from before tuning records): the fused "
                        "epilogues with cuBLASLt's first heuristic algorithms, as that run computed\n",
                        path.c_str());
            return;
        }
        replay(matmul, *record, path, /*print=*/true);
    }

    // Rank 0's choice for `key`, on every rank (`mine` is this rank's own): one collective.
    static GemmChoice rank0_choice(const GemmKey& key, const GemmChoice& mine, distributed::DistributedContext& dist) {
        TuningRecord one;  // the record's text is the wire format; device and version are not compared here
        one.device = "rank 0";
        one.cublaslt_version = 1;
        one.choices[key] = mine;
        const std::string text =
            dist.broadcast_text_from_main(dist.is_main() ? format_tuning_record(one) : std::string(), "matmul choice");
        if (dist.is_main()) return mine;
        const TuningRecord received = parse_tuning_record(text, "rank 0's matmul choice");
        if (received.choices.size() != 1 || !(received.choices.begin()->first == key))
            throw std::runtime_error("rank " + std::to_string(dist.rank) + " chose the algorithm of " +
                                     describe_gemm(key) + " while rank 0 chose that of another GEMM shape: the ranks "
                                     "ran different shapes in the first step");
        return received.choices.begin()->second;
    }

    static std::string record_beside(const std::string& model_path) {
        return tuning_record_path(std::filesystem::path(model_path).parent_path().string());
    }

    static void replay(MatmulContext& matmul, const TuningRecord& record, const std::string& path, bool print) {
        const std::string refused = matmul.replay(record);
        if (!print) return;
        if (refused.empty())
            std::printf("matmul: replaying %s (%zu GEMM shapes)\n", path.c_str(), record.choices.size());
        else
            std::printf("matmul: %s is not replayed: %s. Its GEMM shapes are chosen again, so this run's numerics "
                        "may differ from those of the run that made it\n",
                        path.c_str(), refused.c_str());
    }

    bool settled_ = false;
};
