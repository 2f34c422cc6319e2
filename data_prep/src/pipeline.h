// The tokenization pipeline: raw documents from a DocumentReader, tokenized by many threads,
// written in input order to the shards of one or two splits.
//
//   reader thread --(blocks of documents)--> worker threads (text extraction + BPE)
//                 --> main thread: train or held out, <|endoftext|> after each document, shards
//
// Documents travel in blocks of up to kBlockDocuments documents (fewer when their text passes
// kBlockBytes). Block boundaries depend only on the input, never on the number of threads, and
// so does everything written: the output is byte-identical for any --threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data_prep/src/holdout.h"
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
    const std::string& directory() const { return directory_; }
    std::string name() const { return dataset_ + "_" + split_; }

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

struct PipelineOptions {
    int threads = 1;
    ReaderOptions reader;
    bool skip_invalid_documents = false;  // count and skip (InvalidDocument) instead of failing
    std::string progress_label = "tokenize";
};

struct PipelineResult {
    int64_t documents = 0;          // every document read, empty and skipped ones included
    int64_t empty_documents = 0;    // documents whose text was empty: skipped
    int64_t invalid_documents = 0;  // skipped under skip_invalid_documents
    std::vector<SkippedInput> skipped_inputs;  // binary files and archive members (inputs.h)
};

// Documents in `files` as the pipeline numbers them (empty and invalid ones included), read by
// `threads` threads, one file each at a time: the count a Holdout is drawn over.
int64_t count_documents(const std::vector<InputFile>& files, const ReaderOptions& reader, int threads);

// Reads `files`, tokenizes every document and appends it to `train`, except the documents
// `holdout` holds out (by their number in the input, from 0), which go to `validation` in the
// holdout's order once the input is read; they wait in a file beside validation's shards
// meanwhile. `holdout` and `validation` are both null or both given; the input must hold exactly
// holdout->documents() documents. Empty documents (and invalid ones when skipped) are numbered but
// written nowhere, as the seed appends <|endoftext|> to non-empty texts only. Throws on any
// input, tokenizer or output error; the reader and the workers are stopped and joined before the
// exception leaves.
PipelineResult tokenize_to_splits(const std::vector<InputFile>& files, const Gpt2Tokenizer& tokenizer,
                                  const PipelineOptions& options, SplitWriter& train, const Holdout* holdout,
                                  SplitWriter* validation);

}  // namespace data_prep
