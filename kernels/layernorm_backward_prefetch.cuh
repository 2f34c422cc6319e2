// The LayerNorm backward that keeps the next rows' loads in flight (the math, the aliasing rules
// and the launchers are in kernels/layernorm.cuh; the row-team pieces in layernorm_rows.cuh).
//
// Same row teams, same deterministic parameter-gradient partials and the same reduction kernel
// as layernorm_backward_kernel; what differs is how a team walks its rows:
//   * the loads of the team's next step (kRowsPerStep rows) are issued, packed as stored, before
//     the current step is computed, so HBM works on them through the current step's dropout
//     mask, reduction, barrier and stores; a kernel that loads a row only after storing the
//     previous one keeps bytes in flight for a fraction of each row's time;
//   * the dropout bits of a step are generated before its loaded rows are first used: Philox is
//     pure arithmetic and fills the wait;
//   * a team synchronizes with a barrier of its own (team_barrier), not the block's;
//   * one chunk per thread up to C = 4096 (more warps per row, fewer registers per thread), and
//     all three accumulators (dweight, dbias, the dx column sums) stay in registers;
//   * the weights are loaded once per thread, not once per row.
// kRowsPerStep = 2 reduces two rows per barrier and doubles the bytes each thread has in flight,
// at the cost of the registers that hold them.
//
// kStages > 0 (one row per step) holds the rows ahead in shared memory instead: each thread copies
// its own chunks of the next kStages - 1 rows there with cp.async and reads back only what it
// copied, so no barrier guards the stages, and the bytes in flight no longer cost registers. With
// a 16-bit residual a row is 6 bytes an element, and one row ahead in registers leaves few bytes
// in flight per SM where a team's warps leave room for few teams (C = 1600 and 2560 reached 68%
// and 64% of copy bandwidth); whether staging lifts them is what the workbench measures.
#pragma once

#include <algorithm>
#include <type_traits>

#include "kernels/layernorm_rows.cuh"

