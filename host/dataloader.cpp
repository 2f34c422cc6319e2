#include "host/dataloader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "host/shard.h"

namespace {

// The order must be identical on every machine and library version (resume and multi-rank runs
// depend on it), so it is built from splitmix64's mixer, not from std:: engines or
// distributions, whose algorithms are unspecified.
constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;  // splitmix64's increment

uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

constexpr size_t kMaxOpenShards = 16;

std::string shard_source_hint(const DataLoaderOptions& options) {
    const char* glob_flag = options.role == "validation" ? "--val-glob" : options.role == "test" ? "--test-glob" : "--train-glob";
    return std::string("make shards with `./data_prep/prepare tiny` (or another dataset's recipe), or point ") +
           "--data-dir/--dataset or " + glob_flag + " at existing shards";
}

}  // namespace

WindowPermutation::WindowPermutation(int64_t size, uint64_t seed, uint64_t epoch) : size_(static_cast<uint64_t>(size)) {
    while (half_bits_ < 31 && (uint64_t{1} << (2 * half_bits_)) < size_) ++half_bits_;
    mask_ = (uint64_t{1} << half_bits_) - 1;
    uint64_t key = mix64(mix64(seed + kGoldenGamma) ^ epoch);
    for (uint64_t& round_key : round_keys_) round_key = key = mix64(key + kGoldenGamma);
}

int64_t WindowPermutation::operator()(int64_t index) const {
    uint64_t value = static_cast<uint64_t>(index);
    do {
        value = encrypt(value);
    } while (value >= size_);
    return static_cast<int64_t>(value);
}

uint64_t WindowPermutation::encrypt(uint64_t value) const {
    uint64_t left = value >> half_bits_, right = value & mask_;
    for (uint64_t round_key : round_keys_) {
        const uint64_t next = left ^ (mix64(right ^ round_key) & mask_);
        left = right;
        right = next;
    }
    return (left << half_bits_) | right;
}

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

    int64_t all_tokens = 0;
    for (const std::string& path : paths) {
        const shard::ShardInfo info = shard::read_header(path);
        const int bytes_per_token = info.version == shard::kVersionUint32 ? 4 : 2;
        shards_.push_back(Shard{path, bytes_per_token, all_tokens, info.num_tokens});
        all_tokens += info.num_tokens;
    }

    const int64_t window_tokens = int64_t{options.seq_len} + 1;
    const int64_t all_windows = all_tokens < window_tokens ? 0 : (all_tokens - 1) / options.seq_len;
    total_windows_ = all_windows;
    if (options.max_tokens > 0) total_windows_ = std::min(total_windows_, options.max_tokens / options.seq_len);
    const int64_t R = options.world_size;
    windows_per_rank_ = options.keep_remainder ? (total_windows_ - options.rank + R - 1) / R : total_windows_ / R;
    if (options.keep_remainder ? total_windows_ < 1 : windows_per_rank_ < options.batch_size) {
        std::string message = "too little " + options.role + " data for " +
                              (options.keep_remainder ? "one window" : "one batch") + ": '" + options.pattern +
                              "' holds " + std::to_string(all_tokens) + " tokens in " +
                              std::to_string(shards_.size()) + " shard(s) = " + std::to_string(all_windows) +
                              " windows of seq_len+1 = " + std::to_string(window_tokens) + " tokens (one every " +
                              std::to_string(options.seq_len) + ")";
        if (total_windows_ < all_windows)
            message += ", capped to " + std::to_string(total_windows_) + " windows by a limit of " +
                       std::to_string(options.max_tokens) + " tokens";
        if (!options.keep_remainder)
            message += "; that is " + std::to_string(windows_per_rank_) + " window(s) per rank over " +
                       std::to_string(options.world_size) + " rank(s), but a batch needs " +
                       std::to_string(options.batch_size);
        message += std::string(".\n  Use a ") + (options.keep_remainder ? "" : "smaller --device-batch or ") +
                   "shorter --seq-len" +
                   (total_windows_ < all_windows ? std::string(", a larger --val-tokens") : std::string()) +
                   ", or more data";
        throw std::runtime_error(message);
    }
    read_buffer_.resize(static_cast<size_t>(window_tokens) * 4);
    start_epoch(0);
}

DataLoader::~DataLoader() {
    for (const OpenShard& open : open_shards_) ::close(open.fd);
}

