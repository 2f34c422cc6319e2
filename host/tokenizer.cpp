// GPT-2 byte-level BPE, encoding and decoding (see tokenizer.h for the contract): byte-pair
// merging of one piece, the per-thread cache of merged pieces, encode, encode_parallel, decode.
//
// Speed comes from three things: a hand-written pretokenizer that scans bytes once (ASCII by a
// 128-entry table, the rest by the two-stage Unicode table; tokenizer_pretokenizer.h); flat
// open-addressing hash tables (bytes -> token id, (left id, right id) -> merged id;
// tokenizer_tables.h) so that a piece that is a whole token costs one hash and one probe; and a
// per-thread cache from piece bytes to ids for the pieces that need merging, so each distinct
// word is merged once per thread. Byte-pair merging itself is the quadratic scan on short
// pieces (fast for the usual < 20 bytes) and a heap over a linked list of parts on long ones, so
// a 20k-letter run costs O(n log n), not O(n^2). Loading the vocabulary: tokenizer_vocab.cpp.

#include "host/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <functional>
#include <queue>
#include <stdexcept>
#include <thread>

#include "host/tokenizer_pretokenizer.h"
#include "host/tokenizer_tables.h"

using namespace tokenizer_internal;

namespace {

// Per-thread cache: piece bytes -> the ids BPE gave them. Owned by one vocabulary at a time
// (a thread that alternates between two tokenizers just refills it). When full it is cleared
// rather than evicting entry by entry: frequent pieces come back within a few thousand pieces.
// 128k entries (about 5 MB) hold every distinct multi-token piece of the 9 MB nlp-corpus.
// Entries are records back to back in one arena, [length][id count][bytes][ids as uint16 LE],
// and a slot holds a hash tag and a record's offset: a lookup touches one slot and one record.
class PieceCache {
  public:
    static constexpr size_t kMaxPieceBytes = 64;  // longer pieces are rare; not worth the space

    bool owned_by(uint64_t owner) const { return owner_ == owner; }
    void reset(uint64_t owner) {
        owner_ = owner;
        slots_.assign(kSlots, Slot{});
        arena_.clear();
        entries_ = 0;
    }
    // Appends the cached ids of the piece to `out`; false if not cached.
    bool find(const PieceKey& key, std::vector<int>& out) const {
        const uint32_t tag = uint32_t(key.hash >> 32);
        for (size_t i = key.hash & (kSlots - 1);; i = (i + 1) & (kSlots - 1)) {
            const Slot slot = slots_[i];
            if (slot.record == kEmpty) return false;
            const uint8_t* r = arena_.data() + slot.record;
            if (slot.tag == tag && r[0] == key.length && bytes_equal(r + 2, key.bytes, key.length)) {
                const uint8_t* ids = r + 2 + r[0];
                for (size_t k = 0; k < r[1]; ++k) out.push_back(ids[2 * k] | (ids[2 * k + 1] << 8));
                return true;
            }
        }
    }
    void insert(const PieceKey& key, const int* ids, size_t num_ids) {
        if (entries_ >= kSlots / 2) reset(owner_);
        size_t i = key.hash & (kSlots - 1);
        while (slots_[i].record != kEmpty) i = (i + 1) & (kSlots - 1);
        slots_[i] = {uint32_t(key.hash >> 32), uint32_t(arena_.size())};
        arena_.push_back(uint8_t(key.length));
        arena_.push_back(uint8_t(num_ids));
        arena_.insert(arena_.end(), key.bytes, key.bytes + key.length);
        for (size_t k = 0; k < num_ids; ++k) {
            arena_.push_back(uint8_t(ids[k]));
            arena_.push_back(uint8_t(ids[k] >> 8));
        }
        ++entries_;
    }

