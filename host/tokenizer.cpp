// GPT-2 byte-level BPE (see tokenizer.h for the contract).
//
// Speed comes from three things: a hand-written pretokenizer that scans bytes once (ASCII by a
// 128-entry table, the rest by the two-stage Unicode table); flat open-addressing hash tables
// (bytes -> token id, (left id, right id) -> merged id) so that a piece that is a whole token
// costs one hash and one probe; and a per-thread cache from piece bytes to ids for the pieces
// that need merging, so each distinct word is merged once per thread. Byte-pair merging itself
// is the quadratic scan on short pieces (fast for the usual < 20 bytes) and a heap over a linked
// list of parts on long ones, so a 20k-letter run costs O(n log n), not O(n^2).

#include "host/tokenizer.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <queue>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "host/unicode_classes.h"

using unicode_classes::CharClass;
using unicode_classes::kLetter;
using unicode_classes::kNumber;
using unicode_classes::kOther;
using unicode_classes::kWhitespace;

namespace {

constexpr uint32_t kNoMerge = UINT32_MAX;  // "rank" of a pair whose concatenation is no token
constexpr char kReplacementUtf8[] = "\xEF\xBF\xBD";

// ---------------------------------------------------------------------------------------------
// UTF-8

// The well-formed sequence starting at s[i] (valid = true, length = its bytes), or the maximal
// ill-formed subpart there (valid = false, length = the lead byte plus the continuation bytes
// that were still acceptable), per the byte ranges of Unicode Table 3-7.
struct Utf8Step {
    uint32_t length;
    bool valid;
};
inline Utf8Step utf8_step(const uint8_t* s, size_t i, size_t n) {
    const uint8_t lead = s[i];
    if (lead < 0x80) return {1, true};
    uint32_t continuation_bytes;
    uint8_t lo = 0x80, hi = 0xBF;  // range of the first continuation byte
    if (lead >= 0xC2 && lead <= 0xDF) {
        continuation_bytes = 1;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        continuation_bytes = 2;
        if (lead == 0xE0) lo = 0xA0;  // no overlongs
        if (lead == 0xED) hi = 0x9F;  // no surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        continuation_bytes = 3;
        if (lead == 0xF0) lo = 0x90;  // no overlongs
        if (lead == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    } else {
        return {1, false};  // a stray continuation byte, C0, C1 or F5..FF
    }
    for (uint32_t k = 1; k <= continuation_bytes; ++k) {
        if (i + k >= n || s[i + k] < lo || s[i + k] > hi) return {k, false};
        lo = 0x80;
        hi = 0xBF;
    }
    return {continuation_bytes + 1, true};
}

// Offset of the first byte of the first ill-formed subpart, or n.
size_t first_invalid_utf8(const uint8_t* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        // Eight ASCII bytes at a time: the common case, and the reason this pass is nearly free.
        if (i + 8 <= n) {
            uint64_t word;
            std::memcpy(&word, s + i, 8);
            if ((word & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        const Utf8Step step = utf8_step(s, i, n);
        if (!step.valid) return i;
        i += step.length;
    }
    return n;
}

// Class and length of the character at s[i] of well-formed UTF-8.
struct Utf8Char {
    CharClass cls;
    uint32_t length;
};
constexpr std::array<uint8_t, 128> make_ascii_classes() {
    std::array<uint8_t, 128> classes{};
    for (int c = 0; c < 128; ++c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) classes[c] = kLetter;
        else if (c >= '0' && c <= '9') classes[c] = kNumber;
        else if (c == ' ' || (c >= '\t' && c <= '\r')) classes[c] = kWhitespace;
        else classes[c] = kOther;
    }
    return classes;
}
constexpr std::array<uint8_t, 128> kAsciiClasses = make_ascii_classes();

inline Utf8Char char_at(const uint8_t* s, size_t i) {
    const uint8_t lead = s[i];
    if (lead < 0x80) return {CharClass(kAsciiClasses[lead]), 1};
    char32_t cp;
    uint32_t length;
    if (lead < 0xE0) {
        cp = (char32_t(lead & 0x1F) << 6) | (s[i + 1] & 0x3F);
        length = 2;
    } else if (lead < 0xF0) {
        cp = (char32_t(lead & 0x0F) << 12) | (char32_t(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
        length = 3;
    } else {
        cp = (char32_t(lead & 0x07) << 18) | (char32_t(s[i + 1] & 0x3F) << 12) | (char32_t(s[i + 2] & 0x3F) << 6) |
             (s[i + 3] & 0x3F);
        length = 4;
    }
    return {unicode_classes::char_class(cp), length};
}

// ---------------------------------------------------------------------------------------------
// Pretokenizer: calls emit(begin, end) for each match of
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// in order, on well-formed UTF-8. The regex tries alternatives in order at each start, so:
//  - a contraction wins wherever an apostrophe starts one (lower case only, as in the pattern);
//  - otherwise a letter, number or other character starts a run of its class, and one ASCII
//    space directly before such a character joins that run;
//  - a whitespace run that reaches the end of the text is one piece; one followed by a
//    non-space gives up its last character (\s+(?!\S) backtracks by one), which then is either
//    a space that joins the next run, or (any other whitespace) a piece of its own by \s+.

template <class Emit>
void for_each_pretoken(std::string_view text, Emit&& emit) {
    const uint8_t* s = reinterpret_cast<const uint8_t*>(text.data());
    const size_t n = text.size();
    size_t pos = 0;
    while (pos < n) {
        const size_t start = pos;
        if (s[pos] == '\'' && pos + 1 < n) {
            const uint8_t c1 = s[pos + 1];
            const uint8_t c2 = pos + 2 < n ? s[pos + 2] : 0;
            size_t length = 0;
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') length = 2;
            else if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) length = 3;
            if (length != 0) {
                emit(start, start + length);
                pos += length;
                continue;
            }
        }
        Utf8Char first = char_at(s, pos);
        size_t run_start = pos;
        if (s[pos] == ' ' && pos + 1 < n) {
            const Utf8Char next = char_at(s, pos + 1);
            if (next.cls != kWhitespace) {
                first = next;
                run_start = pos + 1;
            }
        }
        if (first.cls != kWhitespace) {
            pos = run_start + first.length;
            while (pos < n) {
                const Utf8Char c = char_at(s, pos);
                if (c.cls != first.cls) break;
                pos += c.length;
            }
            emit(start, pos);
            continue;
        }
        size_t end = pos, last_char = pos;
        while (end < n) {
            const Utf8Char c = char_at(s, end);
            if (c.cls != kWhitespace) break;
            last_char = end;
            end += c.length;
        }
        // A single whitespace character before a non-space is not a space here (that case
        // joined the next run above), so \s+ takes it alone.
        pos = (end == n || last_char == start) ? end : last_char;
        emit(start, pos);
    }
}

// ---------------------------------------------------------------------------------------------
// Hashing and tables

inline uint64_t load_u64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}
inline uint64_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
inline uint64_t fold_multiply(uint64_t a, uint64_t b) {
    const unsigned __int128 product = static_cast<unsigned __int128>(a) * b;
    return static_cast<uint64_t>(product) ^ static_cast<uint64_t>(product >> 64);
}
// A fast hash of short byte strings (every byte read once, overlapping loads, no reads past
// the end); two 64x64->128 multiplies for pieces of up to 16 bytes.
constexpr uint64_t kHashK0 = 0x9E3779B97F4A7C15ull, kHashK1 = 0xD6E8FEB86659FD93ull, kHashK2 = 0xA0761D6478BD642Full;
inline uint64_t hash_bytes(const uint8_t* p, size_t n) {
    constexpr uint64_t k0 = kHashK0, k1 = kHashK1, k2 = kHashK2;
    uint64_t a, b, state = k2 ^ n;
    if (n <= 16) {
        if (n >= 8) {
            a = load_u64(p);
            b = load_u64(p + n - 8);
        } else if (n >= 4) {
            a = load_u32(p);
            b = load_u32(p + n - 4);
        } else if (n > 0) {
            a = (uint64_t(p[0]) << 16) | (uint64_t(p[n / 2]) << 8) | p[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = 0;
        for (; i + 16 < n; i += 16) state = fold_multiply(load_u64(p + i) ^ k0, load_u64(p + i + 8) ^ state);
        a = load_u64(p + n - 16);
        b = load_u64(p + n - 8);
    }
    return fold_multiply(fold_multiply(a ^ k0, b ^ k1 ^ state), k2 ^ n);
}

// A piece as the hash tables see it: its bytes, its first 8 bytes zero-padded (which alone
// decide equality for pieces of up to 8 bytes, most of them) and its hash. Bytes up to
// `readable_end` may be read past the piece, which saves a variable-length copy.
struct PieceKey {
    const uint8_t* bytes;
    size_t length;
    uint64_t head;
    uint64_t hash;
};
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "PieceKey::head keeps the first bytes in the low bits");
inline PieceKey make_piece_key(const uint8_t* p, size_t n, const uint8_t* readable_end) {
    uint64_t head = 0;
    if (n >= 8) {
        head = load_u64(p);
    } else if (p + 8 <= readable_end) {
        head = load_u64(p) & ((uint64_t(1) << (8 * n)) - 1);
    } else {
        std::memcpy(&head, p, n);
    }
    const uint64_t hash = n <= 8 ? fold_multiply(head ^ kHashK0, (n * kHashK2) ^ kHashK1) : hash_bytes(p, n);
    return {p, n, head, hash};
}

size_t table_size_for(size_t entries) {  // power of two, load factor <= 1/2
    size_t size = 16;
    while (size < 2 * entries) size *= 2;
    return size;
}

// Equality of two short byte strings with the same overlapping loads as hash_bytes (libc
// memcmp's call and dispatch cost more than the compare for the typical 2..16 bytes).
inline bool bytes_equal(const uint8_t* a, const uint8_t* b, size_t n) {
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8)
            if (load_u64(a + i) != load_u64(b + i)) return false;
        return load_u64(a + n - 8) == load_u64(b + n - 8);
    }
    if (n >= 4) return load_u32(a) == load_u32(b) && load_u32(a + n - 4) == load_u32(b + n - 4);
    for (size_t i = 0; i < n; ++i)
        if (a[i] != b[i]) return false;
    return true;
}

// Token bytes -> token id. A slot holds the token's head, so a lookup of a piece of up to 8
// bytes touches one slot and nothing else (this lookup is most of the encoding time).
class PieceTable {
  public:
    static constexpr size_t kMaxTokenBytes = 255;  // Slot::length is a byte

    void build(const std::vector<std::string_view>& tokens) {  // token i has id i
        slots_.assign(table_size_for(tokens.size()), Slot{});
        mask_ = slots_.size() - 1;
        bytes_.clear();
        offsets_.clear();
        for (size_t id = 0; id < tokens.size(); ++id) {
            const uint8_t* p = reinterpret_cast<const uint8_t*>(tokens[id].data());
            const PieceKey key = make_piece_key(p, tokens[id].size(), p + tokens[id].size());
            size_t i = key.hash & mask_;
            while (slots_[i].length != 0) i = (i + 1) & mask_;
            slots_[i] = {key.head, uint32_t(key.hash >> 32), uint16_t(id), uint8_t(key.length), 0};
            offsets_.push_back(uint32_t(bytes_.size()));
            bytes_.append(tokens[id]);
        }
    }
    // Id of the token with exactly the key's bytes, or -1.
    int find(const PieceKey& key) const {
        const uint32_t tag = uint32_t(key.hash >> 32);
        for (size_t i = key.hash & mask_;; i = (i + 1) & mask_) {
            const Slot& slot = slots_[i];
            if (slot.length == 0) return -1;
            if (slot.head == key.head && slot.tag == tag && slot.length == key.length &&
                (key.length <= 8 || bytes_equal(reinterpret_cast<const uint8_t*>(bytes_.data()) + offsets_[slot.id] + 8,
                                                key.bytes + 8, key.length - 8)))
                return slot.id;
        }
    }

  private:
    struct Slot {
        uint64_t head = 0;
        uint32_t tag = 0;     // high half of the hash
        uint16_t id = 0;
        uint8_t length = 0;   // 0: empty
        uint8_t unused = 0;
    };
    std::vector<Slot> slots_;
    size_t mask_ = 0;
    std::string bytes_;              // the tokens' bytes back to back, for those over 8 bytes
    std::vector<uint32_t> offsets_;  // (num tokens,) where each token starts in bytes_
};

// (left id, right id) -> id of the token whose bytes are their concatenation.
class PairTable {
  public:
    struct Entry {
        uint32_t key;     // left << 16 | right (GPT-2 ids fit 16 bits; checked at load)
        uint32_t merged;
    };
    void build(const std::vector<Entry>& entries) {
        slots_.assign(table_size_for(entries.size()), Entry{kEmpty, 0});
        shift_ = 64 - __builtin_ctzll(slots_.size());
        for (const Entry& e : entries) {
            size_t i = slot_of(e.key);
            while (slots_[i].key != kEmpty) i = (i + 1) & (slots_.size() - 1);
            slots_[i] = e;
        }
    }
    static uint32_t key(uint32_t left, uint32_t right) { return (left << 16) | right; }
    // Merged id, or kNoMerge.
    uint32_t find(uint32_t left, uint32_t right) const {
        const uint32_t k = key(left, right);
        for (size_t i = slot_of(k);; i = (i + 1) & (slots_.size() - 1)) {
            const Entry e = slots_[i];
            if (e.key == k) return e.merged;
            if (e.key == kEmpty) return kNoMerge;
        }
    }

  private:
    static constexpr uint32_t kEmpty = UINT32_MAX;  // no pair of ids < 65535 has this key
    size_t slot_of(uint32_t k) const { return size_t((k * 0x9E3779B97F4A7C15ull) >> shift_); }
    std::vector<Entry> slots_;
    int shift_ = 64;
};

// ---------------------------------------------------------------------------------------------
// Vocabulary tables

struct VocabTables {
    uint64_t instance_id = 0;            // tells the per-thread caches which vocabulary they hold
    std::string token_bytes;             // every token's bytes back to back, in id order
    std::vector<uint32_t> token_offsets; // (kVocabSize + 1,): token id is [offsets[id], offsets[id + 1])
    std::array<uint16_t, 256> byte_token{};  // id of each one-byte token
    PieceTable piece_table;              // every mergeable token (all but <|endoftext|>)
    PairTable pair_table;

    std::string_view token(int id) const {
        return std::string_view(token_bytes).substr(token_offsets[id], token_offsets[id + 1] - token_offsets[id]);
    }
};

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

// ---------------------------------------------------------------------------------------------
// Loading

std::string vocab_error(const std::string& path, const std::string& what) {
    return "GPT-2 vocabulary file " + path + ": " + what +
           ". Run `make setup` to (re)install data/vocab/encoder.json and data/vocab/vocab.bpe, or pass "
           "--vocab DIR naming a directory that holds good copies of both.";
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(vocab_error(path, std::string("cannot open it (") + std::strerror(errno) + ")"));
    std::ostringstream contents;
    contents << in.rdbuf();
    if (in.bad()) throw std::runtime_error(vocab_error(path, "read error"));
    return contents.str();
}

// Decodes a token as spelled in encoder.json / vocab.bpe (one character per byte, see
// byte_to_unicode) into its bytes; false if some character stands for no byte.
bool unicode_spelling_to_bytes(const std::string& spelled, const std::array<int, 512>& byte_of_char,
                               std::string& bytes) {
    bytes.clear();
    const uint8_t* s = reinterpret_cast<const uint8_t*>(spelled.data());
    size_t i = 0;
    while (i < spelled.size()) {
        const Utf8Step step = utf8_step(s, i, spelled.size());
        if (!step.valid || step.length > 2) return false;  // the alphabet is U+0021..U+0143
        const char32_t cp = step.length == 1 ? s[i] : (char32_t(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
        if (cp >= byte_of_char.size() || byte_of_char[cp] < 0) return false;
        bytes.push_back(char(byte_of_char[cp]));
        i += step.length;
    }
    return !bytes.empty();
}

// Reads encoder.json's {"spelled token": id, ...} through nlohmann-json's SAX interface: the
// same parser and error messages as building a json value, without the std::map of 50k entries
// that took most of the load time.
class EncoderJsonReader final : public nlohmann::json_sax<nlohmann::json> {
  public:
    std::vector<std::pair<std::string, int64_t>> entries;  // in file order
    std::string error;                                     // why parsing stopped

    bool start_object(std::size_t) override { return depth_++ == 0 || fail("an object"); }
    bool end_object() override {
        --depth_;
        return true;
    }
    bool key(string_t& key) override {
        key_ = std::move(key);
        return true;
    }
    bool number_integer(number_integer_t value) override { return add(value); }
    bool number_unsigned(number_unsigned_t value) override { return add(int64_t(std::min<number_unsigned_t>(value, INT64_MAX))); }
    bool number_float(number_float_t, const string_t& spelled) override { return fail(spelled); }
    bool null() override { return fail("null"); }
    bool boolean(bool value) override { return fail(value ? "true" : "false"); }
    bool string(string_t& value) override { return fail("\"" + value + "\""); }
    bool binary(binary_t&) override { return fail("binary data"); }
    bool start_array(std::size_t) override { return fail("an array"); }
    bool end_array() override { return true; }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
        error = std::string("not valid JSON, truncated or corrupt (") + e.what() + ")";
        return false;
    }

  private:
    bool add(int64_t id) {
        if (depth_ != 1) return fail(std::to_string(id));
        entries.emplace_back(std::move(key_), id);
        return true;
    }
    bool fail(const std::string& found) {
        if (depth_ == 0) {
            error = "expected a JSON object of " + std::to_string(Gpt2Tokenizer::kVocabSize) + " tokens, found " + found;
        } else {
            error = "token \"" + key_ + "\" has id " + found + ", expected an integer in [0, " +
                    std::to_string(Gpt2Tokenizer::kVocabSize) + ")";
        }
        return false;
    }
    int depth_ = 0;
    std::string key_;
};

void require_token_id(int id) {
    if (id < 0 || id >= Gpt2Tokenizer::kVocabSize)
        throw std::out_of_range("GPT-2 token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                std::to_string(Gpt2Tokenizer::kVocabSize) + ")");
}

}  // namespace

struct Gpt2Tokenizer::Vocab : VocabTables {};

Gpt2Tokenizer::Gpt2Tokenizer(std::shared_ptr<const Vocab> vocab) : vocab_(std::move(vocab)) {}

char32_t Gpt2Tokenizer::byte_to_unicode(uint8_t byte) {
    const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
    if (printable) return byte;
    // The non-printable bytes are numbered in byte order: 0x00..0x20 are 0..32, 0x7F..0xA0 are
    // 33..66, 0xAD is 67.
    const int rank = byte <= 0x20 ? byte : byte <= 0xA0 ? 33 + (byte - 0x7F) : 67;
    return char32_t(256 + rank);
}

Gpt2Tokenizer Gpt2Tokenizer::load(const std::string& vocab_dir) {
    const std::string encoder_path = vocab_dir + "/encoder.json";
    const std::string merges_path = vocab_dir + "/vocab.bpe";

    std::array<int, 512> byte_of_char;  // inverse of byte_to_unicode; -1 for other characters
    byte_of_char.fill(-1);
    for (int b = 0; b < 256; ++b) byte_of_char[byte_to_unicode(uint8_t(b))] = b;

    // encoder.json: {spelled token: id}.
    EncoderJsonReader reader;
    const std::string encoder_text = read_file(encoder_path);
    if (!nlohmann::json::sax_parse(encoder_text, &reader)) throw std::runtime_error(vocab_error(encoder_path, reader.error));
    if (reader.entries.size() != size_t(kVocabSize)) {
        throw std::runtime_error(vocab_error(encoder_path, "expected a JSON object of " + std::to_string(kVocabSize) +
                                                               " tokens, found " + std::to_string(reader.entries.size())));
    }
    std::vector<std::string> tokens(kVocabSize);
    std::vector<bool> seen(kVocabSize, false);
    std::string bytes;
    for (const auto& [spelled, value] : reader.entries) {
        if (value < 0 || value >= kVocabSize) {
            throw std::runtime_error(vocab_error(encoder_path, "token \"" + spelled + "\" has id " + std::to_string(value) +
                                                                   ", expected an integer in [0, " +
                                                                   std::to_string(kVocabSize) + ")"));
        }
        const int id = int(value);
        if (seen[id]) throw std::runtime_error(vocab_error(encoder_path, "id " + std::to_string(id) + " appears twice"));
        seen[id] = true;
        if (id == kEndOfText) {
            if (spelled != kEndOfTextString)
                throw std::runtime_error(vocab_error(encoder_path, "id 50256 is \"" + spelled + "\", expected <|endoftext|>"));
            tokens[id] = spelled;
        } else if (!unicode_spelling_to_bytes(spelled, byte_of_char, tokens[id])) {
            throw std::runtime_error(vocab_error(encoder_path, "token \"" + spelled + "\" (id " + std::to_string(id) +
                                                                   ") is not spelled in GPT-2's byte alphabet"));
        }
    }

    // vocab.bpe: "#version" line, then merge i as "left right" (spelled tokens). It must agree
    // with encoder.json: the 256 one-byte tokens have ids 0..255 and merge i makes id 256 + i,
    // which is what makes a token's BPE rank equal to its id. A file that disagrees is corrupt.
    const std::string merges_text = read_file(merges_path);
    std::istringstream merges(merges_text);
    std::string line;
    if (!std::getline(merges, line) || line.rfind("#version", 0) != 0)
        throw std::runtime_error(vocab_error(merges_path, "does not start with a \"#version\" line"));
    const int num_merges = kEndOfText - 256;
    int merge = 0;
    std::string left, right;
    for (int line_number = 2; std::getline(merges, line); ++line_number) {
        if (line.empty()) continue;
        const size_t space = line.find(' ');
        const auto bad_line = [&](const std::string& what) {
            return std::runtime_error(vocab_error(merges_path, "line " + std::to_string(line_number) + " (\"" + line +
                                                                   "\"): " + what));
        };
        if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
            throw bad_line("expected two tokens separated by one space");
        if (merge >= num_merges) throw bad_line("more than " + std::to_string(num_merges) + " merges");
        if (!unicode_spelling_to_bytes(line.substr(0, space), byte_of_char, left) ||
            !unicode_spelling_to_bytes(line.substr(space + 1), byte_of_char, right))
            throw bad_line("not spelled in GPT-2's byte alphabet");
        if (left + right != tokens[256 + merge])
            throw bad_line("merges into a different token than encoder.json's id " + std::to_string(256 + merge));
        ++merge;
    }
    if (merge != num_merges)
        throw std::runtime_error(vocab_error(merges_path, "has " + std::to_string(merge) + " merges, expected " +
                                                              std::to_string(num_merges) + " (truncated?)"));

    auto vocab = std::make_shared<Vocab>();
    static std::atomic<uint64_t> next_instance_id{1};  // only ever incremented: identifies vocabularies
    vocab->instance_id = next_instance_id++;
    vocab->token_offsets.resize(kVocabSize + 1);
    for (int id = 0; id < kVocabSize; ++id) {
        vocab->token_offsets[id] = uint32_t(vocab->token_bytes.size());
        vocab->token_bytes += tokens[id];
        if (id < 256 && tokens[id].size() != 1)
            throw std::runtime_error(vocab_error(encoder_path, "id " + std::to_string(id) +
                                                                   " should be a one-byte token (ids 0..255 are the bytes)"));
        if (id < 256) vocab->byte_token[uint8_t(tokens[id][0])] = uint16_t(id);
    }
    vocab->token_offsets[kVocabSize] = uint32_t(vocab->token_bytes.size());
    static_assert(kVocabSize <= 65535, "PairTable packs two ids into 32 bits");
    std::vector<std::string_view> mergeable(kEndOfText);  // every token but <|endoftext|>
    for (int id = 0; id < kEndOfText; ++id) {
        mergeable[id] = vocab->token(id);
        if (mergeable[id].size() > PieceTable::kMaxTokenBytes)
            throw std::runtime_error(vocab_error(encoder_path, "token " + std::to_string(id) + " is longer than " +
                                                                   std::to_string(PieceTable::kMaxTokenBytes) + " bytes"));
    }
    vocab->piece_table.build(mergeable);

    // Every way to split a token into two tokens is a pair that merges into it: tiktoken ranks a
    // pair by its concatenation, not by vocab.bpe's list, so splits that vocab.bpe never lists
    // count too.
    std::vector<PairTable::Entry> pairs;
    const uint8_t* all = reinterpret_cast<const uint8_t*>(vocab->token_bytes.data());
    for (int id = 256; id < kEndOfText; ++id) {
        const uint8_t* p = all + vocab->token_offsets[id];
        const size_t n = vocab->token_offsets[id + 1] - vocab->token_offsets[id];
        for (size_t k = 1; k < n; ++k) {
            const int a = vocab->piece_table.find(make_piece_key(p, k, p + n));
            const int b = vocab->piece_table.find(make_piece_key(p + k, n - k, p + n));
            if (a >= 0 && b >= 0) pairs.push_back({PairTable::key(uint32_t(a), uint32_t(b)), uint32_t(id)});
        }
    }
    vocab->pair_table.build(pairs);
    return Gpt2Tokenizer(std::move(vocab));
}

std::string Gpt2Tokenizer::default_vocab_dir() {
    if (const char* env = std::getenv("GPT2_VOCAB_DIR"); env != nullptr && *env != '\0') return env;
    namespace fs = std::filesystem;
    std::error_code error;
    const fs::path executable = fs::read_symlink("/proc/self/exe", error);
    if (!error) {
        for (fs::path dir = executable.parent_path(); !dir.empty(); dir = dir.parent_path()) {
            if (fs::is_directory(dir / "data" / "vocab", error)) return (dir / "data" / "vocab").string();
            if (dir == dir.parent_path()) break;
        }
    }
    return "data/vocab";
}

// ---------------------------------------------------------------------------------------------
// UTF-8 and pretokenization building blocks

bool Gpt2Tokenizer::is_valid_utf8(std::string_view text) {
    return first_invalid_utf8(reinterpret_cast<const uint8_t*>(text.data()), text.size()) == text.size();
}

std::string Gpt2Tokenizer::replace_invalid_utf8(std::string_view text) {
    const uint8_t* s = reinterpret_cast<const uint8_t*>(text.data());
    const size_t n = text.size();
    std::string out;
    out.reserve(n + n / 8);
    size_t done = 0;  // text[0, done) has been copied or replaced
    while (done < n) {
        const size_t bad = done + first_invalid_utf8(s + done, n - done);
        out.append(text.data() + done, bad - done);
        if (bad == n) break;
        out += kReplacementUtf8;
        done = bad + utf8_step(s, bad, n).length;
    }
    return out;
}

std::vector<std::string_view> Gpt2Tokenizer::pretokenize(std::string_view text) {
    if (!is_valid_utf8(text))
        throw std::invalid_argument("Gpt2Tokenizer::pretokenize: text is not well-formed UTF-8; pass it through "
                                    "replace_invalid_utf8 first");
    std::vector<std::string_view> pieces;
    for_each_pretoken(text, [&](size_t begin, size_t end) { pieces.push_back(text.substr(begin, end - begin)); });
    return pieces;
}

size_t Gpt2Tokenizer::next_restart_point(std::string_view text, size_t from) {
    const uint8_t* s = reinterpret_cast<const uint8_t*>(text.data());
    const size_t n = text.size();
    size_t pos = std::min(from, n);
    while (pos < n && (s[pos] & 0xC0) == 0x80) ++pos;  // to the next character boundary
    if (pos >= n) return n;
    CharClass previous = char_at(s, pos).cls;
    pos += char_at(s, pos).length;
    while (pos < n) {
        const Utf8Char c = char_at(s, pos);
        if ((previous == kLetter || previous == kNumber) && c.cls != previous) return pos;
        previous = c.cls;
        pos += c.length;
    }
    return n;
}

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