namespace layernorm_detail {

// One chunk per thread where the row fits in kMaxBlockThreads threads, else the fewest chunks that
// fit (or at least min_chunks_per_thread: each thread then keeps more bytes of a row in flight, and
// a team needs fewer warps); teams fill the block up to target_block_threads (at least one, at
// most kMaxNamedBarrierTeams: each team owns a hardware barrier).
inline RowTeamShape prefetch_row_team_shape(int C, int target_block_threads, int min_chunks_per_thread = 1) {
    const int chunks = C / kChunk;
    RowTeamShape shape;
    shape.chunks_per_thread = std::max(ceil_div(chunks, kMaxBlockThreads), min_chunks_per_thread);
    shape.warps_per_team = ceil_div(chunks, 32 * shape.chunks_per_thread);
    shape.teams_per_block =
        std::clamp(target_block_threads / (32 * shape.warps_per_team), 1, kMaxNamedBarrierTeams);
    return shape;
}

// One row's inputs for one thread's chunk slots, packed as stored.
template <typename T, typename R, int kChunksPerThread> struct BackwardRowInputs {
    RawChunk<T> dy[kChunksPerThread];
    RawChunk<R> saved_sum[kChunksPerThread];
    RawChunk<R> incoming[kChunksPerThread];  // d_out_extra (post-norm, where R == T) or d_residual (pre-norm)
    float mean, rstd;
};

// kStages rows of a block's teams in shared memory, thread-minor in 16-byte parts (a warp's
// accesses to one part are conflict-free): for each stage, every part of a row's inputs as
// BackwardRowInputs packs them (dy, saved sum, incoming gradient), then each thread's mean and rstd.
template <typename T, typename R>
constexpr size_t staged_row_bytes_per_thread(int chunks_per_thread) {  // one stage's
    return size_t(chunks_per_thread) * (sizeof(RawChunk<T>) + 2 * sizeof(RawChunk<R>)) + 2 * sizeof(float);
}
template <typename T, typename R, int kChunksPerThread> struct StagedRows {
    using Inputs = BackwardRowInputs<T, R, kChunksPerThread>;
    static constexpr int kDyParts = sizeof(RawChunk<T>) / 16, kSumParts = sizeof(RawChunk<R>) / 16;
    static constexpr int kParts = kChunksPerThread * (kDyParts + 2 * kSumParts);  // per thread and row
    static_assert(kParts * 16 + 2 * sizeof(float) == staged_row_bytes_per_thread<T, R>(kChunksPerThread));

    int4* parts;     // (stages, kParts, block threads)
    float2* stats;   // (stages, block threads): mean, rstd
    int threads, thread;

    __device__ StagedRows(void* shared, int stages)
        : parts(static_cast<int4*>(shared)),
          stats(reinterpret_cast<float2*>(static_cast<int4*>(shared) + size_t(stages) * kParts * blockDim.x * blockDim.y)),
          threads(blockDim.x * blockDim.y),
          thread(threadIdx.y * blockDim.x + threadIdx.x) {}
    __device__ int4* part(int stage, int index) const { return parts + (size_t(stage) * kParts + index) * threads + thread; }

    // cp.async of this thread's chunk slots `valid_chunk(k)` of one row into `stage`.
    template <typename ValidChunk>
    __device__ void copy(int stage, size_t offset, int chunk_stride, const T* dy, const R* saved_sum,
                         const R* incoming, const float* mean, const float* rstd, int row, ValidChunk valid_chunk) const {
#pragma unroll
        for (int k = 0; k < kChunksPerThread; ++k) {
            if (!valid_chunk(k)) continue;
            const size_t chunk_offset = offset + size_t(k) * chunk_stride;
            int index = k * (kDyParts + 2 * kSumParts);
#pragma unroll
            for (int p = 0; p < kDyParts; ++p) cp_async_16(part(stage, index++), reinterpret_cast<const int4*>(dy + chunk_offset) + p, true);
#pragma unroll
            for (int p = 0; p < kSumParts; ++p)
                cp_async_16(part(stage, index++), reinterpret_cast<const int4*>(saved_sum + chunk_offset) + p, true);
            if (incoming == nullptr) continue;
#pragma unroll
            for (int p = 0; p < kSumParts; ++p)
                cp_async_16(part(stage, index++), reinterpret_cast<const int4*>(incoming + chunk_offset) + p, true);
        }
        float2* my_stats = stats + size_t(stage) * threads + thread;
        cp_async_4(&my_stats->x, mean + row, true);
        cp_async_4(&my_stats->y, rstd + row, true);
    }
    // This thread's copy of a row, once its cp.async group has completed.
    __device__ void read(int stage, Inputs& in, bool has_incoming) const {
#pragma unroll
        for (int k = 0; k < kChunksPerThread; ++k) {
            int index = k * (kDyParts + 2 * kSumParts);
#pragma unroll
            for (int p = 0; p < kDyParts; ++p) reinterpret_cast<int4*>(&in.dy[k])[p] = *part(stage, index++);
#pragma unroll
            for (int p = 0; p < kSumParts; ++p) reinterpret_cast<int4*>(&in.saved_sum[k])[p] = *part(stage, index++);
            if (!has_incoming) continue;
#pragma unroll
            for (int p = 0; p < kSumParts; ++p) reinterpret_cast<int4*>(&in.incoming[k])[p] = *part(stage, index++);
        }
        const float2 row_stats = stats[size_t(stage) * threads + thread];
        in.mean = row_stats.x;
        in.rstd = row_stats.y;
    }
};

// Blocks per SM the compiler is asked to fit (__launch_bounds__). Rows staged in shared memory
// leave the registers to the accumulators: with one chunk a thread and a 16-bit residual, 64
// registers hold them without spilling, so two blocks of 512 threads share an SM (ptxas, sm_90a);
// with an fp32 residual their stages fill the shared memory of one block anyway.
template <typename T, typename R, int kChunksPerThread, int kStages> constexpr int backward_min_blocks() {
    return kStages > 0 && kChunksPerThread == 1 && sizeof(R) == sizeof(T) ? 2 : 1;
}

// Arguments as layernorm_backward_kernel's. dy_extra and d_sum_addend are not both given
// (launch_backward checks it), and dy_extra only where R == T. Dynamic shared memory
// (backward_dynamic_smem_bytes): blockDim.x * blockDim.y * kChunk floats for the end's exchange,
// or with kStages > 0 the stages (kStages * block threads * staged_row_bytes_per_thread), which
// the exchange then reuses.
template <typename T, typename R, int kChunksPerThread, int kRowsPerStep, int kStages>
__global__ void __launch_bounds__(kMaxBlockThreads, (backward_min_blocks<T, R, kChunksPerThread, kStages>()))
    prefetching_layernorm_backward_kernel(T* dx, R* d_sum_out, float* partials /*(gridDim.x, components, C)*/,
                                          const T* dy, const T* dy_extra, const R* d_sum_addend,
                                          const R* saved_sum, const float* mean, const float* rstd,
                                          const T* weight, DropoutParams drop, int N, int C, int rows_per_team,
                                          int components) {
    static_assert(kStages == 0 || (kStages >= 2 && kRowsPerStep == 1), "shared-memory stages take one row a step");
    using Inputs = BackwardRowInputs<T, R, kChunksPerThread>;
    constexpr int kSums = 2 * kRowsPerStep;  // per row: sum(g), sum(g * xhat)
    drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
    extern __shared__ int4 dynamic_shared[];
    float* const partial_exchange = reinterpret_cast<float*>(dynamic_shared);  // the teams' accumulators, at the end
    __shared__ float exchange[2][kMaxBlockThreads / 32 * kSums];
    const int warps_per_team = blockDim.x / 32;
    const int chunks = C / kChunk;
    const float keep_scale = drop.scale();
    const uint32_t keep_threshold = dropout_keep_threshold(drop);
    const float inv_C = 1.0f / C;

    // At most one incoming gradient: post-norm's joins dy before the LayerNorm backward, pre-norm's
    // its result.
    const R* incoming = d_sum_addend;
    if constexpr (std::is_same_v<T, R>) {
        if (dy_extra != nullptr) incoming = dy_extra;
    }
    const bool has_incoming = incoming != nullptr;
    const bool incoming_joins_dy = dy_extra != nullptr;

    Vec16<T> w[kChunksPerThread];
    float dweight_acc[kChunksPerThread][kChunk], dbias_acc[kChunksPerThread][kChunk];
    float dx_acc[kChunksPerThread][kChunk];
#pragma unroll
    for (int k = 0; k < kChunksPerThread; ++k) {
        const int chunk = threadIdx.x + k * blockDim.x;
#pragma unroll
        for (int j = 0; j < kChunk; ++j) {
            w[k].set(j, 0.0f);  // idle slots: g = 0 keeps them out of the row sums
            dweight_acc[k][j] = dbias_acc[k][j] = dx_acc[k][j] = 0.0f;
        }
        if (chunk < chunks) w[k] = load16(weight + chunk * kChunk);
    }

    // The team's rows: index i < rows_per_team is row block_first_row + i * teams + team.
    const int block_first_row = blockIdx.x * rows_per_team * blockDim.y;
    auto row_at = [&](int index) { return block_first_row + index * int(blockDim.y) + int(threadIdx.y); };
    auto row_valid = [&](int index) { return index < rows_per_team && row_at(index) < N; };
    auto load_row = [&](Inputs& in, int index) {
        if (!row_valid(index)) return;
        const int row = row_at(index);
        in.mean = mean[row];
        in.rstd = rstd[row];
#pragma unroll
        for (int k = 0; k < kChunksPerThread; ++k) {
            const int chunk = threadIdx.x + k * blockDim.x;
            if (chunk >= chunks) continue;
            const size_t offset = size_t(row) * C + size_t(chunk) * kChunk;
            in.dy[k].load(dy + offset);
            in.saved_sum[k].load(saved_sum + offset);
            if (has_incoming) in.incoming[k].load(incoming + offset);
        }
    };
    // dy (with post-norm's incoming gradient) and xhat of element j of chunk slot k.
    auto dy_at = [&](const Inputs& in, int k, int j) {
        return in.dy[k].get(j) + (incoming_joins_dy ? in.incoming[k].get(j) : 0.0f);
    };
    auto xhat_at = [&](const Inputs& in, int k, int j) { return (in.saved_sum[k].get(j) - in.mean) * in.rstd; };

    // Registers (kStages == 0): the next step's rows. Shared memory: the next kStages - 1 rows, one
    // cp.async group each (empty past the team's rows, so that every step waits alike).
    Inputs next[kStages == 0 ? kRowsPerStep : 1];
    constexpr int kStageSlots = kStages > 0 ? kStages : 1;  // (the register form copies nothing)
    const StagedRows<T, R, kChunksPerThread> stages(dynamic_shared, kStageSlots);
    auto copy_row = [&](int index) {
        if (row_valid(index))
            stages.copy(index % kStageSlots, size_t(row_at(index)) * C + size_t(threadIdx.x) * kChunk,
                        blockDim.x * kChunk, dy, saved_sum, has_incoming ? incoming : nullptr, mean, rstd,
                        row_at(index), [&](int k) { return threadIdx.x + k * blockDim.x < chunks; });
        cp_async_commit();
    };
    if constexpr (kStages == 0) {
#pragma unroll
        for (int r = 0; r < kRowsPerStep; ++r) load_row(next[r], r);
    } else {
        for (int index = 0; index < kStages - 1; ++index) copy_row(index);
    }

    // Every team walks as many steps as team 0 (which has the most rows), so that each takes the
    // same number of team barriers; a team past its rows sums zeros. The teams' barriers are their
    // own, so a team could leave as soon as its rows are done, but compute-sanitizer's racecheck
    // then took the block barriers of store_block_partial_row for no ordering between the teams
    // (20 hazards at C = 768; 0 with equal step counts, H100, 2026-12-07).
    auto block_has_step = [&](int index) {
        return index < rows_per_team && block_first_row + index * int(blockDim.y) < N;  // team 0's row valid
    };
    for (int first = 0, step = 0; block_has_step(first); first += kRowsPerStep, ++step) {
        Inputs current[kRowsPerStep];
        if constexpr (kStages == 0) {
#pragma unroll
            for (int r = 0; r < kRowsPerStep; ++r) current[r] = next[r];
#pragma unroll
            for (int r = 0; r < kRowsPerStep; ++r) load_row(next[r], first + kRowsPerStep + r);
        } else {
            // The stage this copy fills held row first - 1, which this thread read a step ago.
            copy_row(first + kStages - 1);
            cp_async_wait<kStages - 1>();  // row `first`'s group is done
            stages.read(first % kStages, current[0], has_incoming);
        }

        uint32_t keep[kRowsPerStep][kChunksPerThread];
#pragma unroll
        for (int r = 0; r < kRowsPerStep; ++r) {
#pragma unroll
            for (int k = 0; k < kChunksPerThread; ++k) {
                const int chunk = threadIdx.x + k * blockDim.x;
                keep[r][k] = row_valid(first + r) && chunk < chunks
                                 ? dropout_keep_bits(drop, keep_threshold,
                                                     size_t(row_at(first + r)) * C + size_t(chunk) * kChunk)
                                 : 0u;
            }
        }

        float sums[kSums];
#pragma unroll
        for (int r = 0; r < kRowsPerStep; ++r) {
            sums[2 * r] = sums[2 * r + 1] = 0.0f;
            if (!row_valid(first + r)) continue;
#pragma unroll
            for (int k = 0; k < kChunksPerThread; ++k) {
                if (threadIdx.x + k * blockDim.x >= chunks) continue;
#pragma unroll
                for (int j = 0; j < kChunk; ++j) {
                    const float g = dy_at(current[r], k, j) * w[k].get(j);
                    sums[2 * r] += g;
                    sums[2 * r + 1] += g * xhat_at(current[r], k, j);
                }
            }
        }
        team_sum(sums, warps_per_team, exchange[step & 1], [] { team_barrier(); });
        // Read again rather than held across the barrier (whose memory clobber makes this a new
        // load): fewer live registers, more warps per SM.
        if constexpr (kStages > 0) stages.read(first % kStages, current[0], has_incoming);

#pragma unroll
        for (int r = 0; r < kRowsPerStep; ++r) {
            if (!row_valid(first + r)) continue;
            const Inputs& in = current[r];
            const float mean_g = sums[2 * r] * inv_C, mean_g_xhat = sums[2 * r + 1] * inv_C;
            const size_t row_offset = size_t(row_at(first + r)) * C;
#pragma unroll
            for (int k = 0; k < kChunksPerThread; ++k) {
                const int chunk = threadIdx.x + k * blockDim.x;
                if (chunk >= chunks) continue;
                float d_sum[kChunk], dx_chunk[kChunk];
#pragma unroll
                for (int j = 0; j < kChunk; ++j) {
                    const float dy_j = dy_at(in, k, j), xhat = xhat_at(in, k, j);
                    const float g = dy_j * w[k].get(j);
                    const float addend = has_incoming && !incoming_joins_dy ? in.incoming[k].get(j) : 0.0f;
                    d_sum[j] = in.rstd * (g - mean_g - xhat * mean_g_xhat) + addend;
                    // Rounded as stored: the sum is that of the tensor the projection's backward reads.
                    dx_chunk[j] = (keep[r][k] >> j) & 1u ? round_to<T>(d_sum[j] * keep_scale) : 0.0f;
                    dweight_acc[k][j] += dy_j * xhat;
                    dbias_acc[k][j] += dy_j;
                    dx_acc[k][j] += dx_chunk[j];
                }
                const size_t offset = row_offset + size_t(chunk) * kChunk;
                if (d_sum_out != nullptr) store_chunk(d_sum_out + offset, d_sum);
                store_chunk(dx + offset, dx_chunk);
            }
        }
    }

    if constexpr (kStages > 0) cp_async_wait_all();  // the exchange below reuses the stages
    float* block_partials = partials + size_t(blockIdx.x) * components * C;
    store_block_partial_row(block_partials, dweight_acc, C, partial_exchange);
    store_block_partial_row(block_partials + C, dbias_acc, C, partial_exchange);
    if (components == 3) store_block_partial_row(block_partials + 2 * C, dx_acc, C, partial_exchange);
}

}  // namespace layernorm_detail
