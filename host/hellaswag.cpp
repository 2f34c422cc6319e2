#include "host/hellaswag.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <utility>

#include "host/checkpoint.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "HellaSwag items files are little-endian int32");

namespace hellaswag {
namespace {

constexpr int kHeaderInts = 8;
constexpr int kItemFixedInts = 3 + kEndings;  // index, label, context length, ending lengths
const char* const kRebuild = "; rebuild it with ./data_prep/prepare hellaswag --force";

int64_t item_tokens(const Item& item) {
    int64_t tokens = static_cast<int64_t>(item.context.size());
    for (const std::vector<int32_t>& ending : item.endings) tokens += static_cast<int64_t>(ending.size());
    return tokens;
}

}  // namespace

int longest_row(const std::vector<Item>& items) {
    size_t longest = 0;
    for (const Item& item : items)
        for (const std::vector<int32_t>& ending : item.endings) longest = std::max(longest, item.context.size() + ending.size());
    return static_cast<int>(longest);
}

void write_items(const std::string& path, const std::vector<Item>& items, int32_t vocab_size) {
    int64_t total = 0;
    std::vector<int32_t> body;
    for (const Item& item : items) {
        const bool empty = item.context.empty() || std::any_of(item.endings.begin(), item.endings.end(),
                                                               [](const std::vector<int32_t>& e) { return e.empty(); });
        if (empty || item.label < 0 || item.label >= kEndings)
            throw std::invalid_argument("cannot write " + path + ": item " + std::to_string(item.index) +
                                        " has an empty context or ending, or label " + std::to_string(item.label));
        body.insert(body.end(), {item.index, item.label, static_cast<int32_t>(item.context.size())});
        for (const std::vector<int32_t>& ending : item.endings) body.push_back(static_cast<int32_t>(ending.size()));
        body.insert(body.end(), item.context.begin(), item.context.end());
        for (const std::vector<int32_t>& ending : item.endings) body.insert(body.end(), ending.begin(), ending.end());
        total += item_tokens(item);
    }
    const int32_t header[kHeaderInts] = {kMagic, kVersion, static_cast<int32_t>(items.size()), kEndings,
                                         static_cast<int32_t>(total), longest_row(items), vocab_size, 0};
    AtomicFileWriter file(path);
    file.write(header, sizeof(header));
    file.write(body.data(), body.size() * sizeof(int32_t));
    file.finish();
}

std::vector<Item> read_items(const std::string& path) {
    std::FILE* file = std::fopen(path.c_str(), "rb");
    if (!file)
        throw std::runtime_error("cannot open the HellaSwag items " + path + ": " + std::strerror(errno) +
                                 " (./data_prep/prepare hellaswag writes it)");
    // Read as bytes: fread of whole int32 values would drop a trailing partial one unseen.
    std::vector<char> bytes;
    char buffer[16384];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) bytes.insert(bytes.end(), buffer, buffer + n);
    const bool partial_int = bytes.size() % sizeof(int32_t) != 0 || std::ferror(file);
    std::fclose(file);
    std::vector<int32_t> ints(bytes.size() / sizeof(int32_t));
    if (!ints.empty()) std::memcpy(ints.data(), bytes.data(), ints.size() * sizeof(int32_t));
    auto fail = [&](const std::string& what) { throw std::runtime_error(path + ": " + what + kRebuild); };
    if (ints.size() < kHeaderInts || ints[0] != kMagic)
        fail("not a HellaSwag items file (magic " + std::to_string(kMagic) + ")");
    if (ints[1] != kVersion) fail("version " + std::to_string(ints[1]) + ", expected " + std::to_string(kVersion));
    if (ints[3] != kEndings) fail(std::to_string(ints[3]) + " endings per item, expected 4");
    if (partial_int) fail("the file size is not a whole number of int32 values");
    const int32_t count = ints[2], vocab = ints[6];
    std::vector<Item> items;
    size_t at = kHeaderInts;
    int64_t total = 0;
    for (int32_t i = 0; i < count; i++) {
        if (at + kItemFixedInts > ints.size()) fail("truncated at item " + std::to_string(i));
        Item item;
        item.index = ints[at];
        item.label = ints[at + 1];
        const int32_t* lengths = &ints[at + 2];
        at += kItemFixedInts;
        if (item.label < 0 || item.label >= kEndings) fail("item " + std::to_string(i) + " has label " + std::to_string(item.label));
        auto take = [&](int32_t length, std::vector<int32_t>& out) {
            if (length <= 0 || static_cast<size_t>(length) > ints.size() - at) fail("item " + std::to_string(i) + " is truncated or has an empty part");
            out.assign(ints.begin() + static_cast<int64_t>(at), ints.begin() + static_cast<int64_t>(at) + length);
            at += static_cast<size_t>(length);
            for (int32_t token : out)
                if (token < 0 || token >= vocab) fail("item " + std::to_string(i) + " has token " + std::to_string(token) + " outside the vocabulary");
        };
        take(lengths[0], item.context);
        for (int e = 0; e < kEndings; e++) take(lengths[1 + e], item.endings[e]);
        total += item_tokens(item);
        items.push_back(std::move(item));
    }
    if (at != ints.size()) fail(std::to_string(ints.size() - at) + " int32 values after the last item");
    if (total != ints[4] || longest_row(items) != ints[5]) fail("the header's token counts disagree with the items");
    return items;
}