  private:
    static constexpr size_t kSlots = size_t(1) << 18;
    static constexpr uint32_t kEmpty = UINT32_MAX;
    static_assert(kMaxPieceBytes <= 255, "a record's length and id count are bytes");
    struct Slot {
        uint32_t tag = 0;  // high half of the hash, checked before the bytes
        uint32_t record = kEmpty;
    };
    uint64_t owner_ = 0;
    std::vector<Slot> slots_;
    std::vector<uint8_t> arena_;
    size_t entries_ = 0;
};

PieceCache& thread_piece_cache(uint64_t owner) {
    thread_local PieceCache cache;
    if (!cache.owned_by(owner)) cache.reset(owner);
    return cache;
}

// ---------------------------------------------------------------------------------------------
// Byte-pair merging of one piece: repeatedly merge the adjacent pair whose concatenation has the
// lowest rank (= id), the leftmost one on ties, until no adjacent pair forms a token.

// Above this, the heap version: on random 12-letter words it is slower at 128 bytes and faster
// at 256 (quadratic scan 25 us vs 29 us, 72 us vs 55 us per piece).
constexpr size_t kMaxShortPiece = 192;

void merge_short_piece(const VocabTables& vocab, const uint8_t* p, size_t n, std::vector<int>& out) {
    uint32_t ids[kMaxShortPiece];        // (count,) current parts
    uint32_t pair_ranks[kMaxShortPiece]; // (count - 1,) merged id of parts i and i + 1, or kNoMerge
    for (size_t i = 0; i < n; ++i) ids[i] = vocab.byte_token[p[i]];
    for (size_t i = 0; i + 1 < n; ++i) pair_ranks[i] = vocab.pair_table.find(ids[i], ids[i + 1]);
    size_t count = n;
    while (count > 1) {
        uint32_t best = kNoMerge;
        size_t best_i = 0;
        for (size_t i = 0; i + 1 < count; ++i) {
            if (pair_ranks[i] < best) {
                best = pair_ranks[i];
                best_i = i;
            }
        }
        if (best == kNoMerge) break;
        ids[best_i] = best;
        for (size_t i = best_i + 1; i + 1 < count; ++i) ids[i] = ids[i + 1];
        for (size_t i = best_i + 1; i + 2 < count; ++i) pair_ranks[i] = pair_ranks[i + 1];
        --count;
        if (best_i > 0) pair_ranks[best_i - 1] = vocab.pair_table.find(ids[best_i - 1], ids[best_i]);
        if (best_i + 1 < count) pair_ranks[best_i] = vocab.pair_table.find(ids[best_i], ids[best_i + 1]);
    }
    out.insert(out.end(), ids, ids + count);
}

// The same merges in O(n log n): parts form a linked list indexed by their first byte; a
// min-heap holds (rank, left part) candidates, so the smallest rank pops first and, among equal
// ranks, the smallest index, i.e. the leftmost pair. Entries made stale by a neighbour's merge
// are recognised on pop (the pair no longer forms that rank) and skipped.
void merge_long_piece(const VocabTables& vocab, const uint8_t* p, size_t n, std::vector<int>& out) {
    constexpr uint32_t kRemoved = UINT32_MAX;
    std::vector<uint32_t> ids(n);          // (n,) id of the part starting at byte i, or kRemoved
    std::vector<uint32_t> next(n), prev(n);  // (n,) neighbours in the list; n / UINT32_MAX at the ends
    std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<uint64_t>> heap;  // rank << 32 | index
    const auto push_pair = [&](uint32_t left) {
        const uint32_t right = next[left];
        if (right == n) return;
        const uint32_t rank = vocab.pair_table.find(ids[left], ids[right]);
        if (rank != kNoMerge) heap.push((uint64_t(rank) << 32) | left);
    };
    for (size_t i = 0; i < n; ++i) {
        ids[i] = vocab.byte_token[p[i]];
        next[i] = uint32_t(i + 1);
        prev[i] = i == 0 ? UINT32_MAX : uint32_t(i - 1);
    }
    for (size_t i = 0; i + 1 < n; ++i) push_pair(uint32_t(i));
    while (!heap.empty()) {
        const uint32_t rank = uint32_t(heap.top() >> 32);
        const uint32_t left = uint32_t(heap.top());
        heap.pop();
        if (ids[left] == kRemoved) continue;
        const uint32_t right = next[left];
        if (right == n || vocab.pair_table.find(ids[left], ids[right]) != rank) continue;
        ids[left] = rank;
        ids[right] = kRemoved;
        next[left] = next[right];
        if (next[right] != n) prev[next[right]] = left;
        if (prev[left] != UINT32_MAX) push_pair(prev[left]);
        push_pair(left);
    }
    for (uint32_t i = 0; i != n; i = next[i]) out.push_back(int(ids[i]));
}

// Appends the ids of piece p[0, n); bytes up to `readable_end` may be read past it.
void encode_piece(const VocabTables& vocab, PieceCache& cache, const uint8_t* p, size_t n,
                  const uint8_t* readable_end, std::vector<int>& out) {
    if (n == 1) {
        out.push_back(vocab.byte_token[p[0]]);
        return;
    }
    // As tiktoken: a piece that is a whole token is that token, even where merging its bytes
    // would take another path.
    const PieceKey key = make_piece_key(p, n, readable_end);
    const int id = vocab.piece_table.find(key);
    if (id >= 0) {
        out.push_back(id);
        return;
    }
    const bool cacheable = n <= PieceCache::kMaxPieceBytes;
    if (cacheable && cache.find(key, out)) return;
    const size_t first = out.size();
    if (n <= kMaxShortPiece) merge_short_piece(vocab, p, n, out);
    else merge_long_piece(vocab, p, n, out);
    if (cacheable) cache.insert(key, out.data() + first, out.size() - first);
}

void require_token_id(int id) {
    if (id < 0 || id >= Gpt2Tokenizer::kVocabSize)
        throw std::out_of_range("GPT-2 token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                std::to_string(Gpt2Tokenizer::kVocabSize) + ")");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Encoding

void Gpt2Tokenizer::encode_valid(std::string_view text, std::vector<int>& out, Special special) const {
    const Vocab& vocab = *vocab_;
    PieceCache& cache = thread_piece_cache(vocab.instance_id);
    const auto encode_ordinary = [&](std::string_view segment) {
        const uint8_t* s = reinterpret_cast<const uint8_t*>(segment.data());
        const uint8_t* segment_end = s + segment.size();
        for_each_pretoken(segment, [&](size_t begin, size_t end) {
            encode_piece(vocab, cache, s + begin, end - begin, segment_end, out);
        });
    };
    if (special == Special::kOrdinary) {
        encode_ordinary(text);
        return;
    }
    // As tiktoken's encode with the special token allowed: the text between occurrences is
    // encoded as separate texts.
    size_t begin = 0;
    for (size_t found; (found = text.find(kEndOfTextString, begin)) != std::string_view::npos;
         begin = found + kEndOfTextString.size()) {
        encode_ordinary(text.substr(begin, found - begin));
        out.push_back(kEndOfText);
    }
    encode_ordinary(text.substr(begin));
}

void Gpt2Tokenizer::encode_append(std::string_view text, std::vector<int>& out, Special special) const {
    if (is_valid_utf8(text)) {
        encode_valid(text, out, special);
    } else {
        encode_valid(replace_invalid_utf8(text), out, special);
    }
}

void Gpt2Tokenizer::encode_append(std::string_view text, std::vector<int>& out) const {
    encode_append(text, out, Special::kOrdinary);
}

std::vector<int> Gpt2Tokenizer::encode(std::string_view text) const {
    std::vector<int> ids;
    encode_append(text, ids, Special::kOrdinary);
    return ids;
}

std::vector<int> Gpt2Tokenizer::encode_parallel(std::string_view text, int num_threads, Special special,
                                                 size_t chunk_bytes) const {
    if (num_threads < 1) throw std::invalid_argument("Gpt2Tokenizer::encode_parallel: num_threads must be >= 1");
    if (chunk_bytes < 1) throw std::invalid_argument("Gpt2Tokenizer::encode_parallel: chunk_bytes must be >= 1");
    std::string replaced;
    if (!is_valid_utf8(text)) {
        replaced = replace_invalid_utf8(text);
        text = replaced;
    }
    // Chunks of valid text, each of which is encoded alone; a chunk ends at a restart point, or
    // where an allowed <|endoftext|> begins (and that chunk's ids are followed by kEndOfText).
    struct Chunk {
        std::string_view text;
        bool end_of_text_after;
    };
    std::vector<Chunk> chunks;
    const auto add_segment = [&](std::string_view segment, bool end_of_text_after) {
        size_t begin = 0;
        while (segment.size() - begin > chunk_bytes) {
            const size_t end = next_restart_point(segment, begin + chunk_bytes);
            if (end == segment.size()) break;
            chunks.push_back({segment.substr(begin, end - begin), false});
            begin = end;
        }
        chunks.push_back({segment.substr(begin), end_of_text_after});
    };
    size_t begin = 0;
    if (special == Special::kEndOfText) {
        for (size_t found; (found = text.find(kEndOfTextString, begin)) != std::string_view::npos;
             begin = found + kEndOfTextString.size()) {
            add_segment(text.substr(begin, found - begin), true);
        }
    }
    add_segment(text.substr(begin), false);

    std::vector<std::vector<int>> chunk_ids(chunks.size());
    std::atomic<size_t> next_chunk{0};
    std::exception_ptr failure;
    std::atomic<bool> failed{false};
    const auto work = [&] {
        try {
            for (size_t i; (i = next_chunk++) < chunks.size();) {
                chunk_ids[i].reserve(chunks[i].text.size() / 4 + 16);  // GPT-2 averages ~4.4 bytes per token
                encode_valid(chunks[i].text, chunk_ids[i], Special::kOrdinary);
                if (chunks[i].end_of_text_after) chunk_ids[i].push_back(kEndOfText);
            }
        } catch (...) {  // only std::bad_alloc can get here; hand it to the caller
            if (!failed.exchange(true)) failure = std::current_exception();
        }
    };
    const size_t num_workers = std::min(chunks.size(), size_t(num_threads));
    std::vector<std::thread> workers;
    for (size_t t = 1; t < num_workers; ++t) workers.emplace_back(work);
    work();
    for (std::thread& worker : workers) worker.join();
    if (failure) std::rethrow_exception(failure);

    size_t total = 0;
    for (const auto& ids : chunk_ids) total += ids.size();
    std::vector<int> ids;
    ids.reserve(total);
    for (const auto& part : chunk_ids) ids.insert(ids.end(), part.begin(), part.end());
    return ids;
}

// ---------------------------------------------------------------------------------------------
// Decoding

std::string Gpt2Tokenizer::decode_token(int id) const {
    require_token_id(id);
    return std::string(vocab_->token(id));
}

std::string Gpt2Tokenizer::decode(const std::vector<int>& ids) const {
    std::string text;
    for (const int id : ids) {
        require_token_id(id);
        text += vocab_->token(id);
    }
    return text;
}

std::string Gpt2Tokenizer::decode_text(const std::vector<int>& ids) const {
    return replace_invalid_utf8(decode(ids));
}
