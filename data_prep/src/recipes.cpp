#include "data_prep/src/recipes.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

#include "data_prep/src/hellaswag_recipe.h"
#include "data_prep/src/holdout.h"
#include "data_prep/src/pipeline.h"
#include "data_prep/src/sha256.h"
#include "data_prep/src/source_fetcher.h"
#include "host/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace data_prep {
namespace {

const char* const kManifestName = "manifest.json";
// 2: holdouts are Hugging Face's train_test_split (data_prep/src/holdout.h). 3: the build
// settings and each input's modification time are recorded, so that a rerun with other inputs or
// settings rebuilds. A dataset with an older manifest is rebuilt rather than reused.
constexpr int kManifestVersion = 3;
const char* const kStagingName = ".staging";
const char* const kOpenWebTextArchive = "openwebtext.tar.xz";

// One pass of the pipeline: files into a split, and optionally a holdout of them into another.
struct SplitJob {
    std::vector<InputFile> files;
    std::string split;
    std::string holdout_split;  // empty: no holdout
    double holdout_fraction = 0;
};

struct RecipePlan {
    std::string directory;  // under data_dir
    std::string dataset;    // shard name prefix
    ReaderOptions reader;
    std::vector<SplitJob> jobs;
    std::string note;  // recorded in the manifest
    std::string extracted_dir;  // a working copy of the inputs, removed once the dataset is complete
};

std::string env_or(const char* name, const std::string& fallback) {
    const char* value = std::getenv(name);
    return value && *value ? value : fallback;
}

std::string with_commas(int64_t n) {
    std::string digits = std::to_string(n), out;
    for (size_t i = 0; i < digits.size(); i++) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

// The repository holding this executable (data_prep/<tool> lives one level down), so that the
// tools find node_modules/ wherever they are started from.
std::string repository_of_executable() {
    std::error_code error;
    const fs::path exe = fs::read_symlink("/proc/self/exe", error);
    return error ? std::string() : exe.parent_path().parent_path().string();
}

std::string find_nlp_corpus() {
    const std::string relative = "node_modules/nlp-corpus/builds";
    const std::string repository = repository_of_executable();
    if (!repository.empty() && fs::is_directory(repository + "/" + relative)) return repository + "/" + relative;
    return relative;
}

std::vector<std::string> glob_sorted(const std::string& pattern) {
    glob_t matches{};
    std::vector<std::string> files;
    if (glob(pattern.c_str(), 0, nullptr, &matches) == 0) files.assign(matches.gl_pathv, matches.gl_pathv + matches.gl_pathc);
    globfree(&matches);
    return files;
}

double val_fraction_or(const PrepareOptions& options, const std::string& recipe) {
    return options.val_fraction >= 0 ? options.val_fraction : default_val_fraction(recipe);
}

RecipePlan plan_tiny(const PrepareOptions& options) {
    const std::string source_dir = options.source_dir.empty() ? find_nlp_corpus() : options.source_dir;
    const std::vector<std::string> files = glob_sorted(source_dir + "/doc-*.json");
    if (files.empty()) {
        throw std::runtime_error("the tiny corpus is missing: no " + source_dir +
                                 "/doc-*.json files. Run `make setup` (it installs the npm package nlp-corpus), or "
                                 "pass --source-dir DIR with its builds/ directory.");
    }
    RecipePlan plan{"tiny", "tiny", options.reader, {}, "", ""};
    plan.jobs.push_back({{files.begin(), files.end()}, "train", "val", val_fraction_or(options, "tiny")});
    return plan;
}

// The documents in the order the Hugging Face openwebtext builder yields them (its
// _split_generators / _generate_examples): openwebtext.tar.xz extracted, the subset archives of
// its openwebtext/ directory whose names end in "xz" in sorted name order, and in each subset,
// extracted, the files whose names end in "txt" in sorted name order; every file is one document,
// also one left empty by the cleanup. The subsets are extracted here too (a tar.xz cannot be read
// in name order) and read in name order; their members are sorted in memory.
RecipePlan plan_openwebtext(const PrepareOptions& options, const std::string& output_dir) {
    RecipePlan plan{"openwebtext", "openwebtext", options.reader, {},
                    "documents in the Hugging Face openwebtext builder's order; val is the seed's holdout "
                    "(train_test_split(test_size=0.0005, seed=2357)), also its test split", ""};
    plan.reader.collapse_newlines_and_strip = true;
    plan.reader.text_members_in_name_order = true;
    std::vector<std::string> subsets;
    const std::string archive_in_source = options.source_dir + "/" + kOpenWebTextArchive;
    if (!options.source_dir.empty() && !fs::exists(archive_in_source) && fs::is_directory(options.source_dir)) {
        // An already extracted copy: the subset archives, in the directory or in its openwebtext/.
        for (const std::string& dir : {options.source_dir + "/openwebtext", options.source_dir}) {
            if (fs::is_directory(dir) && subsets.empty()) subsets = files_with_suffix(dir, "xz");
        }
        if (subsets.empty())
            throw std::runtime_error(options.source_dir + " holds neither " + kOpenWebTextArchive +
                                     " nor its subset archives (urlsf_subset*_data.xz, directly or in openwebtext/)");
    } else {
        SourceFetcher fetcher(options, options.source_dir.empty() ? output_dir + "/downloads" : options.source_dir);
        const std::string archive =
            fetcher.fetch(kOpenWebTextArchive, options.url.empty() ? default_url("openwebtext") : options.url);
        plan.extracted_dir = output_dir + "/downloads/openwebtext-subsets";
        subsets = extract_members(archive, "openwebtext", "xz", plan.extracted_dir);
    }
    plan.jobs.push_back({{subsets.begin(), subsets.end()}, "train", "val", val_fraction_or(options, "openwebtext")});
    return plan;
}

RecipePlan plan_pile(const PrepareOptions& options, const std::string& output_dir) {
    RecipePlan plan{"the_pile", "pile", options.reader, {}, "", ""};
    SourceFetcher fetcher(options, options.source_dir.empty() ? output_dir + "/downloads" : options.source_dir);
    const std::string base = options.url.empty() ? default_url("pile") : options.url;
    const auto fetch = [&](const std::string& relative) { return fetcher.fetch(relative, base + "/" + relative); };
    // val and test first: small, and they show early that everything works.
    plan.jobs.push_back({{fetch("val.jsonl.zst")}, "val", "", 0});
    plan.jobs.push_back({{fetch("test.jsonl.zst")}, "test", "", 0});
    std::vector<InputFile> train;
    for (int i = 0; i < options.pile_train_files; i++) {
        char relative[32];
        std::snprintf(relative, sizeof relative, "train/%02d.jsonl.zst", i);
        train.push_back(fetch(relative));
    }
    plan.jobs.push_back({train, "train", "", 0});
    return plan;
}

RecipePlan plan_text(const PrepareOptions& options) {
    if (options.inputs.empty()) throw std::runtime_error("the text recipe needs at least one --input PATH|DIR|GLOB");
    RecipePlan plan{options.name, options.name, options.reader, {}, "", ""};
    plan.jobs.push_back({expand_inputs(options.inputs), "train", "val", val_fraction_or(options, "text")});
    return plan;
}

struct DatasetNames {
    std::string directory;  // under data_dir
    std::string prefix;     // of the shard names
};

DatasetNames dataset_names(const PrepareOptions& options) {
    const std::string& recipe = options.recipe;
    if (recipe == "tiny" || recipe == "openwebtext") return {recipe, recipe};
    if (recipe == "pile") return {"the_pile", "pile"};
    if (recipe != "text") throw std::runtime_error("unknown recipe '" + recipe + "' (known: tiny, openwebtext, pile, text)");
    const std::string& name = options.name;
    if (name.empty()) throw std::runtime_error("the text recipe needs --name NAME (the dataset's directory and shard prefix)");
    if (name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != std::string::npos ||
        name[0] == '.') {
        throw std::runtime_error("--name " + name + ": use letters, digits, '_', '-' and '.' only (it names a directory and files)");
    }
    return {name, name};
}

// The shards a dataset directory may hold from an earlier run, and the leftovers of one.
bool is_output_of(const std::string& file_name, const std::string& dataset) {
    const auto ends = [&](const std::string& suffix) {
        return file_name.size() >= suffix.size() && file_name.compare(file_name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    const bool shard_name = file_name.rfind(dataset + "_", 0) == 0 && (ends(".bin") || ends(".bin.tmp"));
    return shard_name || file_name == std::string(kManifestName) + ".tmp" || file_name == kStagingName;
}

void remove_outputs(const std::string& output_dir, const std::string& dataset) {
    std::vector<fs::path> stale;
    for (const fs::directory_entry& entry : fs::directory_iterator(output_dir)) {
        if (is_output_of(entry.path().filename().string(), dataset)) stale.push_back(entry.path());
    }
    if (stale.empty()) return;
    std::fprintf(stderr, "removing %zu file(s) of an unfinished or replaced run in %s\n", stale.size(), output_dir.c_str());
    for (const fs::path& path : stale) fs::remove_all(path);
}

void write_file_atomically(const std::string& path, const std::string& content) {
    const std::string tmp = path + ".tmp";
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) throw std::runtime_error(tmp + ": cannot create: " + std::strerror(errno));
    size_t written = 0;
    while (written < content.size()) {
        const ssize_t n = write(fd, content.data() + written, content.size() - written);
        if (n < 0) {
            const int write_errno = errno;
            close(fd);
            std::remove(tmp.c_str());
            throw std::runtime_error(tmp + ": write failed: " + std::strerror(write_errno));
        }
        written += static_cast<size_t>(n);
    }
    if (fsync(fd) != 0 || close(fd) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int final_errno = errno;
        std::remove(tmp.c_str());
        throw std::runtime_error(path + ": cannot complete the write: " + std::strerror(final_errno));
    }
}

// Removes the staging directory unless the run got as far as moving the shards out.
struct StagingGuard {
    std::string path;
    ~StagingGuard() {
        std::error_code ignored;
        if (!path.empty()) fs::remove_all(path, ignored);
    }
};

// The options that decide a dataset's content besides its inputs, by flag. A complete dataset
// built with other values is rebuilt.
json build_settings(const PrepareOptions& options) {
    static const char* const kDocSplitNames[] = {"file", "line", "paragraph"};
    json settings = {
        {"--val-fraction", val_fraction_or(options, options.recipe)},
        {"--seed", options.seed},
        {"--shard-tokens", options.shard_tokens > 0 ? options.shard_tokens : default_shard_tokens(options.recipe)},
        {"--text-field", options.reader.text_field},
        {"--doc-split", kDocSplitNames[static_cast<int>(options.reader.text_split)]},
        {"--skip-invalid-json", options.skip_invalid_documents},
    };
    if (options.recipe == "pile") settings["--pile-train-files"] = options.pile_train_files;
    return settings;
}

// An input as the manifest records it; a rerun compares path, size and modification time.
json source_record(const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) throw std::runtime_error("input file '" + path + "': " + std::strerror(errno));
    return {{"path", path},
            {"bytes", static_cast<int64_t>(st.st_size)},
            {"modified_ns", static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec}};
}

// Why the complete dataset `manifest` (of kManifestVersion) describes is not what this run would
// build ("" if it is). The text recipe's inputs are compared; the other recipes' sources are fixed
// (a package, verified downloads).
std::string difference_from_manifest(const json& manifest, const PrepareOptions& options) {
    const json& recorded_settings = manifest.at("settings");
    const json settings = build_settings(options);
    for (const auto& [flag, value] : settings.items()) {
        const auto recorded = recorded_settings.find(flag);
        if (recorded == recorded_settings.end() || *recorded != value) {
            return flag + " " + value.dump() + ", the dataset has " +
                   (recorded == recorded_settings.end() ? std::string("none") : recorded->dump());
        }
    }
    if (options.recipe != "text") return "";
    const std::vector<InputFile> files = expand_inputs(options.inputs);
    const json& sources = manifest.at("sources");
    for (size_t i = 0; i < std::max(files.size(), sources.size()); i++) {
        if (i >= sources.size()) return files[i].path + " is a new input";
        const std::string recorded_path = sources[i].at("path").get<std::string>();
        if (i >= files.size()) return recorded_path + " is no longer an input";
        const json current = source_record(files[i].path);
        if (files[i].path != recorded_path) return files[i].path + " is an input in place of " + recorded_path;
        if (current["bytes"] != sources[i].at("bytes")) return files[i].path + " changed size";
        if (current["modified_ns"] != sources[i].at("modified_ns")) return files[i].path + " was modified";
    }
    return "";
}

// Binary inputs found in directories or archives are left out (inputs.h); say which.
void report_skipped_inputs(const std::vector<SkippedInput>& skipped) {
    constexpr size_t kListed = 20;
    if (skipped.empty()) return;
    std::fprintf(stderr, "skipped %zu binary input(s), not text (listed in manifest.json):\n", skipped.size());
    for (size_t i = 0; i < std::min(skipped.size(), kListed); i++) {
        std::fprintf(stderr, "  %s: %s\n", skipped[i].location.c_str(), skipped[i].kind.c_str());
    }
    if (skipped.size() > kListed) std::fprintf(stderr, "  ... and %zu more\n", skipped.size() - kListed);
}

PrepareSummary summary_from_manifest(const std::string& output_dir, const json& manifest) {
    PrepareSummary summary;
    summary.output_dir = output_dir;
    summary.already_complete = true;
    for (const auto& [split, info] : manifest.at("splits").items()) {
        summary.splits.push_back({split, info.at("documents").get<int64_t>(), info.at("tokens").get<int64_t>(),
                                  static_cast<int64_t>(info.at("shards").size())});
    }
    return summary;
}

void print_summary(const std::string& dataset, const PrepareSummary& summary) {
    std::printf("%s %s %s\n", dataset.c_str(), summary.already_complete ? "is already complete in" : "written to",
                summary.output_dir.c_str());
    for (const SplitSummary& split : summary.splits) {
        std::printf("  %-5s %12s tokens  %10s documents  %4lld shard%s\n", split.split.c_str(), with_commas(split.tokens).c_str(),
                    with_commas(split.documents).c_str(), static_cast<long long>(split.shards), split.shards == 1 ? "" : "s");
    }
    if (summary.already_complete) std::printf("(pass --force to rebuild it)\n");
    std::fflush(stdout);  // keeps the summary after the progress lines (stderr) in a shared log
}

}  // namespace

const std::vector<std::string>& recipe_names() {
    static const std::vector<std::string> names = {"tiny", "openwebtext", "pile", "text", "hellaswag"};
    return names;
}

int64_t default_shard_tokens(const std::string& recipe) {
    // tiny: ~2M tokens in shards of 2^18, so the trainer sees several train shards.
    return recipe == "tiny" ? int64_t(1) << 18 : 100'000'000;
}

double default_val_fraction(const std::string& recipe) {
    if (recipe == "tiny") return 0.02;
    if (recipe == "openwebtext") return 0.0005;
    if (recipe == "text") return 0.01;
    return 0;
}

std::string default_url(const std::string& recipe) {
    // The seed's sources: OpenWebText on Zenodo (what the HuggingFace loader downloads) and The
    // Pile's original host, which has since taken it down: pass --url with a mirror.
    if (recipe == "openwebtext") return env_or("OPENWEBTEXT_URL", "https://zenodo.org/record/3834942/files/openwebtext.tar.xz");
    if (recipe == "pile") return env_or("PILE_URL", "https://the-eye.eu/public/AI/pile");
    if (recipe == "hellaswag")
        return env_or("HELLASWAG_URL", "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl");
    return "";
}

PrepareSummary prepare_dataset(const PrepareOptions& options) {
    if (options.recipe == "hellaswag") return prepare_hellaswag(options);  // an evaluation set, not shards
    const std::string& recipe = options.recipe;
    const DatasetNames names = dataset_names(options);
    const std::string output_dir = options.data_dir + "/" + names.directory;
    std::error_code error;
    fs::create_directories(output_dir, error);
    if (error || access(output_dir.c_str(), W_OK) != 0) {
        throw std::runtime_error("cannot write to the output directory " + output_dir + ": " +
                                 (error ? error.message() : std::strerror(errno)) +
                                 "; pass a writable --data-dir (or set DATA_DIR)");
    }

    const std::string manifest_path = output_dir + "/" + kManifestName;
    if (fs::exists(manifest_path) && !options.force) {
        std::ifstream in(manifest_path);
        try {
            const json manifest = json::parse(in);
            const int version = manifest.value("manifest_version", 0);
            const std::string difference =
                version == kManifestVersion ? difference_from_manifest(manifest, options) : std::string();
            if (version == kManifestVersion && difference.empty()) {
                const PrepareSummary summary = summary_from_manifest(output_dir, manifest);
                print_summary(names.prefix, summary);
                return summary;
            }
            if (version != kManifestVersion) {
                std::fprintf(stderr,
                             "%s is manifest version %d, from an older prepare (this one writes version %d): "
                             "rebuilding the dataset\n",
                             manifest_path.c_str(), version, kManifestVersion);
            } else {
                std::fprintf(stderr, "%s was built from other inputs or settings (%s): rebuilding it\n",
                             output_dir.c_str(), difference.c_str());
            }
        } catch (const json::exception& e) {
            std::fprintf(stderr, "%s is unreadable (%s): rebuilding the dataset\n", manifest_path.c_str(), e.what());
        }
    }
    // From here on the directory holds no manifest: whatever happens, it does not look complete.
    fs::remove(manifest_path, error);
    remove_outputs(output_dir, names.prefix);

    const Gpt2Tokenizer tokenizer =
        Gpt2Tokenizer::load(options.vocab_dir.empty() ? Gpt2Tokenizer::default_vocab_dir() : options.vocab_dir);
    const RecipePlan plan = recipe == "tiny"          ? plan_tiny(options)
                            : recipe == "openwebtext" ? plan_openwebtext(options, output_dir)
                            : recipe == "pile"        ? plan_pile(options, output_dir)
                                                      : plan_text(options);
    const int64_t shard_tokens = options.shard_tokens > 0 ? options.shard_tokens : default_shard_tokens(recipe);

    StagingGuard staging{output_dir + "/" + kStagingName};
    fs::create_directories(staging.path, error);
    if (error) throw std::runtime_error("cannot create " + staging.path + ": " + error.message());

    std::map<std::string, std::unique_ptr<SplitWriter>> writers;
    std::vector<std::string> split_order;
    const auto writer_for = [&](const std::string& split) -> SplitWriter& {
        auto& writer = writers[split];
        if (!writer) {
            writer = std::make_unique<SplitWriter>(staging.path, plan.dataset, split, shard_tokens);
            split_order.push_back(split);
        }
        return *writer;
    };
    json sources = json::array();
    json holdouts = json::object();
    json skipped_inputs = json::array();
    int64_t empty_documents = 0, invalid_documents = 0;
    for (const SplitJob& job : plan.jobs) {
        PipelineOptions pipeline;
        pipeline.threads = options.threads;
        pipeline.reader = plan.reader;
        pipeline.skip_invalid_documents = options.skip_invalid_documents;
        const bool has_holdout = !job.holdout_split.empty() && job.holdout_fraction > 0;
        const std::string splits_fed = job.split + (has_holdout ? "+" + job.holdout_split : "");
        pipeline.progress_label = "tokenize " + splits_fed;
        SplitWriter& main_split = writer_for(job.split);
        std::optional<Holdout> holdout;
        if (has_holdout) {
            const int64_t documents = count_documents(job.files, plan.reader, options.threads);
            try {
                holdout.emplace(documents, job.holdout_fraction, options.seed);
            } catch (const std::invalid_argument& e) {
                throw std::runtime_error("the " + job.holdout_split + " holdout of the " + recipe + " recipe: " + e.what());
            }
            holdouts[job.holdout_split] = {
                {"rule", "Hugging Face datasets' train_test_split(test_size=fraction, seed=seed, shuffle=True) over "
                         "the documents in input order; the held-out documents in permutation order"},
                {"fraction", job.holdout_fraction},
                {"seed", options.seed},
                {"documents", documents},
                {"held_out_documents", holdout->validation_documents().size()},
            };
        }
        const PipelineResult result =
            tokenize_to_splits(job.files, tokenizer, pipeline, main_split, holdout ? &*holdout : nullptr,
                               has_holdout ? &writer_for(job.holdout_split) : nullptr);
        empty_documents += result.empty_documents;
        invalid_documents += result.invalid_documents;
        report_skipped_inputs(result.skipped_inputs);
        for (const SkippedInput& input : result.skipped_inputs) {
            skipped_inputs.push_back({{"input", input.location}, {"kind", input.kind}});
        }
        for (const InputFile& file : job.files) {
            json source = source_record(file.path);
            source["split"] = splits_fed;
            sources.push_back(std::move(source));
        }
    }
    for (auto& [split, writer] : writers) writer->finish();
    if (writers.at("train")->documents() == 0) {
        throw std::runtime_error("no documents found in the inputs of the " + recipe + " recipe (every document was empty or skipped" +
                                 (skipped_inputs.empty() ? std::string()
                                                         : ", " + std::to_string(skipped_inputs.size()) + " binary input(s)") +
                                 "): nothing was written");
    }

    PrepareSummary summary;
    summary.output_dir = output_dir;
    json splits = json::object();
    for (const std::string& split : split_order) {
        const SplitWriter& writer = *writers.at(split);
        json shards = json::array();
        for (const ShardRecord& record : writer.shards()) {
            fs::rename(staging.path + "/" + record.file, output_dir + "/" + record.file);
            shards.push_back({{"file", record.file}, {"tokens", record.tokens}});
        }
        splits[split] = {{"documents", writer.documents()}, {"tokens", writer.tokens()}, {"shards", shards}};
        summary.splits.push_back({split, writer.documents(), writer.tokens(), static_cast<int64_t>(writer.shards().size())});
    }
    json manifest = {
        {"format", "train_gpt2cu token shards"},
        {"manifest_version", kManifestVersion},
        {"recipe", recipe},
        {"dataset", plan.dataset},
        {"tokenizer", "gpt2"},
        {"vocab_size", Gpt2Tokenizer::kVocabSize},
        {"end_of_text", Gpt2Tokenizer::kEndOfText},
        {"shard_version", shard::kVersionUint16},
        {"shard_tokens", shard_tokens},
        {"settings", build_settings(options)},
        {"splits", splits},
        {"holdouts", holdouts},
        {"skipped_empty_documents", empty_documents},
        {"skipped_invalid_documents", invalid_documents},
        {"skipped_binary_inputs", skipped_inputs},
        {"sources", sources},
    };
    if (!plan.note.empty()) manifest["note"] = plan.note;
    write_file_atomically(manifest_path, manifest.dump(2) + "\n");
    if (!plan.extracted_dir.empty()) {
        fs::remove_all(plan.extracted_dir, error);
        std::fprintf(stderr, "removed the extracted copy %s%s\n", plan.extracted_dir.c_str(),
                     error ? (" (failed: " + error.message() + ")").c_str() : "");
    }
    print_summary(plan.dataset, summary);
    return summary;
}

}  // namespace data_prep