Choice choose_ending(const std::array<std::vector<float>, kEndings>& ending_token_losses) {
    Choice choice;
    double best_sum = 0.0, best_mean = 0.0;
    for (int e = 0; e < kEndings; e++) {
        const std::vector<float>& losses = ending_token_losses[e];
        if (losses.empty()) throw std::invalid_argument("ending " + std::to_string(e) + " has no token losses");
        double sum = 0.0;
        for (float loss : losses) sum += loss;
        const double mean = sum / static_cast<double>(losses.size());
        if (e == 0 || sum < best_sum) {
            best_sum = sum;
            choice.by_sum = e;
        }
        if (e == 0 || mean < best_mean) {
            best_mean = mean;
            choice.by_mean = e;
        }
    }
    return choice;
}

void Tally::add(int label, const Choice& choice) {
    count_++;
    right_by_sum_ += choice.by_sum == label;
    right_by_mean_ += choice.by_mean == label;
}

double Tally::acc() const { return count_ ? static_cast<double>(right_by_sum_) / count_ : 0.0; }
double Tally::acc_norm() const { return count_ ? static_cast<double>(right_by_mean_) / count_ : 0.0; }

Evaluation::Evaluation(std::vector<Item> items) : items_(std::move(items)), seq_(seq_of(items_)) {}

void Evaluation::fill(int64_t first, int count, int32_t* inputs, int32_t* targets) const {
    if (first < 0 || count < 0 || first + count > rows())
        throw std::out_of_range("HellaSwag rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                                ") of " + std::to_string(rows()));
    for (int r = 0; r < count; r++) {
        const Item& item = items_[static_cast<size_t>((first + r) / kEndings)];
        const std::vector<int32_t>& ending = item.endings[static_cast<size_t>((first + r) % kEndings)];
        int32_t* in = inputs + static_cast<size_t>(r) * seq_;
        int32_t* target = targets + static_cast<size_t>(r) * seq_;
        std::fill(in, in + seq_, kPaddingToken);
        std::fill(target, target + seq_, kIgnoreTarget);
        const size_t context = item.context.size();
        std::copy(item.context.begin(), item.context.end(), in);
        std::copy(ending.begin(), ending.end() - 1, in + context);  // the last token is only a target
        std::copy(ending.begin(), ending.end(), target + context - 1);
    }
}

void Evaluation::add_losses(int64_t first, int count, const float* losses) {
    if (first != next_row_ || count < 0 || first + count > rows())
        throw std::logic_error("HellaSwag losses for rows [" + std::to_string(first) + ", " +
                               std::to_string(first + count) + ") when row " + std::to_string(next_row_) + " of " +
                               std::to_string(rows()) + " was next");
    for (int r = 0; r < count; r++) {
        const int64_t row = first + r;
        const Item& item = items_[static_cast<size_t>(row / kEndings)];
        const int e = static_cast<int>(row % kEndings);
        const float* row_losses = losses + static_cast<size_t>(r) * seq_ + item.context.size() - 1;
        pending_[e].assign(row_losses, row_losses + item.endings[e].size());
        if (e == kEndings - 1) tally_.add(item.label, choose_ending(pending_));
    }
    next_row_ = first + count;
}

}  // namespace hellaswag
