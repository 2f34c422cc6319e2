// The building blocks of the LayerNorm kernels (kernels/layernorm.cuh): how a row of C
// elements is spread over a "row team" of warps, chunk loads and stores in registers, the
// regenerated dropout bits, and the team and block sums that keep the statistics and the
// parameter gradients deterministic.
#pragma once

#include <algorithm>
#include <climits>

#include "kernels/common.cuh"

namespace layernorm_detail {

constexpr int kChunk = 8;  // elements per chunk: 16 bytes of 16-bit storage
constexpr int kMaxC = 8192;
constexpr int kMaxBlockThreads = 512;  // matches __launch_bounds__ below (<= 128 registers)
constexpr int kTargetBlockThreads = 256;
// Chunks per thread the kernels are instantiated for (and the default shapes choose from).
constexpr int kForwardMaxChunksPerThread = 4;
// Backward keeps dy, xhat, the incoming gradient and two accumulators per element in registers
// (the third, the dx sums, in shared memory): two chunks per thread fit in 128 registers without
// spilling (three spill), so two 256-thread blocks share an SM.
constexpr int kBackwardMaxChunksPerThread = 2;
// Parameter-gradient rows the backward reduces: dweight, dbias and (optional) d_sublayer_bias.
constexpr int kMaxComponents = 3;

// How a row is spread over threads: blockDim = (32 * warps_per_team, teams_per_block).
struct RowTeamShape {
    int warps_per_team = 0;
    int chunks_per_thread = 0;
    int teams_per_block = 0;
    int block_threads() const { return 32 * warps_per_team * teams_per_block; }
};

// Fewest idle chunk slots; ties go to more chunks per thread (fewer warps to reduce across).
inline RowTeamShape row_team_shape(int C, int max_chunks_per_thread) {
    const int chunks = C / kChunk;
    RowTeamShape best;
    int best_waste = INT_MAX;
    for (int per_thread = 1; per_thread <= max_chunks_per_thread; ++per_thread) {
        const int warps = ceil_div(chunks, 32 * per_thread);
        if (32 * warps > kMaxBlockThreads) continue;
        const int waste = 32 * warps * per_thread - chunks;
        if (waste <= best_waste) {
            best_waste = waste;
            best.warps_per_team = warps;
            best.chunks_per_thread = per_thread;
            best.teams_per_block = std::max(1, kTargetBlockThreads / (32 * warps));
        }
    }
    return best;
}

// The backward kernels (kernels/layernorm.cuh and layernorm_backward_prefetch.cuh; the dev/cuda
// workbench times them side by side). All take the same arguments and write the same partials.
enum class BackwardKernel {
    row_team,        // layernorm_backward_kernel: loads a row after storing the previous one
    prefetch,        // prefetching_layernorm_backward_kernel, one row per step
    prefetch_pairs,  // the same, two rows per step
    staged2,         // prefetching_layernorm_backward_kernel, the next row in shared memory (cp.async)
    staged3,         // the next two rows
    staged4,         // the next three rows
};
// Rows a kernel keeps in shared memory (the current one included); 0: none, the rows ahead wait in registers.
inline int backward_stages(BackwardKernel kernel) {
    switch (kernel) {
        case BackwardKernel::staged2: return 2;
        case BackwardKernel::staged3: return 3;
        case BackwardKernel::staged4: return 4;
        default: return 0;
    }
}

struct BackwardPlan {
    BackwardKernel kernel = BackwardKernel::row_team;
    RowTeamShape shape;
    int rows_per_team = 0;
    int blocks = 0;
    size_t scratch_floats(int C) const { return size_t(blocks) * kMaxComponents * C; }  // (blocks, components, C)
};

// Backward blocks loop over rows: about target_warps warps in all, each team taking an equal
// share of the N rows.
inline BackwardPlan backward_plan(BackwardKernel kernel, int N, RowTeamShape shape, int target_warps) {
    BackwardPlan plan;
    plan.kernel = kernel;
    plan.shape = shape;
    const int target_teams = std::max(1, target_warps / shape.warps_per_team);
    plan.rows_per_team = std::max(1, ceil_div(N, target_teams));
    plan.blocks = ceil_div(N, plan.rows_per_team * shape.teams_per_block);
    return plan;
}

// ---------------------------------------------------------------------------------------------
// Device helpers

// 8 consecutive elements of S as stored (16-bit: one 16-byte access; fp32: two). Keeping loaded
// rows packed until they are used halves their registers for 16-bit storage. Row data is
// touched once per kernel, so loads stream (evict-first) to leave L2 to the weights.
template <typename S> struct alignas(16) RawChunk {
    S elements[kChunk];
    __device__ void load(const S* address) {
#pragma unroll
        for (int part = 0; part < int(sizeof(elements) / 16); ++part)
            reinterpret_cast<int4*>(elements)[part] = __ldcs(reinterpret_cast<const int4*>(address) + part);
    }
    __device__ void clear() {
#pragma unroll
        for (int j = 0; j < kChunk; ++j) elements[j] = from_float<S>(0.0f);
    }
    __device__ float get(int j) const { return to_float(elements[j]); }
};
template <typename S> __device__ inline void load_chunk(const S* address, float (&values)[kChunk]) {
    RawChunk<S> raw;
    raw.load(address);
#pragma unroll
    for (int j = 0; j < kChunk; ++j) values[j] = raw.get(j);
}
template <typename S> __device__ inline void store_chunk(S* address, const float (&values)[kChunk]) {
    constexpr int per_vector = Vec16<S>::size;
#pragma unroll
    for (int part = 0; part < kChunk / per_vector; ++part) {
        Vec16<S> vector;
#pragma unroll
        for (int j = 0; j < per_vector; ++j) vector.set(j, values[part * per_vector + j]);
        store16(address + part * per_vector, vector);
    }
}
template <typename S> __device__ inline float round_to(float value) { return to_float(from_float<S>(value)); }

// The smallest random word DropoutParams::keep keeps: uniform_from_bits(word) = (word >> 8) / 2^24
// exactly, and p * 2^24 is exact in fp32, so uniform >= p iff (word >> 8) >= ceil(p * 2^24) iff
// word >= ceil(p * 2^24) << 8 (below 2^32 for p < 1). One integer compare per element instead of
// a shift, a conversion, a multiply and a float compare.
__device__ inline uint32_t dropout_keep_threshold(const DropoutParams& drop) {
    return static_cast<uint32_t>(ceilf(drop.p * 16777216.0f)) << 8;
}

// Bit j set iff element first + j is kept (first is a multiple of 8): the same Philox words as
// DropoutParams::keep, two generator calls per chunk instead of eight. `threshold` is
// dropout_keep_threshold(drop).
__device__ inline uint32_t dropout_keep_bits(const DropoutParams& drop, uint32_t threshold, uint64_t first) {
    if (!drop.enabled()) return 0xFFu;
    uint32_t bits = 0;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const uint4 words = drop.random_words((first >> 2) + half);
        const uint32_t word[4] = {words.x, words.y, words.z, words.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) bits |= uint32_t(word[j] >= threshold) << (4 * half + j);
    }
    return bits;
}

