#include "host/checkpoint_retention.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

namespace fs = std::filesystem;

std::vector<int64_t> checkpoints_to_delete(const std::vector<CheckpointRecord>& checkpoints,
                                           const RetentionPolicy& policy, std::optional<int64_t> resumed_from) {
    if (policy.keep_best == kKeepAllCheckpoints || checkpoints.empty()) return {};
    std::set<int64_t> kept;
    int64_t newest = checkpoints.front().step;
    std::vector<CheckpointRecord> scored;
    for (const CheckpointRecord& checkpoint : checkpoints) {
        newest = std::max(newest, checkpoint.step);
        if (policy.keep_every > 0 && checkpoint.step % policy.keep_every == 0) kept.insert(checkpoint.step);
        if (checkpoint.val_loss && std::isfinite(*checkpoint.val_loss)) scored.push_back(checkpoint);
    }
    kept.insert(newest);
    if (resumed_from) kept.insert(*resumed_from);
    std::stable_sort(scored.begin(), scored.end(), [](const CheckpointRecord& a, const CheckpointRecord& b) {
        return *a.val_loss < *b.val_loss || (*a.val_loss == *b.val_loss && a.step < b.step);
    });
    for (size_t i = 0; i < scored.size() && i < static_cast<size_t>(policy.keep_best); ++i) kept.insert(scored[i].step);

    std::vector<int64_t> doomed;
    for (const CheckpointRecord& checkpoint : checkpoints)
        if (!kept.count(checkpoint.step)) doomed.push_back(checkpoint.step);
    std::sort(doomed.begin(), doomed.end());
    return doomed;
}

std::map<int64_t, double> logged_validation_losses(const std::string& log_path) {
    std::map<int64_t, double> losses;
    std::ifstream in(log_path);
    if (!in) return losses;
    std::string line;
    for (int64_t number = 1; std::getline(in, line); ++number) {
        if (line.empty()) continue;
        nlohmann::json event;
        try {
            event = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception& e) {
            // A crash can cut the last line short; anything else is a damaged log.
            if (in.peek() == std::char_traits<char>::eof()) break;
            throw std::runtime_error(log_path + ":" + std::to_string(number) + " is not a JSON line (" + e.what() + ")");
        }
        if (event.value("event", "") != "val" || !event.contains("step")) continue;
        const nlohmann::json& loss = event["loss"];
        if (loss.is_number()) losses[event["step"].get<int64_t>()] = loss.get<double>();
        else losses.erase(event["step"].get<int64_t>());  // null: not finite
    }
    return losses;
}

std::vector<CheckpointRecord> list_checkpoints(const std::string& dir, int world_size) {
    const std::map<int64_t, double> losses = logged_validation_losses((fs::path(dir) / "log.jsonl").string());
    std::vector<CheckpointRecord> records;
    for (const CheckpointFiles& files : find_checkpoints(dir, world_size)) {
        CheckpointRecord record;
        record.step = files.step;
        const auto loss = losses.find(files.step);
        if (loss != losses.end()) record.val_loss = loss->second;
        records.push_back(record);
    }
    return records;
}

void delete_checkpoint(const std::string& dir, int64_t step, int world_size) {
    std::vector<std::string> paths;
    for (int rank = 0; rank < world_size; ++rank) paths.push_back(state_file_path(dir, step, rank));
    paths.push_back(model_file_path(dir, step));
    for (const std::string& path : paths) {
        std::error_code error;
        fs::remove(path, error);
        if (error) throw std::runtime_error("cannot delete the old checkpoint file " + path + ": " + error.message());
    }
}

int64_t checkpoint_bytes(const ModelShape& shape, int64_t params_per_rank, int world_size) {
    const int64_t state = state_file_bytes({params_per_rank, params_per_rank, params_per_rank});
    return model_file_bytes(shape) + world_size * state;
}

int64_t free_disk_bytes(const std::string& dir) {
    struct statvfs info {};
    if (statvfs(dir.c_str(), &info) != 0)
        throw std::runtime_error("cannot read the free space of " + dir + ": " + std::strerror(errno));
    return static_cast<int64_t>(info.f_bavail) * static_cast<int64_t>(info.f_frsize);
}

std::string disk_space_problem(const std::string& dir, int64_t needed_bytes, int64_t free_bytes) {
    if (needed_bytes <= free_bytes) return "";
    const auto gigabytes = [](int64_t bytes) {
        char text[32];
        std::snprintf(text, sizeof(text), "%.2f GB", bytes / 1e9);
        return std::string(text);
    };
    return "the next checkpoint needs " + gigabytes(needed_bytes) + " in " + dir + " but only " +
           gigabytes(free_bytes) + " are free: free some space, give another --out-dir, or keep fewer checkpoints "
           "(--keep-best-checkpoints, --keep-checkpoint-every, --checkpoint-every)";
}

void check_disk_space(const std::string& dir, int64_t needed_bytes) {
    const std::string problem = disk_space_problem(dir, needed_bytes, free_disk_bytes(dir));
    if (!problem.empty()) throw std::runtime_error(problem);
}
