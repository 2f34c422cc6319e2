#include "host/dataloader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "host/shard.h"

namespace {

// Shuffles must be identical on every machine and library version (resume and multi-rank runs
// depend on it), so neither std::shuffle nor the std distributions, whose algorithms are
// unspecified, are used: splitmix64 streams and an unbiased Fisher-Yates.
uint64_t splitmix64(uint64_t& state) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// A stream seed from several keys; each key passes through the mixer so nearby keys give
// unrelated streams.
uint64_t stream_seed(uint64_t seed, uint64_t epoch, uint64_t stream) {
    uint64_t state = seed;
    uint64_t mixed = splitmix64(state);
    state = mixed ^ epoch;
    mixed = splitmix64(state);
    state = mixed ^ stream;
    return splitmix64(state);
}

// Uniform in [0, bound) without modulo bias: values below 2^64 mod bound are rejected.
uint64_t uniform_below(uint64_t& state, uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        const uint64_t r = splitmix64(state);
        if (r >= threshold) return r % bound;
    }
}

template <typename Index> void shuffle_in_place(std::vector<Index>& items, uint64_t seed) {
    uint64_t state = seed;
    for (size_t i = items.size(); i > 1; --i) {
        const size_t j = static_cast<size_t>(uniform_below(state, i));
        std::swap(items[i - 1], items[j]);
    }
}

constexpr uint64_t kShardOrderStream = ~uint64_t{0};

std::string shard_source_hint(const DataLoaderOptions& options) {
    const bool validation = options.role == "validation";
    return std::string("make shards with `./data_prep/prepare tiny` (or another dataset's recipe), or point ") +
           "--data-dir/--dataset" + (validation ? " or --val-glob" : " or --train-glob") + " at existing shards";
}

}  // namespace

DataLoader::DataLoader(const DataLoaderOptions& options) : options_(options) {
    if (options.batch_size < 1 || options.seq_len < 1)
        throw std::invalid_argument("DataLoader: batch_size and seq_len must be positive");
    if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size)
        throw std::invalid_argument("DataLoader: rank " + std::to_string(options.rank) + " is outside world size " +
                                    std::to_string(options.world_size));

    std::vector<std::string> paths;
    try {
        paths = shard::glob_files(options.pattern);
    } catch (const std::exception& e) {
        throw std::runtime_error("no " + options.role + " shards: " + e.what() + "\n  " + shard_source_hint(options));
    }
    if (paths.empty())
        throw std::runtime_error("no " + options.role + " shards match '" + options.pattern + "'\n  " +
                                 shard_source_hint(options));

    const int64_t window_tokens = int64_t{options.seq_len} + 1;
    int64_t all_windows = 0;
    int64_t all_tokens = 0;
    for (const std::string& path : paths) {
        const shard::ShardInfo info = shard::read_header(path);
        // Windows start every T tokens and hold T+1, so neighbours share one token, as the seed's
        // LMDataset: (n - 1) / T of them; the last (n - 1) % T tokens are never read.
        const int64_t num_windows = info.num_tokens < window_tokens ? 0 : (info.num_tokens - 1) / options.seq_len;
        if (num_windows == 0)
            throw std::runtime_error(options.role + " shard " + path + " has " + std::to_string(info.num_tokens) +
                                     " tokens, fewer than one window of seq_len+1 = " +
                                     std::to_string(window_tokens) +
                                     " tokens; use a smaller --seq-len or leave the file out of the glob");
        const int bytes_per_token = info.version == shard::kVersionUint32 ? 4 : 2;
        shards_.push_back(Shard{path, bytes_per_token, num_windows});
        all_windows += num_windows;
        all_tokens += info.num_tokens;
    }

    total_windows_ = all_windows;
    if (options.max_tokens > 0) total_windows_ = std::min(total_windows_, options.max_tokens / options.seq_len);
    windows_per_rank_ = total_windows_ / options.world_size;
    if (windows_per_rank_ < options.batch_size) {
        std::string message = "too little " + options.role + " data for one batch: '" + options.pattern +
                              "' holds " + std::to_string(all_tokens) + " tokens in " +
                              std::to_string(shards_.size()) + " shard(s) = " + std::to_string(all_windows) +
                              " windows of seq_len+1 = " + std::to_string(window_tokens) + " tokens";
        if (total_windows_ < all_windows)
            message += ", capped to " + std::to_string(total_windows_) + " windows by a limit of " +
                       std::to_string(options.max_tokens) + " tokens";
        message += "; that is " + std::to_string(windows_per_rank_) + " window(s) per rank over " +
                   std::to_string(options.world_size) + " rank(s), but a batch needs " +
                   std::to_string(options.batch_size) + ".\n  Use a smaller --device-batch or --seq-len" +
                   (total_windows_ < all_windows ? std::string(", a larger --val-tokens") : std::string()) +
                   ", or more data";
        throw std::runtime_error(message);
    }
    read_buffer_.resize(static_cast<size_t>(window_tokens) * 4);
    start_epoch(0);
}

