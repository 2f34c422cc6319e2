// Dataset recipes: where a dataset's text comes from, how it splits, and where its shards go.
//
//   tiny         the npm package nlp-corpus (100 files of sentences; `make setup` installs it):
//                each file is one document; 2% of the documents (2 of 100) form the val split.
//                -> ${DATA_DIR}/tiny/tiny_{train,val}_NNNNNN.bin
//   openwebtext  openwebtext.tar.xz (a tar of .xz tars of .txt files, one document each), in the
//                HuggingFace openwebtext builder's document order and with its cleanup; the seed's
//                0.05% holdout (seed 2357) is the val split, which is also the seed's test split.
//                -> ${DATA_DIR}/openwebtext/
//   pile         The Pile's train/NN.jsonl.zst, val.jsonl.zst and test.jsonl.zst (text field) as
//                the train, val and test splits. -> ${DATA_DIR}/the_pile/pile_*.bin
//   text         any inputs (--input: files, directories, globs; .txt, .jsonl, .json, compressed,
//                tar archives) with a seeded val holdout. -> ${DATA_DIR}/<name>/<name>_*.bin
//
// Holdouts are Hugging Face datasets' train_test_split over the documents in input order
// (data_prep/src/holdout.h), as the seed's: a first pass counts the documents, the second
// tokenizes, writing train as it goes and the held-out documents at the end, in their order.
//
// A finished dataset directory holds its shards and manifest.json (shards, token and document
// counts, holdouts, the build settings, sources), which is written last: its presence means
// "complete". Shards are written in <dir>/.staging/ and moved into place only when every split is
// done, so the trainer's glob never sees part of a dataset. A rerun of a complete dataset does
// nothing (unless forced) while its manifest is of this version and its recorded settings and
// (text recipe) inputs — paths, sizes, modification times — are this run's; otherwise it rebuilds
// the dataset, saying why. A rerun after an interruption removes what the interrupted run left
// and starts over. Downloads live in <dir>/downloads/ and survive both (they resume where they
// stopped).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data_prep/src/download.h"
#include "data_prep/src/inputs.h"

namespace data_prep {

constexpr uint64_t kDefaultSeed = 2357;  // the seed's OpenWebText holdout seed (val_split_seed)

struct PrepareOptions {
    std::string recipe;             // tiny | openwebtext | pile | text
    std::string data_dir = "data";  // parent of the dataset directories
    std::string vocab_dir;          // empty: Gpt2Tokenizer::default_vocab_dir()
    int threads = 1;
    int64_t shard_tokens = 0;  // 0: the recipe's default
    double val_fraction = -1;  // < 0: the recipe's default (tiny, openwebtext, text)
    uint64_t seed = kDefaultSeed;
    bool force = false;  // rebuild a complete dataset
    // text recipe
    std::vector<std::string> inputs;
    std::string name;
    ReaderOptions reader;
    bool skip_invalid_documents = false;
    // Sources. source_dir empty: <dir>/downloads for openwebtext and pile, the installed npm
    // package for tiny. url empty: the recipe's default (or $OPENWEBTEXT_URL / $PILE_URL).
    std::string source_dir;
    std::string url;
    std::string checksums_file;  // sha256sum-format list for downloads and provided files
    int pile_train_files = 30;   // the first N of The Pile's train/00..29.jsonl.zst
    DownloadOptions download;
};

struct SplitSummary {
    std::string split;
    int64_t documents = 0, tokens = 0, shards = 0;
};

struct PrepareSummary {
    std::string output_dir;
    bool already_complete = false;  // nothing was done
    std::vector<SplitSummary> splits;
};

// Names and defaults, for --help.
const std::vector<std::string>& recipe_names();
int64_t default_shard_tokens(const std::string& recipe);
double default_val_fraction(const std::string& recipe);  // 0 where a recipe has fixed splits
std::string default_url(const std::string& recipe);      // empty where a recipe downloads nothing

// Runs a recipe (see the top of this file); progress on stderr, a summary on stdout. Throws
// std::runtime_error with a message that names the file at fault and what to do.
PrepareSummary prepare_dataset(const PrepareOptions& options);

}  // namespace data_prep
