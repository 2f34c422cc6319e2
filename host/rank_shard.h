// Sharding a flat array over ranks (ZeRO-1 and ZeRO-2): which part of the parameters, gradients
// and optimizer state each rank owns. Plain C++; the implementation lives in rank_shard.cpp.
// (Not to be confused with host/shard.h, the token files.)
//
// NCCL's reduce-scatter and all-gather move equal counts per rank, so the array is padded up to
// a multiple of world_size * alignment elements and every rank owns an equal shard; `alignment`
// (in elements) keeps every shard's start aligned for 16-byte vector access and NCCL's fast
// paths. Callers allocate padded_count elements and keep the padding zero.
#pragma once

#include <cstddef>

namespace distributed {

struct Shard {
    size_t padded_count = 0;  // total elements including padding, a multiple of world_size * alignment
    size_t shard_count = 0;   // padded_count / world_size
    size_t begin = 0;         // this rank's range in the padded array: [begin, end)
    size_t end = 0;
    size_t valid_end = 0;     // min(end, count), at least begin: elements past it (if any) are padding
};

// Rank `rank`'s shard of `count` elements over `world_size` ranks. Requires 0 <= rank <
// world_size and alignment >= 1.
Shard shard_of(size_t count, int rank, int world_size, size_t alignment = 128);

}  // namespace distributed
