// Which checkpoints of a run directory to keep, as the seed keeps them, and whether the disk can
// hold the next one. Plain C++; the trainer decides when to call it.
//
// The seed has two checkpoint callbacks (configs/experiment/{owt,pile}/base.yaml):
//   model_checkpoint           every 1,000 steps, keeping the last and the 3 best by val/loss
//   model_checkpoint_progress  every 50,000 steps (12,500 for gpt3xl and gpt3-2.7B), all kept
// Here one series of checkpoints (model_SSSSSSSS.bin + a state file per rank) serves both: a
// checkpoint is kept while it is the newest, one of the `keep_best` with the lowest validation
// loss, at a multiple of `keep_every` (a progress checkpoint), or the one this run resumed from
// (which may still be read, and is what a failed run falls back to); the others are deleted.
//
// The trainer's part (rank 0, once every rank's state file of the new checkpoint exists):
//   for (int64_t step : checkpoints_to_delete(list_checkpoints(out_dir, world_size), policy, resumed))
//       delete_checkpoint(out_dir, step, world_size);
// and before writing a checkpoint (each process, for what it writes into its directory):
//   check_disk_space(out_dir, checkpoint_bytes(shape, params_per_rank, world_size));
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "host/checkpoint.h"

constexpr int kKeepAllCheckpoints = -1;

struct RetentionPolicy {
    int keep_best = kKeepAllCheckpoints;  // by validation loss; kKeepAllCheckpoints deletes nothing
    int64_t keep_every = 0;               // multiples of it are kept for good; 0: none
};

struct CheckpointRecord {
    int64_t step = 0;
    std::optional<double> val_loss;  // the validation loss logged at this step, if any
};

// Steps of the checkpoints to delete, oldest first. Ties in validation loss keep the earlier
// step (the seed's ModelCheckpoint replaces a kept one only by a strictly better loss); a
// checkpoint without a finite validation loss is never among the best.
std::vector<int64_t> checkpoints_to_delete(const std::vector<CheckpointRecord>& checkpoints,
                                           const RetentionPolicy& policy, std::optional<int64_t> resumed_from);

// The validation losses of a run's log (log.jsonl, host/run_log.h: "val" events), by step; a
// later line for a step wins (a resumed run evaluates again). A missing log gives none; a line
// that is not JSON throws naming the file and line.
std::map<int64_t, double> logged_validation_losses(const std::string& log_path);

// The complete checkpoints of `dir` (find_checkpoints), oldest first, with the validation losses
// that `dir`/log.jsonl holds for their steps.
std::vector<CheckpointRecord> list_checkpoints(const std::string& dir, int world_size);

// Deletes a checkpoint: the state files first, so that it stops counting as complete at once,
// then the model file. Throws naming a file that cannot be removed (a missing one is fine).
void delete_checkpoint(const std::string& dir, int64_t step, int world_size);

// Bytes of one checkpoint: the model file and `world_size` state files of `params_per_rank`
// floats for each of the master weights and the two AdamW moments (the whole checkpoint, as a
// shared file system holds it; a rank-local directory holds its own share).
int64_t checkpoint_bytes(const ModelShape& shape, int64_t params_per_rank, int world_size);

// Free bytes for an unprivileged writer on the file system holding `dir` (statvfs); throws
// naming `dir` when it cannot be queried.
int64_t free_disk_bytes(const std::string& dir);

// "" when `free_bytes` can take `needed_bytes` more, else what is wrong and what to do.
std::string disk_space_problem(const std::string& dir, int64_t needed_bytes, int64_t free_bytes);

// Throws std::runtime_error with disk_space_problem()'s message when `dir` cannot take
// `needed_bytes` more.
void check_disk_space(const std::string& dir, int64_t needed_bytes);
