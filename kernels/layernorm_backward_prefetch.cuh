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

// Arguments as layernorm_backward_kernel's. dy_extra and d_sum_addend are not both given
// (launch_backward checks it), and dy_extra only where R == T. Dynamic shared memory:
// blockDim.x * blockDim.y * kChunk floats.
template <typename T, typename R, int kChunksPerThread, int kRowsPerStep>
__global__ void __launch_bounds__(kMaxBlockThreads)
    prefetching_layernorm_backward_kernel(T* dx, R* d_sum_out, float* partials /*(gridDim.x, components, C)*/,
                                          const T* dy, const T* dy_extra, const R* d_sum_addend,
                                          const R* saved_sum, const float* mean, const float* rstd,
                                          const T* weight, DropoutParams drop, int N, int C, int rows_per_team,
                                          int components) {
    using Inputs = BackwardRowInputs<T, R, kChunksPerThread>;
    constexpr int kSums = 2 * kRowsPerStep;  // per row: sum(g), sum(g * xhat)
    drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
    extern __shared__ float partial_exchange[];  // the teams' accumulators, at the end
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

    Inputs next[kRowsPerStep];
#pragma unroll
    for (int r = 0; r < kRowsPerStep; ++r) load_row(next[r], r);

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
#pragma unroll
        for (int r = 0; r < kRowsPerStep; ++r) current[r] = next[r];
#pragma unroll
        for (int r = 0; r < kRowsPerStep; ++r) load_row(next[r], first + kRowsPerStep + r);

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

    float* block_partials = partials + size_t(blockIdx.x) * components * C;
    store_block_partial_row(block_partials, dweight_acc, C, partial_exchange);
    store_block_partial_row(block_partials + C, dbias_acc, C, partial_exchange);
    if (components == 3) store_block_partial_row(block_partials + 2 * C, dx_acc, C, partial_exchange);
}

}  // namespace layernorm_detail
