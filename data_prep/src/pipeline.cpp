#include "data_prep/src/pipeline.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>

#include "data_prep/src/progress.h"

namespace data_prep {

static_assert(Gpt2Tokenizer::kVocabSize <= 65536, "GPT-2 ids fit version-1 (uint16) shards");

SplitWriter::SplitWriter(std::string directory, std::string dataset, std::string split, int64_t shard_tokens)
    : directory_(std::move(directory)), dataset_(std::move(dataset)), split_(std::move(split)), shard_tokens_(shard_tokens) {
    if (shard_tokens_ <= 0 || shard_tokens_ > shard::kMaxTokensPerShard) {
        throw std::invalid_argument("shard size must be between 1 and " + std::to_string(shard::kMaxTokensPerShard) +
                                    " tokens, not " + std::to_string(shard_tokens_));
    }
}

void SplitWriter::append_document(const std::vector<int>& tokens) {
    staging_.assign(tokens.begin(), tokens.end());
    staging_.push_back(Gpt2Tokenizer::kEndOfText);
    append(staging_.data(), staging_.size());
    documents_++;
}

void SplitWriter::append(const uint32_t* tokens, size_t count) {
    while (count > 0) {
        if (!current_) {
            char name[64];
            std::snprintf(name, sizeof name, "_%s_%06zu.bin", split_.c_str(), shards_.size());
            current_ = std::make_unique<shard::ShardWriter>(directory_ + "/" + dataset_ + name, shard::kVersionUint16);
        }
        const size_t take = static_cast<size_t>(std::min<int64_t>(count, shard_tokens_ - current_->num_tokens()));
        current_->append(tokens, take);
        tokens += take;
        count -= take;
        tokens_ += static_cast<int64_t>(take);
        if (current_->num_tokens() == shard_tokens_) close_current_shard();
    }
}

void SplitWriter::close_current_shard() {
    current_->finish();
    const std::string& path = current_->path();
    shards_.push_back({path.substr(path.find_last_of('/') + 1), current_->num_tokens()});
    current_.reset();
}

void SplitWriter::finish() {
    if (current_) close_current_shard();
}

namespace {

// A small, fast generator with a fixed, documented algorithm (std::shuffle and the standard
// distributions differ between library implementations; our holdout must not).
struct SplitMix64 {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, n) without modulo bias (rejects the few values of the incomplete last range).
    uint64_t below(uint64_t n) {
        const uint64_t threshold = (0 - n) % n;
        for (;;) {
            const uint64_t r = next();
            if (r >= threshold) return r % n;
        }
    }
};

// Raw documents in flight from the reader thread to the tokenizing threads.
class BlockQueue {
  public:
    explicit BlockQueue(size_t capacity) : capacity_(capacity) {}

    // False when the consumer has stopped (the block is dropped).
    bool push(std::vector<RawDocument>&& block) {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return blocks_.size() < capacity_ || consumer_stopped_; });
        if (consumer_stopped_) return false;
        blocks_.push_back(std::move(block));
        changed_.notify_all();
        return true;
    }
    // False when the producer has finished and every block was taken.
    bool pop(std::vector<RawDocument>& block) {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return !blocks_.empty() || producer_finished_; });
        if (blocks_.empty()) return false;
        block = std::move(blocks_.front());
        blocks_.pop_front();
        changed_.notify_all();
        return true;
    }
    void producer_finished() {
        std::lock_guard<std::mutex> lock(mutex_);
        producer_finished_ = true;
        changed_.notify_all();
    }
    void consumer_stopped() {
        std::lock_guard<std::mutex> lock(mutex_);
        consumer_stopped_ = true;
        changed_.notify_all();
    }

  private:
    size_t capacity_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::vector<RawDocument>> blocks_;
    bool producer_finished_ = false, consumer_stopped_ = false;
};

enum class DocumentStatus : uint8_t { kTokenized, kEmpty, kInvalid };

// Tokenizes every document of a block; threads take documents one at a time (their sizes vary
// by orders of magnitude, so static partitions would leave threads idle).
void tokenize_block(const std::vector<RawDocument>& block, const Gpt2Tokenizer& tokenizer, const PipelineOptions& options,
                    std::vector<std::vector<int>>& tokens, std::vector<DocumentStatus>& status) {
    tokens.assign(block.size(), {});
    status.assign(block.size(), DocumentStatus::kTokenized);
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first_error;
    std::mutex error_mutex;
    const auto work = [&] {
        std::string storage;
        for (size_t i; !failed.load(std::memory_order_relaxed) && (i = next.fetch_add(1)) < block.size();) {
            try {
                const std::string_view text = document_text(block[i], options.reader, storage);
                if (text.empty()) {
                    status[i] = DocumentStatus::kEmpty;
                } else {
                    tokenizer.encode_append(text, tokens[i]);
                }
            } catch (const InvalidDocument&) {
                if (!options.skip_invalid_documents) {
                    std::lock_guard<std::mutex> lock(error_mutex);
                    if (!first_error) first_error = std::current_exception();
                    failed = true;
                }
                status[i] = DocumentStatus::kInvalid;
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!first_error) first_error = std::current_exception();
                failed = true;
            }
        }
    };
    const int helpers = static_cast<int>(std::min<size_t>(options.threads, block.size())) - 1;
    std::vector<std::thread> threads;
    for (int t = 0; t < helpers; t++) threads.emplace_back(work);
    work();
    for (std::thread& thread : threads) thread.join();
    if (first_error) std::rethrow_exception(first_error);
}

}  // namespace

