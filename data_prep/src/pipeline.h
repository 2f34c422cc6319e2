// The tokenization pipeline: raw documents from a DocumentReader, tokenized by many threads,
// written in input order to the shards of one or two splits.
//
//   reader thread --(blocks of documents)--> worker threads (text extraction + BPE)
//                 --> main thread: holdout choice, <|endoftext|> after each document, shards
//
// Documents travel in blocks of up to kBlockDocuments documents (fewer when their text passes
// kBlockBytes). Block boundaries depend only on the input, never on the number of threads, and
// so does everything written: the output is byte-identical for any --threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data_prep/src/inputs.h"
#include "host/shard.h"
#include "host/tokenizer.h"

namespace data_prep {

constexpr int64_t kBlockDocuments = 16384;
constexpr int64_t kBlockBytes = 64 << 20;

struct ShardRecord {
    std::string file;  // name inside the output directory
    int64_t tokens = 0;
};

// The shards of one split: <directory>/<dataset>_<split>_NNNNNN.bin, each exactly shard_tokens
// tokens except the last (documents run across shard boundaries, as the trainer reads one
// stream). Shards are written with shard::ShardWriter (tmp + rename) as version 1 (uint16), which
// holds every GPT-2 token id.
class SplitWriter {
  public:
    SplitWriter(std::string directory, std::string dataset, std::string split, int64_t shard_tokens);
    // Appends a document's tokens and then <|endoftext|>.
    void append_document(const std::vector<int>& tokens);
    // Completes the last shard; a split without tokens writes no file.
    void finish();

    int64_t documents() const { return documents_; }
    int64_t tokens() const { return tokens_; }
    const std::vector<ShardRecord>& shards() const { return shards_; }

  private:
    void append(const uint32_t* tokens, size_t count);
    void close_current_shard();

    std::string directory_, dataset_, split_;
    int64_t shard_tokens_;
    int64_t documents_ = 0, tokens_ = 0;
    std::vector<ShardRecord> shards_;
    std::unique_ptr<shard::ShardWriter> current_;
    std::vector<uint32_t> staging_;
};

// Which documents of a stream go to the holdout split: in every block of n documents, the first
// k of a seeded Fisher-Yates shuffle of the block, where k makes the running total exactly
// round(fraction * documents so far). A whole-stream shuffle would need the document count before
// the first pass (OpenWebText is 40 GB of xz); per-block shuffles need none and are as good
// a random choice. For a stream of one block (any input under 16384 documents) this is exactly a
// seeded shuffle of all documents.
std::vector<bool> choose_holdout(int64_t block_index, int64_t documents_before, int64_t block_documents,
                                 double fraction, uint64_t seed);

struct PipelineOptions {
    int threads = 1;
    ReaderOptions reader;
    bool skip_invalid_documents = false;  // count and skip (InvalidDocument) instead of failing
    std::string progress_label = "tokenize";
};

struct PipelineResult {
    int64_t empty_documents = 0;    // documents whose text was empty: skipped
    int64_t invalid_documents = 0;  // skipped under skip_invalid_documents
};

// Reads `files`, tokenizes every document and appends it to `main_split`, or to
// `holdout_split` for the documents choose_holdout picks (holdout_split may be null when
// holdout_fraction is 0). Throws on any input, tokenizer or output error; the reader and the
// workers are stopped and joined before the exception leaves.
PipelineResult tokenize_to_splits(const std::vector<std::string>& files, const Gpt2Tokenizer& tokenizer,
                                  const PipelineOptions& options, SplitWriter& main_split,
                                  SplitWriter* holdout_split, double holdout_fraction, uint64_t seed);

}  // namespace data_prep
