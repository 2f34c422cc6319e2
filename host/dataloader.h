// Training and validation batches from token shards (host/shard.h).
//
// Windows. Each shard's token stream is cut into windows of T+1 tokens that start every T
// tokens, so neighbouring windows share one token, as the seed's LMDataset: a shard of n tokens
// has (n - 1) / T windows and its last (n - 1) % T tokens are never read. A window gives T inputs
// [0, T) and T targets [1, T+1). Windows may cross document boundaries, as in the seed.
//
// Epochs, ranks, batches. An epoch visits the windows of every shard once: shards in an order
// shuffled from (seed, epoch), and within each shard its windows in an order shuffled from
// (seed, epoch, shard) -- or, unshuffled, shards by name and windows in file order. Window i of
// that sequence goes to rank i % R; the last W % R windows of the sequence are skipped so that
// every rank gets exactly W / R windows per epoch. A rank's batches are consecutive runs of B of
// its windows within one epoch: the last (W / R) % B windows of a rank's epoch, fewer than a
// batch, are skipped (different ones each epoch when shuffled). So all ranks are always at the
// same position of the same epoch, and the windows they read at one step are always distinct.
// Everything is a pure function of (files, T, R, seed), so a restored position continues exactly.
//
// Memory: shard headers are read at construction; tokens are read window by window (pread), so
// a 100M-token shard costs nothing until its windows are needed.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

struct DataLoaderOptions {
    std::string pattern;      // glob of shard files, e.g. data/tiny/*_train_*.bin
    int batch_size = 1;       // B: windows per batch, per rank
    int seq_len = 1;          // T: a window holds T+1 tokens
    int rank = 0;
    int world_size = 1;
    uint64_t seed = 0;        // shuffle seed (ignored when shuffle is false)
    bool shuffle = true;      // false for validation: shards by name, windows in file order
    int64_t max_tokens = 0;   // cap on target tokens per epoch over all ranks (0 = every window)
    int vocab_size = 50257;   // every token must be below this
    std::string role = "training";  // "training" / "validation": names the data in messages
};

// What a saved position means: which windows exist and in which order an epoch visits them.
// Bump it whenever either changes; restore() rejects every other format. States written before
// the field existed read as format 0 (the field's bytes were the upper half of `shuffle`).
constexpr uint16_t kDataLoaderStateFormat = 1;
constexpr const char* kDataLoaderStateFormatText =
    "windows of T+1 tokens with stride T; shards in a shuffled order, each shard's windows shuffled";

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
    // (naming the pattern and how to make shards), a shard is shorter than one window, or there
    // are too few windows for one batch per rank.
    explicit DataLoader(const DataLoaderOptions& options);
    ~DataLoader();
    DataLoader(const DataLoader&) = delete;
    DataLoader& operator=(const DataLoader&) = delete;

    // Fills `tokens` (B, T+1) row-major with the next batch of this rank. Throws naming the file
    // when a token id is >= vocab_size or a read fails.
    void next_batch(int32_t* tokens);
    std::vector<int32_t> next_batch();

    // Complete batches per rank in one epoch: a validation pass is reset() then this many batches.
    int64_t batches_per_epoch() const { return windows_per_rank_ / options_.batch_size; }
    void reset();

    DataLoaderState state() const;
    // Continues from `state`. Throws if it came from a different data set or setup; the batch
    // size may differ (the position counts windows).
    void restore(const DataLoaderState& state);

    int64_t epoch() const { return epoch_; }
    int num_shards() const { return static_cast<int>(shards_.size()); }
    int64_t total_windows() const { return total_windows_; }

  private:
    struct Shard {
        std::string path;
        int bytes_per_token;
        int64_t num_windows;
    };

    void start_epoch(int64_t epoch);
    // Window `global_index` of the current epoch's sequence: which shard, which window in it.
    void locate(int64_t global_index, int* shard, int64_t* window);
    void read_window(int shard, int64_t window, int32_t* out);
    void open_shard(int shard);

    DataLoaderOptions options_;
    std::vector<Shard> shards_;
    int64_t total_windows_ = 0;    // W: over all shards, after the max_tokens cap
    int64_t windows_per_rank_ = 0; // W / R

    int64_t epoch_ = 0;
    int64_t window_in_epoch_ = 0;
    std::vector<int> epoch_shard_order_;      // shard indices in this epoch's order
    std::vector<int64_t> epoch_shard_start_;  // first global window index of each, plus the end

    int cached_perm_shard_ = -1;              // window permutation of one shard in this epoch
    std::vector<uint32_t> cached_perm_;

    int open_shard_ = -1;
    int fd_ = -1;
    std::vector<uint8_t> read_buffer_;
};