std::vector<bool> choose_holdout(int64_t block_index, int64_t documents_before, int64_t block_documents,
                                 double fraction, uint64_t seed) {
    std::vector<bool> chosen(static_cast<size_t>(block_documents), false);
    const int64_t count = std::llround(fraction * double(documents_before + block_documents)) -
                          std::llround(fraction * double(documents_before));
    SplitMix64 seeding{seed};
    SplitMix64 rng{seeding.next() ^ SplitMix64{static_cast<uint64_t>(block_index)}.next()};
    std::vector<int64_t> order(static_cast<size_t>(block_documents));
    std::iota(order.begin(), order.end(), 0);
    for (int64_t i = 0; i < count; i++) {
        const int64_t j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(block_documents - i)));
        std::swap(order[i], order[j]);
        chosen[order[i]] = true;
    }
    return chosen;
}

PipelineResult tokenize_to_splits(const std::vector<std::string>& files, const Gpt2Tokenizer& tokenizer,
                                  const PipelineOptions& options, SplitWriter& main_split,
                                  SplitWriter* holdout_split, double holdout_fraction, uint64_t seed) {
    if (holdout_fraction < 0 || holdout_fraction > 1) throw std::invalid_argument("holdout fraction must be in [0, 1]");
    if (holdout_fraction > 0 && !holdout_split) throw std::invalid_argument("a holdout fraction needs a holdout split");
    DocumentReader reader(files, options.reader);
    // Two blocks read ahead keep the tokenizers busy while the reader decompresses.
    BlockQueue queue(2);
    std::exception_ptr reader_error;
    std::thread reader_thread([&] {
        try {
            std::vector<RawDocument> block;
            int64_t block_bytes = 0;
            const bool complete = reader.read_all([&](RawDocument&& document) {
                block_bytes += static_cast<int64_t>(document.bytes.size());
                block.push_back(std::move(document));
                if (static_cast<int64_t>(block.size()) < kBlockDocuments && block_bytes < kBlockBytes) return true;
                block_bytes = 0;
                return queue.push(std::exchange(block, {}));
            });
            if (complete && !block.empty()) queue.push(std::move(block));
        } catch (...) {
            reader_error = std::current_exception();
        }
        queue.producer_finished();
    });

    PipelineResult result;
    Progress progress(options.progress_label, reader.total_bytes());
    const auto counts = [&] {
        const int64_t documents = main_split.documents() + (holdout_split ? holdout_split->documents() : 0);
        const int64_t tokens = main_split.tokens() + (holdout_split ? holdout_split->tokens() : 0);
        return Progress::Counts{reader.bytes_consumed(), documents, tokens};
    };
    try {
        std::vector<RawDocument> block;
        std::vector<std::vector<int>> tokens;
        std::vector<DocumentStatus> status;
        int64_t block_index = 0, documents_before = 0;
        while (queue.pop(block)) {
            tokenize_block(block, tokenizer, options, tokens, status);
            std::vector<size_t> kept;
            for (size_t i = 0; i < block.size(); i++) {
                if (status[i] == DocumentStatus::kTokenized) kept.push_back(i);
                result.empty_documents += status[i] == DocumentStatus::kEmpty;
                result.invalid_documents += status[i] == DocumentStatus::kInvalid;
            }
            const int64_t kept_count = static_cast<int64_t>(kept.size());
            std::vector<bool> held_out(kept.size(), false);
            if (holdout_fraction > 0) held_out = choose_holdout(block_index, documents_before, kept_count, holdout_fraction, seed);
            for (size_t j = 0; j < kept.size(); j++) {
                (held_out[j] ? *holdout_split : main_split).append_document(tokens[kept[j]]);
            }
            documents_before += kept_count;
            block_index++;
            progress.update(counts());
        }
    } catch (...) {
        queue.consumer_stopped();
        reader_thread.join();
        throw;
    }
    reader_thread.join();
    if (reader_error) std::rethrow_exception(reader_error);
    progress.finish(counts());
    return result;
}

}  // namespace data_prep
