// HellaSwag in llm.c's completion style: the items file the evaluator reads, and the scoring.
//
// An item is a context and 4 endings (HellaSwag's validation jsonl: "ctx", "endings", "label"),
// tokenized as llm.c's dev/data/hellaswag.py does: the context's tokens, then for each ending
// the tokens of " " + ending. The model sees context + ending; the loss of ending token j is
// -log p(ending[j] | context, ending[0..j)). An ending's score is the sum of those losses
// ("acc": the item is right when the lowest sum is the label's ending) and their mean over the
// ending's tokens ("acc_norm": the lowest mean); ties go to the first ending, as torch.argmin's do.
// On the 10,042 validation items llm.c reports for GPT-2 124M acc 0.2859, acc_norm 0.2955.
//
// Items file `hellaswag_val.bin` (little-endian int32 throughout):
//   header [0] magic 20261130 [1] version 1 [2] item count [3] endings per item (4)
//          [4] tokens in all items [5] longest context + ending, in tokens [6] vocabulary (50257) [7] 0
//   per item: index (HellaSwag's "ind"), label (0..3), context length, 4 ending lengths,
//             then the context's tokens, then each ending's tokens in order.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace hellaswag {

constexpr int32_t kMagic = 20261130;
constexpr int32_t kVersion = 1;
constexpr int kEndings = 4;

struct Item {
    int32_t index = 0;  // HellaSwag's "ind"
    int32_t label = 0;  // the right ending, 0..3
    std::vector<int32_t> context;
    std::array<std::vector<int32_t>, kEndings> endings;
};

// Throws std::invalid_argument for an item with an empty context or ending, or a label outside
// 0..3; std::runtime_error naming the file on I/O errors. Written via "<path>.tmp" and a rename.
void write_items(const std::string& path, const std::vector<Item>& items, int32_t vocab_size);

// Validates everything (magic, version, counts, lengths, labels, token ids < the header's
// vocabulary, the exact file size); errors name the file and say how to rebuild it.
std::vector<Item> read_items(const std::string& path);

// The longest context + ending of any item: the sequence length the evaluator needs.
int longest_row(const std::vector<Item>& items);

// Which ending the model prefers. ending_token_losses[e]: the per-token losses of ending e
// (as many as its tokens, at least one).
struct Choice {
    int by_sum = 0;   // acc
    int by_mean = 0;  // acc_norm
};
Choice choose_ending(const std::array<std::vector<float>, kEndings>& ending_token_losses);

// Running accuracy over items.
class Tally {
  public:
    void add(int label, const Choice& choice);
    int64_t count() const { return count_; }
    double acc() const;       // 0 when no item was added
    double acc_norm() const;
    int64_t right_by_sum() const { return right_by_sum_; }
    int64_t right_by_mean() const { return right_by_mean_; }

  private:
    int64_t count_ = 0, right_by_sum_ = 0, right_by_mean_ = 0;
};

// Accuracies over some items (all ranks' together, in the trainer).
struct Result {
    double acc = 0.0;
    double acc_norm = 0.0;
    int64_t items = 0;
};

// The model's side of an evaluation: every item as 4 rows (context + ending e), item-major,
// fed to the forward pass a batch of consecutive rows at a time; the per-token losses that come
// back score each item once its 4 rows are in (llm.c evaluates one item's 4 rows per batch; any
// row count per batch gives the same choices).
class Evaluation {
  public:
    // The cross-entropy's ignore index: no loss at padding and context positions.
    static constexpr int32_t kIgnoreTarget = -100;
    static constexpr int32_t kPaddingToken = 50256;  // <|endoftext|>; causal attention never looks ahead at it

    explicit Evaluation(std::vector<Item> items);
    int64_t rows() const { return static_cast<int64_t>(items_.size()) * kEndings; }
    // Positions per row: every row's inputs (all its tokens but the last) fit.
    int seq() const { return seq_; }
    static int seq_of(const std::vector<Item>& items) { return std::max(1, longest_row(items) - 1); }
    const std::vector<Item>& items() const { return items_; }

    // inputs and targets (count x seq()) of rows [first, first + count): a row's tokens, then
    // padding; the target of each position that predicts an ending token is that token, of every
    // other position kIgnoreTarget.
    void fill(int64_t first, int count, int32_t* inputs, int32_t* targets) const;
    // losses (count x seq()): the forward pass's per-token losses of the rows fill() gave; rows
    // must come in order, each once. Scores every item whose last row is among them.
    void add_losses(int64_t first, int count, const float* losses);
    const Tally& tally() const { return tally_; }

  private:
    std::vector<Item> items_;
    int seq_ = 0;
    int64_t next_row_ = 0;
    std::array<std::vector<float>, kEndings> pending_;  // the current item's ending losses so far
    Tally tally_;
};

}  // namespace hellaswag