DataLoader::~DataLoader() {
    if (fd_ >= 0) ::close(fd_);
}

void DataLoader::start_epoch(int64_t epoch) {
    epoch_ = epoch;
    window_in_epoch_ = 0;
    epoch_shard_order_.resize(shards_.size());
    std::iota(epoch_shard_order_.begin(), epoch_shard_order_.end(), 0);
    if (options_.shuffle)
        shuffle_in_place(epoch_shard_order_, stream_seed(options_.seed, static_cast<uint64_t>(epoch), kShardOrderStream));
    epoch_shard_start_.assign(1, 0);
    for (int shard : epoch_shard_order_)
        epoch_shard_start_.push_back(epoch_shard_start_.back() + shards_[shard].num_windows);
    cached_perm_shard_ = -1;
}

void DataLoader::locate(int64_t global_index, int* shard, int64_t* window) {
    // Last start <= global_index: the shard (in epoch order) that holds this window.
    const auto after = std::upper_bound(epoch_shard_start_.begin(), epoch_shard_start_.end(), global_index);
    const size_t position = static_cast<size_t>(after - epoch_shard_start_.begin()) - 1;
    const int chosen = epoch_shard_order_[position];
    const int64_t index_in_shard = global_index - epoch_shard_start_[position];
    *shard = chosen;
    if (!options_.shuffle) {
        *window = index_in_shard;
        return;
    }
    if (cached_perm_shard_ != chosen) {
        cached_perm_.resize(static_cast<size_t>(shards_[chosen].num_windows));
        std::iota(cached_perm_.begin(), cached_perm_.end(), 0u);
        shuffle_in_place(cached_perm_, stream_seed(options_.seed, static_cast<uint64_t>(epoch_), static_cast<uint64_t>(chosen)));
        cached_perm_shard_ = chosen;
    }
    *window = cached_perm_[static_cast<size_t>(index_in_shard)];
}