void DataLoader::start_epoch(int64_t epoch) {
    epoch_ = epoch;
    window_in_epoch_ = 0;
    order_ = WindowPermutation(total_windows_, options_.seed, static_cast<uint64_t>(epoch));
}

int64_t DataLoader::window_at(int64_t index) const { return options_.shuffle ? order_(index) : index; }

int DataLoader::shard_fd(int shard) {
    ++shard_use_clock_;
    for (OpenShard& open : open_shards_) {
        if (open.shard == shard) {
            open.last_use = shard_use_clock_;
            return open.fd;
        }
    }
    const int fd = ::open(shards_[shard].path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw std::runtime_error("cannot open " + options_.role + " shard " + shards_[shard].path + ": " +
                                 std::strerror(errno));
    if (open_shards_.size() < kMaxOpenShards) {
        open_shards_.push_back({shard, fd, shard_use_clock_});
    } else {
        OpenShard& oldest = *std::min_element(open_shards_.begin(), open_shards_.end(),
                                              [](const OpenShard& a, const OpenShard& b) { return a.last_use < b.last_use; });
        ::close(oldest.fd);
        oldest = {shard, fd, shard_use_clock_};
    }
    return fd;
}

void DataLoader::read_tokens(int shard, int64_t first, int64_t count, int32_t* out) {
    const int fd = shard_fd(shard);
    const Shard& info = shards_[shard];
    const size_t bytes = static_cast<size_t>(count) * info.bytes_per_token;
    const off_t offset = static_cast<off_t>(shard::kHeaderBytes + first * info.bytes_per_token);
    size_t done = 0;
    while (done < bytes) {
        const ssize_t got = ::pread(fd, read_buffer_.data() + done, bytes - done, offset + static_cast<off_t>(done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            throw std::runtime_error("cannot read tokens " + std::to_string(first) + ".." +
                                     std::to_string(first + count - 1) + " of " + options_.role + " shard " +
                                     info.path + ": " +
                                     (got < 0 ? std::strerror(errno) : "the file is shorter than its header says"));
        done += static_cast<size_t>(got);
    }
    for (int64_t i = 0; i < count; ++i) {
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
                                     " (token " + std::to_string(first + i) + "), not below the vocabulary size " +
                                     std::to_string(options_.vocab_size) +
                                     "; the shard was made with another tokenizer or is corrupt");
        out[i] = static_cast<int32_t>(id);
    }
}

void DataLoader::read_window(int64_t window, int32_t* out) {
    int64_t token = window * options_.seq_len;
    int64_t remaining = int64_t{options_.seq_len} + 1;
    // Last shard starting at or before `token`; empty shards before it are passed over.
    auto after = std::upper_bound(shards_.begin(), shards_.end(), token,
                                  [](int64_t position, const Shard& shard) { return position < shard.first_token; });
    for (size_t shard = static_cast<size_t>(after - shards_.begin()) - 1; remaining > 0 && shard < shards_.size();
         ++shard) {
        const Shard& info = shards_[shard];
        const int64_t first = token - info.first_token;
        const int64_t count = std::min(remaining, info.num_tokens - first);
        if (count <= 0) continue;
        read_tokens(static_cast<int>(shard), first, count, out);
        out += count;
        token += count;
        remaining -= count;
    }
    if (remaining > 0) throw std::logic_error("DataLoader: window " + std::to_string(window) + " runs past the data");
}

int DataLoader::next_batch(int32_t* tokens) {
    const int64_t window_tokens = int64_t{options_.seq_len} + 1;
    const int64_t left = windows_per_rank_ - window_in_epoch_;
    if (options_.keep_remainder ? left <= 0 : left < options_.batch_size) start_epoch(epoch_ + 1);
    const int windows = static_cast<int>(std::min<int64_t>(options_.batch_size, windows_per_rank_ - window_in_epoch_));
    for (int b = 0; b < windows; ++b) {
        const int64_t index = window_in_epoch_ * options_.world_size + options_.rank;
        read_window(window_at(index), tokens + b * window_tokens);
        ++window_in_epoch_;
    }
    return windows;
}

std::vector<int32_t> DataLoader::next_batch() {
    std::vector<int32_t> tokens(static_cast<size_t>(options_.batch_size) * (options_.seq_len + 1));
    tokens.resize(static_cast<size_t>(next_batch(tokens.data())) * (options_.seq_len + 1));
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