// Sums each of `values` over the row team (threadIdx.y's W warps). Every thread of the team gets
// the same bits: the xor butterfly is symmetric and the cross-warp sum has a fixed order.
// `exchange` holds blockDim.y * W * kValues floats. One barrier per call: callers alternate
// between two exchange buffers, so a buffer is rewritten only after the next call's barrier,
// which every reader of the previous contents has passed. `barrier` synchronizes at least the
// team (every thread it covers must call).
template <int kValues, typename Barrier>
__device__ inline void team_sum(float (&values)[kValues], int warps_per_team, float* exchange, Barrier barrier) {
#pragma unroll
    for (int i = 0; i < kValues; ++i) values[i] = warp_sum(values[i]);
    if (warps_per_team == 1) return;
    const int team_first_warp = threadIdx.y * warps_per_team;
    if (threadIdx.x % 32 == 0) {
#pragma unroll
        for (int i = 0; i < kValues; ++i) exchange[(team_first_warp + threadIdx.x / 32) * kValues + i] = values[i];
    }
    barrier();
#pragma unroll
    for (int i = 0; i < kValues; ++i) {
        float total = 0.0f;
        for (int warp = 0; warp < warps_per_team; ++warp) total += exchange[(team_first_warp + warp) * kValues + i];
        values[i] = total;
    }
}
// The block-wide form: called by every thread of the block.
template <int kValues> __device__ inline void team_sum(float (&values)[kValues], int warps_per_team, float* exchange) {
    team_sum(values, warps_per_team, exchange, [] { __syncthreads(); });
}

// A barrier of the calling thread's row team alone (hardware barrier 1 + threadIdx.y; 0 is
// __syncthreads'), so teams of a block do not wait for each other row by row. Teams per block
// must not exceed kMaxNamedBarrierTeams.
constexpr int kMaxNamedBarrierTeams = 15;
__device__ inline void team_barrier() {
    asm volatile("bar.sync %0, %1;" ::"r"(1 + int(threadIdx.y)), "r"(int(blockDim.x)) : "memory");
}

// Backward's sums over the teams of a block, for chunk slot k: for each column k * slot_columns + i
// (i < slot_columns, column < C), partial_row[column] = the teams' values for it, summed in team
// order. Team 0's value for column i is at first_team_value(i), team t's t * team_stride floats
// further on. The block's threads share the columns.
template <typename FirstTeamValue>
__device__ __forceinline__ void store_team_sums(float* partial_row, int k, int slot_columns, int C,
                                                unsigned team_stride, FirstTeamValue first_team_value) {
    const int block_threads = blockDim.x * blockDim.y;
    for (int i = threadIdx.y * blockDim.x + threadIdx.x; i < slot_columns; i += block_threads) {
        const int column = k * slot_columns + i;
        if (column >= C) break;
        const float* value = first_team_value(i);
        float total = 0.0f;
        for (int team = 0; team < blockDim.y; ++team) total += value[team * team_stride];
        partial_row[column] = total;
    }
}

// One partial row of a per-column accumulator held in registers: partial_row[c] = the block's
// teams' values for column c, summed in team order. `shared` holds blockDim.x * blockDim.y *
// kChunk floats. Called by every thread of the block.
template <int kChunksPerThread>
__device__ inline void store_block_partial_row(float* partial_row, const float (&accumulator)[kChunksPerThread][kChunk],
                                               int C, float* shared) {
    const int thread_index = threadIdx.y * blockDim.x + threadIdx.x;
    const int slot_columns = blockDim.x * kChunk;  // columns covered by one chunk slot of the team
#pragma unroll
    for (int k = 0; k < kChunksPerThread; ++k) {
        __syncthreads();  // the previous readers of `shared` are done
#pragma unroll
        for (int j = 0; j < kChunk; ++j) shared[thread_index * kChunk + j] = accumulator[k][j];
        __syncthreads();
        store_team_sums(partial_row, k, slot_columns, C, slot_columns, [&](int i) { return shared + i; });
    }
}
}  // namespace layernorm_detail