void DataLoader::open_shard(int shard) {
    if (open_shard_ == shard) return;
    if (fd_ >= 0) ::close(fd_);
    open_shard_ = -1;
    fd_ = ::open(shards_[shard].path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
        throw std::runtime_error("cannot open " + options_.role + " shard " + shards_[shard].path + ": " +
                                 std::strerror(errno));
    open_shard_ = shard;
}

void DataLoader::read_window(int shard, int64_t window, int32_t* out) {
    open_shard(shard);
    const Shard& info = shards_[shard];
    const int64_t window_tokens = int64_t{options_.seq_len} + 1;
    const size_t bytes = static_cast<size_t>(window_tokens) * info.bytes_per_token;
    const int64_t first_token = window * options_.seq_len;
    const off_t offset = static_cast<off_t>(shard::kHeaderBytes + first_token * info.bytes_per_token);
    size_t done = 0;
    while (done < bytes) {
        const ssize_t got = ::pread(fd_, read_buffer_.data() + done, bytes - done, offset + static_cast<off_t>(done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            throw std::runtime_error("cannot read window " + std::to_string(window) + " of " + options_.role +
                                     " shard " + info.path + ": " +
                                     (got < 0 ? std::strerror(errno) : "the file is shorter than its header says"));
        done += static_cast<size_t>(got);
    }
    for (int64_t i = 0; i < window_tokens; ++i) {
        uint32_t id;
        if (info.bytes_per_token == 2) {
            uint16_t narrow;
            std::memcpy(&narrow, read_buffer_.data() + i * 2, 2);
            id = narrow;
        } else {
            std::memcpy(&id, read_buffer_.data() + i * 4, 4);
        }
        if (id >= static_cast<uint32_t>(options_.vocab_size))
            throw std::runtime_error(options_.role + " shard " + info.path + " holds token id " + std::to_string(id) +
                                     " (token " + std::to_string(first_token + i) +
                                     "), not below the vocabulary size " + std::to_string(options_.vocab_size) +
                                     "; the shard was made with another tokenizer or is corrupt");
        out[i] = static_cast<int32_t>(id);
    }
}

void DataLoader::next_batch(int32_t* tokens) {
    const int64_t window_tokens = int64_t{options_.seq_len} + 1;
    if (window_in_epoch_ + options_.batch_size > windows_per_rank_) start_epoch(epoch_ + 1);
    for (int b = 0; b < options_.batch_size; ++b) {
        const int64_t global_index = window_in_epoch_ * options_.world_size + options_.rank;
        int shard = 0;
        int64_t window = 0;
        locate(global_index, &shard, &window);
        read_window(shard, window, tokens + b * window_tokens);
        ++window_in_epoch_;
    }
}

std::vector<int32_t> DataLoader::next_batch() {
    std::vector<int32_t> tokens(static_cast<size_t>(options_.batch_size) * (options_.seq_len + 1));
    next_batch(tokens.data());
    return tokens;
}

void DataLoader::reset() { start_epoch(0); }

DataLoaderState DataLoader::state() const {
    DataLoaderState state;
    state.epoch = epoch_;
    state.window_in_epoch = window_in_epoch_;
    state.total_windows = total_windows_;
    state.seed = options_.shuffle ? options_.seed : 0;
    state.seq_len = options_.seq_len;
    state.rank = options_.rank;
    state.world_size = options_.world_size;
    state.shuffle = options_.shuffle ? 1 : 0;
    state.format = kDataLoaderStateFormat;
    return state;
}

void DataLoader::restore(const DataLoaderState& state) {
    if (state.format != kDataLoaderStateFormat)
        throw std::runtime_error(
            "cannot continue the " + options_.role + " data position saved in the checkpoint: it counts windows in " +
            "data-order format " + std::to_string(state.format) + " of an older train_gpt2cu, this one reads format " +
            std::to_string(kDataLoaderStateFormat) + " (" + kDataLoaderStateFormatText +
            "). An exact resume is impossible: start a new run (e.g. from the checkpoint's weights with -e "
            "model_SSSSSSSS.bin), or finish this run with the build that wrote it");
    const DataLoaderState mine = this->state();
    std::string mismatch;
    auto differs = [&](const char* what, int64_t saved, int64_t current) {
        if (saved != current && mismatch.empty())
            mismatch = std::string(what) + " " + std::to_string(saved) + " when saved, " + std::to_string(current) +
                       " now";
    };
    differs("seq_len", state.seq_len, mine.seq_len);
    differs("world size", state.world_size, mine.world_size);
    differs("rank", state.rank, mine.rank);
    differs("shuffle", state.shuffle, mine.shuffle);
    differs("seed", static_cast<int64_t>(state.seed), static_cast<int64_t>(mine.seed));
    differs("number of windows in the data", state.total_windows, mine.total_windows);
    if (!mismatch.empty())
        throw std::runtime_error("cannot continue the " + options_.role + " data position saved in the checkpoint: " +
                                 mismatch + " ('" + options_.pattern +
                                 "'). Resume with the same data, --seq-len, --seed and number of processes");
    if (state.epoch < 0 || state.window_in_epoch < 0 || state.window_in_epoch > windows_per_rank_)
        throw std::runtime_error("the saved " + options_.role + " data position (epoch " + std::to_string(state.epoch) +
                                 ", window " + std::to_string(state.window_in_epoch) + ") is corrupt");
    start_epoch(state.epoch);
    window_in_epoch_ = state.window_in_epoch;
}
