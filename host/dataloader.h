// Training and validation batches from token shards (host/shard.h).
//
// The stream. A split's shards, in name order, are one token stream of N tokens: prepare cuts
// the split's stream into shards, with documents running across shard boundaries, so the stream
// is the seed's concatenated token array of the split.
//
// Windows. The stream is cut into windows of T+1 tokens that start every T tokens, so
// neighbouring windows share one token, as the seed's LMDataset: W = (N - 1) / T windows, window
// w being tokens [w*T, w*T + T + 1); the last (N - 1) % T tokens are never read. A window gives
// T inputs [0, T) and T targets [1, T+1). Windows cross document and shard boundaries.
//
// Epochs, ranks, batches. An epoch visits every window once, in one order over the whole split:
// shuffled, a pseudo-random permutation of [0, W) keyed by (seed, epoch), as the seed's sampler
// draws one permutation of all windows per epoch; unshuffled (validation), stream order. Window
// i of that order goes to rank i % R, as the seed's DistributedSampler (indices[rank::R]). For
// training, the last W % R windows of the order are skipped so that every rank gets exactly
// W / R, and a rank's batches are consecutive runs of B of its windows within one epoch: the
// last (W / R) % B windows of a rank's epoch, fewer than a batch, are skipped (different ones
// each epoch when shuffled). So all ranks are always at the same position of the same epoch, and
// the windows they read at one step are always distinct. Everything is a pure function of
// (files, T, R, seed), so a restored position continues exactly.
//
// Evaluation (keep_remainder) reads every window of the split once per epoch: rank r takes
// windows r, r + R, r + 2R, ..., so ranks differ by at most one window, and a rank's last batch
// may hold fewer than B (next_batch returns how many it filled).
//
// The permutation (WindowPermutation) is evaluated per position in O(1) time and memory, so a
// split of 180M windows (the Pile at T = 2048) costs no memory per rank and a resume needs no
// replay.
//
// I/O: shard headers are read at construction; each window is read by offset (pread) from the
// shard or two that hold it, with a few shards kept open. Nothing else is held in memory.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

// A pseudo-random permutation of [0, size) keyed by (seed, epoch): a balanced Feistel network on
// 2h bits (4^h >= size), applied again while the result is >= size. Cycle walking stays inside
// the cycle of the start value, so it ends, after fewer than 4 passes of the network on average
// (4^h < 4 * size).
class WindowPermutation {
  public:
    WindowPermutation() = default;
    WindowPermutation(int64_t size, uint64_t seed, uint64_t epoch);
    int64_t operator()(int64_t index) const;  // 0 <= index < size

  private:
    uint64_t encrypt(uint64_t value) const;

    uint64_t size_ = 1;
    int half_bits_ = 1;
    uint64_t mask_ = 1;
    uint64_t round_keys_[8] = {};
};

struct DataLoaderOptions {
    std::string pattern;      // glob of shard files, e.g. data/tiny/*_train_*.bin
    int batch_size = 1;       // B: windows per batch, per rank
    int seq_len = 1;          // T: a window holds T+1 tokens
    int rank = 0;
    int world_size = 1;
    uint64_t seed = 0;        // shuffle seed (ignored when shuffle is false)
    bool shuffle = true;      // false for validation: windows in stream order
    int64_t max_tokens = 0;   // cap on target tokens per epoch over all ranks (0 = every window)
    bool keep_remainder = false;  // evaluation: no window skipped, the last batch may be short
    int vocab_size = 50257;   // every token must be below this
    std::string role = "training";  // "training" / "validation" / "test": names the data in messages
};

// What a saved position means: which windows exist and in which order an epoch visits them.
// Bump it whenever either changes; restore() rejects every other format. States written before
// the field existed read as format 0 (the field's bytes were the upper half of `shuffle`).
constexpr uint16_t kDataLoaderStateFormat = 2;
constexpr const char* kDataLoaderStateFormatText =
    "windows of T+1 tokens with stride T over the split's whole stream, one permutation of them all per epoch";

// A loader's position, saved in checkpoints. Trivially copyable with a fixed layout. The
// fields after the position identify the data it belongs to; restore() refuses a state that
// another data set, T, seed, rank layout or format produced.
struct DataLoaderState {
    int64_t epoch = 0;
    int64_t window_in_epoch = 0;   // this rank's windows already consumed in the epoch
    int64_t total_windows = 0;     // W before the per-rank rounding: fingerprint of the data
    uint64_t seed = 0;
    int32_t seq_len = 0;
    int32_t rank = 0;
    int32_t world_size = 0;
    uint16_t shuffle = 0;
    uint16_t format = 0;           // kDataLoaderStateFormat when written by state()
};
static_assert(std::is_trivially_copyable_v<DataLoaderState> && sizeof(DataLoaderState) == 48,
              "DataLoaderState is written raw into checkpoint files; keep its layout fixed");

class DataLoader {
  public:
    // Reads and validates every shard header. Throws std::runtime_error when no file matches
    // (naming the pattern and how to make shards) or there are too few windows for one batch
    // per rank.
    explicit DataLoader(const DataLoaderOptions& options);
    ~DataLoader();
    DataLoader(const DataLoader&) = delete;
    DataLoader& operator=(const DataLoader&) = delete;

    // Fills `tokens` (B, T+1) row-major with the next batch of this rank and returns the windows
    // it holds: B, or with keep_remainder fewer for a rank's last batch of an epoch. Throws naming
    // the file when a token id is >= vocab_size or a read fails.
    int next_batch(int32_t* tokens);
    std::vector<int32_t> next_batch();  // the windows it filled

    // Batches per rank in one epoch: an evaluation pass is reset() then this many batches.
    int64_t batches_per_epoch() const {
        const int64_t B = options_.batch_size;
        return options_.keep_remainder ? (windows_per_rank_ + B - 1) / B : windows_per_rank_ / B;
    }
    void reset();

    DataLoaderState state() const;
    // Continues from `state`. Throws if it came from a different data set, setup or format; the
    // batch size may differ (the position counts windows).
    void restore(const DataLoaderState& state);

    int64_t epoch() const { return epoch_; }
    int num_shards() const { return static_cast<int>(shards_.size()); }
    int64_t total_windows() const { return total_windows_; }

  private:
    struct Shard {
        std::string path;
        int bytes_per_token;
        int64_t first_token;  // position of its first token in the split's stream
        int64_t num_tokens;
    };
    struct OpenShard {
        int shard;
        int fd;
        uint64_t last_use;
    };

    void start_epoch(int64_t epoch);
    // Window (0 <= window < W) that position `index` of the current epoch's order holds.
    int64_t window_at(int64_t index) const;
    void read_window(int64_t window, int32_t* out);
    // Tokens [first, first + count) of one shard (positions within the shard).
    void read_tokens(int shard, int64_t first, int64_t count, int32_t* out);
    int shard_fd(int shard);

    DataLoaderOptions options_;
    std::vector<Shard> shards_;
    int64_t total_windows_ = 0;    // W: over the whole stream, after the max_tokens cap
    int64_t windows_per_rank_ = 0; // this rank's windows per epoch: W / R, or with keep_remainder its share

    int64_t epoch_ = 0;
    int64_t window_in_epoch_ = 0;
    WindowPermutation order_;              // this epoch's, when shuffled

    std::vector<OpenShard> open_shards_;  // a few file descriptors, least recently used replaced
    uint64_t shard_use_clock_ = 0;
    std::vector<uint8_t> read_buffer_;
};
