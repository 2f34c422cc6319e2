#include "data_prep/src/pipeline.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
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

// Held-out documents while the input is read: their tokens in a file, in input order, and where
// each sits, by its position in the validation order. Written to the validation split in that
// order at the end.
class HeldOutDocuments {
  public:
    HeldOutDocuments(const SplitWriter& validation, int64_t count)
        : path_(validation.directory() + "/" + validation.name() + "_held_out.tmp"),
          extents_(static_cast<size_t>(count), Extent{-1, 0}) {
        file_ = std::fopen(path_.c_str(), "w+b");
        if (!file_) throw std::runtime_error("cannot create " + path_ + ": " + std::strerror(errno));
    }
    ~HeldOutDocuments() {
        if (file_) std::fclose(file_);
        std::remove(path_.c_str());
    }
    HeldOutDocuments(const HeldOutDocuments&) = delete;
    HeldOutDocuments& operator=(const HeldOutDocuments&) = delete;

    void add(int64_t position, const std::vector<int>& tokens) {
        staging_.assign(tokens.begin(), tokens.end());
        if (std::fwrite(staging_.data(), sizeof(uint32_t), staging_.size(), file_) != staging_.size())
            throw std::runtime_error("cannot write " + path_ + ": " + std::strerror(errno));
        extents_[static_cast<size_t>(position)] = {written_, static_cast<int64_t>(tokens.size())};
        written_ += static_cast<int64_t>(tokens.size());
    }

    // Appends every added document to `validation` in position order.
    void write_in_order(SplitWriter& validation) {
        if (std::fflush(file_) != 0) throw std::runtime_error("cannot write " + path_ + ": " + std::strerror(errno));
        std::vector<int> tokens;
        for (const Extent& extent : extents_) {
            if (extent.offset < 0) continue;  // empty or skipped: the seed writes nothing for it
            staging_.resize(static_cast<size_t>(extent.count));
            if (fseeko(file_, static_cast<off_t>(extent.offset * sizeof(uint32_t)), SEEK_SET) != 0 ||
                std::fread(staging_.data(), sizeof(uint32_t), staging_.size(), file_) != staging_.size())
                throw std::runtime_error("cannot read back " + path_ + ": " + std::strerror(errno));
            tokens.assign(staging_.begin(), staging_.end());
            validation.append_document(tokens);
        }
    }

  private:
    struct Extent {
        int64_t offset;  // in tokens; -1: not added
        int64_t count;
    };
    std::string path_;
    std::FILE* file_ = nullptr;
    std::vector<Extent> extents_;
    int64_t written_ = 0;
    std::vector<uint32_t> staging_;
};

}  // namespace

int64_t count_documents(const std::vector<InputFile>& files, const ReaderOptions& reader, int threads) {
    int64_t total_bytes = 0;
    for (const InputFile& file : files) total_bytes += DocumentReader({file}, reader).total_bytes();
    Progress progress("count documents", total_bytes);
    std::atomic<size_t> next{0};
    std::atomic<int64_t> documents{0}, bytes_done{0};
    std::atomic<bool> failed{false};
    std::mutex mutex;  // guards progress and first_error
    std::exception_ptr first_error;
    const auto work = [&] {
        try {
            for (size_t i; !failed.load() && (i = next.fetch_add(1)) < files.size();) {
                DocumentReader file({files[i]}, reader);
                int64_t found = 0;
                file.read_all([&](RawDocument&&) {
                    ++found;
                    return true;
                });
                documents += found;
                bytes_done += file.total_bytes();
                std::lock_guard<std::mutex> lock(mutex);
                progress.update({bytes_done.load(), documents.load()});
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex);
            if (!first_error) first_error = std::current_exception();
            failed = true;
        }
    };
    std::vector<std::thread> helpers;
    for (int t = 1; t < std::min<int>(threads, static_cast<int>(files.size())); t++) helpers.emplace_back(work);
    work();
    for (std::thread& helper : helpers) helper.join();
    if (first_error) std::rethrow_exception(first_error);
    progress.finish({bytes_done.load(), documents.load()});
    return documents.load();
}

PipelineResult tokenize_to_splits(const std::vector<InputFile>& files, const Gpt2Tokenizer& tokenizer,
                                  const PipelineOptions& options, SplitWriter& train, const Holdout* holdout,
                                  SplitWriter* validation) {
    if ((holdout == nullptr) != (validation == nullptr))
        throw std::invalid_argument("a holdout needs a validation split and the other way round");
    DocumentReader reader(files, options.reader);
    std::unique_ptr<HeldOutDocuments> held_out;
    if (holdout) held_out = std::make_unique<HeldOutDocuments>(*validation, holdout->validation_documents().size());
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
    int64_t held_out_tokens = 0;
    Progress progress(options.progress_label, reader.total_bytes());
    const auto counts = [&] {
        return Progress::Counts{reader.bytes_consumed(), result.documents, train.tokens() + held_out_tokens};
    };
    try {
        std::vector<RawDocument> block;
        std::vector<std::vector<int>> tokens;
        std::vector<DocumentStatus> status;
        while (queue.pop(block)) {
            tokenize_block(block, tokenizer, options, tokens, status);
            for (size_t i = 0; i < block.size(); i++, result.documents++) {
                result.empty_documents += status[i] == DocumentStatus::kEmpty;
                result.invalid_documents += status[i] == DocumentStatus::kInvalid;
                const bool written = status[i] == DocumentStatus::kTokenized;
                const int64_t position = holdout ? holdout->validation_position(result.documents) : -1;
                if (position >= 0) {
                    if (written) held_out->add(position, tokens[i]);
                    held_out_tokens += written ? static_cast<int64_t>(tokens[i].size()) + 1 : 0;
                } else if (written) {
                    train.append_document(tokens[i]);
                }
            }
            progress.update(counts());
        }
    } catch (...) {
        queue.consumer_stopped();
        reader_thread.join();
        throw;
    }
    reader_thread.join();
    if (reader_error) std::rethrow_exception(reader_error);
    if (holdout) {
        if (result.documents != holdout->documents())
            throw std::runtime_error("the inputs hold " + std::to_string(result.documents) + " documents, but " +
                                     std::to_string(holdout->documents()) +
                                     " when they were counted for the holdout: did they change during the run? "
                                     "Run prepare again");
        held_out->write_in_order(*validation);
    }
    progress.finish(counts());
    result.skipped_inputs = reader.skipped();
    return result;
}

}  // namespace data_prep
