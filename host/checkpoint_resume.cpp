// Finding complete checkpoints in a run directory, and the one --resume names (falling back from
// damaged ones).
#include "host/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

namespace fs = std::filesystem;

namespace {

// The step of "model_<digits>.bin", or -1 for any other name.
int64_t model_file_step(const std::string& filename) {
    const std::string prefix = "model_", suffix = ".bin";
    if (filename.size() <= prefix.size() + suffix.size() || filename.compare(0, prefix.size(), prefix) != 0 ||
        filename.compare(filename.size() - suffix.size(), suffix.size(), suffix) != 0)
        return -1;
    const std::string digits = filename.substr(prefix.size(), filename.size() - prefix.size() - suffix.size());
    if (digits.size() > 12 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return -1;
    return std::stoll(digits);
}

CheckpointFiles checkpoint_files(const std::string& dir, int64_t step, int world_size) {
    CheckpointFiles files;
    files.step = step;
    files.model_path = model_file_path(dir, step);
    for (int rank = 0; rank < world_size; ++rank) files.state_paths.push_back(state_file_path(dir, step, rank));
    return files;
}

bool all_exist(const CheckpointFiles& files) {
    std::error_code error;
    if (!fs::is_regular_file(files.model_path, error)) return false;
    for (const std::string& path : files.state_paths)
        if (!fs::is_regular_file(path, error)) return false;
    return true;
}

}  // namespace

std::vector<CheckpointFiles> find_checkpoints(const std::string& dir, int world_size) {
    std::error_code error;
    if (!fs::is_directory(dir, error)) return {};
    std::vector<int64_t> steps;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
        const int64_t step = model_file_step(entry.path().filename().string());
        if (step >= 0) steps.push_back(step);
    }
    std::sort(steps.begin(), steps.end());
    std::vector<CheckpointFiles> complete;
    for (int64_t step : steps) {
        CheckpointFiles files = checkpoint_files(dir, step, world_size);
        if (all_exist(files)) complete.push_back(std::move(files));
    }
    return complete;
}

std::optional<CheckpointFiles> find_latest_checkpoint(const std::string& dir, int world_size) {
    std::vector<CheckpointFiles> complete = find_checkpoints(dir, world_size);
    if (complete.empty()) return std::nullopt;
    return std::move(complete.back());
}

namespace {

// What is wrong with the files of `files` this process checks (the model file, and its own or
// every rank's state file), or "" if they are intact.
std::string damage_of(const CheckpointFiles& files, int rank, bool every_state_file) {
    try {
        verify_model_file(files.model_path);
        if (every_state_file) {
            for (const std::string& path : files.state_paths) verify_state_file(path);
        } else {
            verify_state_file(files.state_paths.at(static_cast<size_t>(rank)));
        }
        return "";
    } catch (const std::exception& e) {
        return e.what();
    }
}

// The newest checkpoint in `dir` that every process finds intact; nullopt if `dir` holds none at
// all. Damage is reported on stderr (by the process that finds it; without `all_ranks_intact`
// every process checks everything, and rank 0 speaks).
std::optional<CheckpointFiles> newest_intact_checkpoint(const std::string& resume, const std::string& dir,
                                                        int world_size, int rank,
                                                        const AllRanksIntact& all_ranks_intact) {
    std::vector<CheckpointFiles> complete = find_checkpoints(dir, world_size);
    std::vector<std::string> damaged;
    for (auto files = complete.rbegin(); files != complete.rend(); ++files) {
        const std::string damage = damage_of(*files, rank, !all_ranks_intact);
        const bool intact = all_ranks_intact ? all_ranks_intact(damage.empty()) : damage.empty();
        const std::string step = std::to_string(files->step);
        if (intact) {
            if (!damaged.empty() && rank == 0)
                std::fprintf(stderr, "--resume %s: resuming from step %s, the newest intact checkpoint in %s\n",
                             resume.c_str(), step.c_str(), dir.c_str());
            return std::move(*files);
        }
        if (!damage.empty() && (all_ranks_intact || rank == 0))
            std::fprintf(stderr, "--resume %s: skipping the damaged checkpoint of step %s: %s\n", resume.c_str(),
                         step.c_str(), damage.c_str());
        damaged.push_back("step " + step + ": " + (damage.empty() ? "damaged on another process" : damage));
    }
    if (damaged.empty()) return std::nullopt;
    std::string list;
    for (const std::string& entry : damaged) list += "\n  " + entry;
    throw std::runtime_error("--resume " + resume + ": no intact checkpoint in " + dir + ", every one is damaged:" + list +
                             "\nRestore the files from a copy, or move them away to start the run afresh");
}

}  // namespace

std::optional<CheckpointFiles> locate_resume_checkpoint(const std::string& resume, const std::string& out_dir,
                                                        int world_size, int rank,
                                                        const AllRanksIntact& all_ranks_intact) {
    if (resume.empty()) return std::nullopt;
    if (resume == "auto") return newest_intact_checkpoint(resume, out_dir, world_size, rank, all_ranks_intact);
    std::error_code error;
    if (fs::is_directory(resume, error)) {
        std::optional<CheckpointFiles> files = newest_intact_checkpoint(resume, resume, world_size, rank, all_ranks_intact);
        if (!files)
            throw std::runtime_error("--resume " + resume + ": the directory holds no complete checkpoint (a model_SSSSSSSS.bin with state files for " +
                                     std::to_string(world_size) + " rank(s))");
        return files;
    }
    const fs::path model_path(resume);
    const int64_t step = model_file_step(model_path.filename().string());
    if (step < 0)
        throw std::runtime_error("--resume " + resume +
                                 ": expected 'auto', a run directory, or a model_SSSSSSSS.bin checkpoint file");
    if (!fs::is_regular_file(model_path, error)) throw std::runtime_error("--resume " + resume + ": no such file");
    const std::string dir = model_path.has_parent_path() ? model_path.parent_path().string() : ".";
    CheckpointFiles files = checkpoint_files(dir, step, world_size);
    files.model_path = resume;
    for (const std::string& path : files.state_paths)
        if (!fs::is_regular_file(path, error))
            throw std::runtime_error("--resume " + resume + ": the optimizer state file " + path +
                                     " is missing (written by a run with another number of processes, or interrupted)");
    return files;
}
