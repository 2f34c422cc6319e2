// The hellaswag recipe: HellaSwag's validation jsonl (downloaded resumably, or from
// --source-dir) tokenized into ${DATA_DIR}/hellaswag/hellaswag_val.bin, the items file the
// evaluator reads (host/hellaswag.h).
#pragma once

#include <string>
#include <vector>

#include "data_prep/src/recipes.h"
#include "host/hellaswag.h"
#include "host/tokenizer.h"

namespace data_prep {

// The jsonl's items, tokenized as llm.c's dev/data/hellaswag.py does (context "ctx"; each of the
// 4 "endings" with a space in front). Throws naming the file and line of a malformed item.
std::vector<hellaswag::Item> parse_hellaswag_jsonl(const std::string& path, const Gpt2Tokenizer& tokenizer);

// Runs the recipe; skips the work when the items file exists (unless options.force).
PrepareSummary prepare_hellaswag(const PrepareOptions& options);

}  // namespace data_prep
