// The GPT-2 tokenizer's vocabulary in memory: flat open-addressing hash tables from a piece's
// bytes to its token id (PieceTable) and from a pair of ids to the id of their concatenation
// (PairTable), the hash they share, and VocabTables, which holds them with every token's bytes.
// Header-only and inline: a lookup is most of the encoding time and must inline into it.
// Internal to the tokenizer's implementation (host/tokenizer*.cpp); host/tokenizer.h is the API.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "host/tokenizer.h"

namespace tokenizer_internal {

constexpr uint32_t kNoMerge = UINT32_MAX;  // "rank" of a pair whose concatenation is no token

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

inline size_t table_size_for(size_t entries) {  // power of two, load factor <= 1/2
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

}  // namespace tokenizer_internal

struct Gpt2Tokenizer::Vocab : tokenizer_internal::VocabTables {};
