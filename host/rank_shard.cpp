// Shard arithmetic; see rank_shard.h.
#include "host/rank_shard.h"

#include <algorithm>

#include "host/require.h"

namespace distributed {

Shard shard_of(size_t count, int rank, int world_size, size_t alignment) {
    REQUIRE(world_size >= 1 && rank >= 0 && rank < world_size && alignment >= 1,
            "shard_of: rank %d of world size %d, alignment %zu", rank, world_size, alignment);
    Shard shard;
    const size_t granule = static_cast<size_t>(world_size) * alignment;
    shard.padded_count = (count + granule - 1) / granule * granule;
    shard.shard_count = shard.padded_count / world_size;
    shard.begin = static_cast<size_t>(rank) * shard.shard_count;
    shard.end = shard.begin + shard.shard_count;
    shard.valid_end = std::max(shard.begin, std::min(shard.end, count));
    return shard;
}

}  // namespace distributed
