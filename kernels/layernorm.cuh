// Dropout + residual add + LayerNorm, fused, for pre-norm and post-norm transformer blocks.
//
// Math, per row of C elements (s is the new residual stream):
//   forward   s      = residual_in + dropout(x)                  stored as R (the residual type)
//             mean   = sum(s) / C
//             rstd   = 1 / sqrt(sum((s - mean)^2) / C + eps)      fp32, biased variance
//             xhat   = (s - mean) * rstd
//             ln_out = xhat * weight + bias
//   backward  dy     = d_ln_out (+ d_out_extra in post-norm)
//             g      = dy * weight
//             d_sum  = rstd * (g - mean(g) - xhat * mean(g * xhat)) (+ d_residual from later layers)
//             dx     = keep ? d_sum / (1 - p) : 0                 the mask is regenerated, not stored
//             dweight += sum over rows of dy * xhat,   dbias += sum over rows of dy
//             d_sublayer_bias += sum over rows of dx      (optional, see below)
// The statistics are taken of s as stored (rounded to R): backward re-reads the stored residual,
// so forward and backward see the same xhat.
//
// Fused structure. A "row team" of W warps owns one row at a time; each thread keeps its
// chunks of 8 consecutive elements (one 16-byte access for 16-bit storage) in registers, so the
// row crosses HBM exactly once and the two-pass statistics are free. W and the chunks per thread
// are chosen per C (row_team_shape) to leave as few lanes idle as possible, e.g. C = 768 -> one
// warp with 3 chunks per thread, C = 2560 -> 5 warps with 2, C = 8192 -> 8 warps with 4.
//
// Two backward kernels take the same arguments (BackwardKernel; kDefaultBackwardKernel is the
// trainer's): layernorm_backward_kernel below loads a row after storing the previous one;
// prefetching_layernorm_backward_kernel (layernorm_backward_prefetch.cuh) keeps the next row's
// loads in flight while it computes the current one. dev/cuda/layernorm times them side by side.
//
// Deterministic parameter gradients without atomics. Each backward thread accumulates dweight
// and dbias for its own columns over the rows its team visits; the teams of a block are summed
// in shared memory in a fixed order; each block writes one partial row to scratch; a second
// kernel sums the partial rows in a fixed order and adds the result to dweight/dbias. The block
// count depends only on (N, C), so results are bit-identical run to run and GPU to GPU.
//
// The sublayer's bias gradient rides along. x is the output of a linear layer (the attention or
// MLP output projection), so dx is that layer's dout, and the column sums of dx are the gradient
// of its bias. Summing dx here, as stored (rounded to T), the same way as dweight/dbias costs
// one more accumulator per element (in shared memory) and one more partial row per block;
// getting it from the projection's weight-gradient GEMM (cuBLASLt's BGRADB epilogue) slows that
// GEMM by far more (the README's matmul section has the figures), and a separate column-sum
// kernel would read dx once more.
#pragma once

#include <algorithm>
#include <climits>
#include <type_traits>

#include "kernels/common.cuh"
#include "kernels/layernorm_backward_prefetch.cuh"
#include "kernels/layernorm_rows.cuh"

namespace layernorm_detail {

// ---------------------------------------------------------------------------------------------
// Forward: one row per team.

template <typename T, typename R, int kChunksPerThread>
__global__ void __launch_bounds__(kMaxBlockThreads)
    dropout_residual_layernorm_forward_kernel(T* ln_out, R* residual_out, float* mean_out, float* rstd_out,
                                              const T* x, const R* residual_in, const T* weight, const T* bias,
                                              DropoutParams drop, float eps, int N, int C) {
    drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
    __shared__ float exchange[2][kMaxBlockThreads / 32];
    const int warps_per_team = blockDim.x / 32;
    const int chunks = C / kChunk;
    const int row = blockIdx.x * blockDim.y + threadIdx.y;
    const bool row_valid = row < N;  // no early return: team_sum has block-wide barriers
    const size_t row_offset = size_t(row) * C;
    const float keep_scale = drop.scale();
    const uint32_t keep_threshold = dropout_keep_threshold(drop);
    const float inv_C = 1.0f / C;

    // Every load of the row (and the weights) before any store: the compiler may not move loads
    // past stores to possibly aliasing pointers, and all of them in flight at once is what
    // saturates HBM. (It also makes residual_out == residual_in safe.)
    RawChunk<T> x_raw[kChunksPerThread];
    RawChunk<R> residual_raw[kChunksPerThread];
    Vec16<T> w[kChunksPerThread], b[kChunksPerThread];
#pragma unroll
    for (int k = 0; k < kChunksPerThread; ++k) {
        const int chunk = threadIdx.x + k * blockDim.x;
        if (!row_valid || chunk >= chunks) continue;
        const size_t offset = row_offset + size_t(chunk) * kChunk;
        x_raw[k].load(x + offset);
        if (residual_in != nullptr) residual_raw[k].load(residual_in + offset);
        else residual_raw[k].clear();
        w[k] = load16(weight + chunk * kChunk);
        b[k] = load16(bias + chunk * kChunk);
    }

    float s[kChunksPerThread][kChunk];
    float sum[1] = {0.0f};
#pragma unroll
    for (int k = 0; k < kChunksPerThread; ++k) {
        const int chunk = threadIdx.x + k * blockDim.x;
        if (!row_valid || chunk >= chunks) {
#pragma unroll
            for (int j = 0; j < kChunk; ++j) s[k][j] = 0.0f;
            continue;
        }
        const size_t offset = row_offset + size_t(chunk) * kChunk;
        const uint32_t keep = dropout_keep_bits(drop, keep_threshold, offset);
#pragma unroll
        for (int j = 0; j < kChunk; ++j) {
            const float dropped = (keep >> j) & 1u ? x_raw[k].get(j) * keep_scale : 0.0f;
            s[k][j] = round_to<R>(residual_raw[k].get(j) + dropped);
            sum[0] += s[k][j];
        }
        store_chunk(residual_out + offset, s[k]);
    }
    team_sum(sum, warps_per_team, exchange[0]);
    const float mean = sum[0] * inv_C;

    float squares[1] = {0.0f};
#pragma unroll
    for (int k = 0; k < kChunksPerThread; ++k) {
        if (threadIdx.x + k * blockDim.x >= chunks) continue;  // idle slots would add mean^2
#pragma unroll
        for (int j = 0; j < kChunk; ++j) squares[0] += (s[k][j] - mean) * (s[k][j] - mean);
    }
    team_sum(squares, warps_per_team, exchange[1]);
    const float rstd = rsqrtf(squares[0] * inv_C + eps);
    if (row_valid && threadIdx.x == 0) {
        if (mean_out != nullptr) mean_out[row] = mean;
        if (rstd_out != nullptr) rstd_out[row] = rstd;
    }

#pragma unroll
    for (int k = 0; k < kChunksPerThread; ++k) {
        const int chunk = threadIdx.x + k * blockDim.x;
        if (!row_valid || chunk >= chunks) continue;
        float out[kChunk];
#pragma unroll
        for (int j = 0; j < kChunk; ++j) out[j] = (s[k][j] - mean) * rstd * w[k].get(j) + b[k].get(j);
        store_chunk(ln_out + row_offset + size_t(chunk) * kChunk, out);
    }
}

// ---------------------------------------------------------------------------------------------
// Backward: each team walks rows_per_team rows (interleaved with the block's other teams), then
// the block reduces its parameter-gradient partials into `components` rows of `partials`:
// dweight, dbias and, when components == 3, the column sums of dx.
//
// d_sum_out may alias d_sum_addend (pre-norm, in place) or dy_extra (post-norm): each thread
// reads all of its elements of a row before writing any of them, and no other thread touches
// them.

template <typename T, typename R, int kChunksPerThread>
__global__ void __launch_bounds__(kMaxBlockThreads)
    layernorm_backward_kernel(T* dx, R* d_sum_out, float* partials /*(gridDim.x, components, C)*/, const T* dy,
                              const T* dy_extra, const R* d_sum_addend, const R* saved_sum, const float* mean,
                              const float* rstd, const T* weight, DropoutParams drop, int N, int C,
                              int rows_per_team, int components) {
    drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
    // While walking rows: the column sums of dx, each thread its own slots (registers are full: a
    // third accumulator array spills at two chunks per thread). The fixed stride makes every slot
    // a constant offset from one address and keeps a warp's accesses on distinct banks.
    // Afterwards: the teams' (blockDim.y, blockDim.x, kChunk) exchange of dweight and dbias.
    __shared__ float shared_sums[kChunksPerThread * kChunk * kMaxBlockThreads];
    float* const my_dx_sums = shared_sums + threadIdx.y * blockDim.x + threadIdx.x;  // stride kMaxBlockThreads
    __shared__ float exchange[2][kMaxBlockThreads / 32 * 2];
    const int warps_per_team = blockDim.x / 32;
    const int chunks = C / kChunk;
    const float keep_scale = drop.scale();
    const uint32_t keep_threshold = dropout_keep_threshold(drop);
    const float inv_C = 1.0f / C;

    const bool sum_dx = components == 3;
    float dweight_acc[kChunksPerThread][kChunk], dbias_acc[kChunksPerThread][kChunk];
#pragma unroll
    for (int k = 0; k < kChunksPerThread; ++k) {
#pragma unroll
        for (int j = 0; j < kChunk; ++j) {
            dweight_acc[k][j] = dbias_acc[k][j] = 0.0f;
            if (sum_dx) my_dx_sums[(k * kChunk + j) * kMaxBlockThreads] = 0.0f;
        }
    }

    const int block_first_row = blockIdx.x * rows_per_team * blockDim.y;
    for (int step = 0; step < rows_per_team; ++step) {  // same trip count for every team: barriers
        const int row = block_first_row + step * blockDim.y + threadIdx.y;
        const bool row_valid = row < N;
        const size_t row_offset = size_t(row) * C;
        const float row_mean = row_valid ? mean[row] : 0.0f;
        const float row_rstd = row_valid ? rstd[row] : 0.0f;

        // All loads of the row first, so they are in flight together. The weights are loaded again
        // for every row (from L1) rather than held: keeping them across rows costs the registers
        // that the dx sums' address needs, and at two chunks per thread ptxas then spills.
        Vec16<T> w[kChunksPerThread];
        float dy_row[kChunksPerThread][kChunk], xhat[kChunksPerThread][kChunk], addend[kChunksPerThread][kChunk];
        float sums[2] = {0.0f, 0.0f};  // sum(g), sum(g * xhat)
#pragma unroll
        for (int k = 0; k < kChunksPerThread; ++k) {
            const int chunk = threadIdx.x + k * blockDim.x;
            const bool valid = row_valid && chunk < chunks;
            const size_t offset = row_offset + size_t(chunk) * kChunk;
            float extra[kChunk], stored_sum[kChunk];
#pragma unroll
            for (int j = 0; j < kChunk; ++j) {
                w[k].set(j, 0.0f);  // idle slots: g = 0 keeps them out of the row sums
                dy_row[k][j] = extra[j] = stored_sum[j] = addend[k][j] = 0.0f;
            }
            if (chunk < chunks) w[k] = load16(weight + chunk * kChunk);
            if (valid) {
                load_chunk(dy + offset, dy_row[k]);
                if (dy_extra != nullptr) load_chunk(dy_extra + offset, extra);
                load_chunk(saved_sum + offset, stored_sum);
                if (d_sum_addend != nullptr) load_chunk(d_sum_addend + offset, addend[k]);
            }
#pragma unroll
            for (int j = 0; j < kChunk; ++j) {
                dy_row[k][j] += extra[j];
                xhat[k][j] = (stored_sum[j] - row_mean) * row_rstd;
                const float g = dy_row[k][j] * w[k].get(j);
                sums[0] += g;
                sums[1] += g * xhat[k][j];
            }
        }
        team_sum(sums, warps_per_team, exchange[step & 1]);
        const float mean_g = sums[0] * inv_C, mean_g_xhat = sums[1] * inv_C;

#pragma unroll
        for (int k = 0; k < kChunksPerThread; ++k) {
            const int chunk = threadIdx.x + k * blockDim.x;
            if (!row_valid || chunk >= chunks) continue;
            const size_t offset = row_offset + size_t(chunk) * kChunk;
            const uint32_t keep = dropout_keep_bits(drop, keep_threshold, offset);
            float d_sum[kChunk], dx_chunk[kChunk];
#pragma unroll
            for (int j = 0; j < kChunk; ++j) {
                const float g = dy_row[k][j] * w[k].get(j);
                d_sum[j] = row_rstd * (g - mean_g - xhat[k][j] * mean_g_xhat) + addend[k][j];
                // Rounded as stored: the sum is that of the tensor the projection's backward reads.
                dx_chunk[j] = (keep >> j) & 1u ? round_to<T>(d_sum[j] * keep_scale) : 0.0f;
                dweight_acc[k][j] += dy_row[k][j] * xhat[k][j];
                dbias_acc[k][j] += dy_row[k][j];
                if (sum_dx) my_dx_sums[(k * kChunk + j) * kMaxBlockThreads] += dx_chunk[j];
            }
            if (d_sum_out != nullptr) store_chunk(d_sum_out + offset, d_sum);
            store_chunk(dx + offset, dx_chunk);
        }
    }

    // Teams -> one partial row per component and block, column slot by column slot, in team
    // order: the dx sums first (already in shared memory), then dweight and dbias through it.
    const int slot_columns = blockDim.x * kChunk;  // columns covered by one chunk slot of the team
    float* block_partials = partials + size_t(blockIdx.x) * components * C;
    if (sum_dx) {  // uniform over the block: the barriers stay matched
        __syncthreads();
#pragma unroll
        for (int k = 0; k < kChunksPerThread; ++k) {
            store_team_sums(block_partials + 2 * C, k, slot_columns, C, blockDim.x, [&](int i) {
                return shared_sums + (k * kChunk + i % kChunk) * kMaxBlockThreads + i / kChunk;
            });
        }
    }
    store_block_partial_row(block_partials, dweight_acc, C, shared_sums);
    store_block_partial_row(block_partials + C, dbias_acc, C, shared_sums);
}

// dweight[c] += sum over blocks of partials[b][0][c]; dbias likewise from partials[b][1][c], and
// d_sublayer_bias from partials[b][2][c] when components == 3 (= instead of +=: GradWrite::store).
// Thread (x, y) sums blocks y, y + 32, ... of one column; the 32 results are summed in order.
constexpr int kReduceRows = 32;
__global__ void __launch_bounds__(32 * kReduceRows)
    layernorm_param_grads_reduce_kernel(float* dweight, float* dbias, float* d_sublayer_bias, const float* partials,
                                        int blocks, int components, int C, GradWrite write) {
    __shared__ float column_sums[kReduceRows][33];  // +1: no bank conflicts on the transposed read
    const int column = blockIdx.x * 32 + threadIdx.x;  // over (components, C): dweight, dbias, d_sublayer_bias
    const bool valid = column < components * C;
    float sum = 0.0f;
    if (valid) {
#pragma unroll 4
        for (int b = threadIdx.y; b < blocks; b += kReduceRows) sum += partials[size_t(b) * components * C + column];
    }
    column_sums[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && valid) {
        float total = 0.0f;
        for (int y = 0; y < kReduceRows; ++y) total += column_sums[y][threadIdx.x];
        float* target = column < C ? dweight + column : column < 2 * C ? dbias + (column - C)
                                                                      : d_sublayer_bias + (column - 2 * C);
        write_gradient(target, total, write);
    }
}

// ---------------------------------------------------------------------------------------------
// Launchers with an explicit launch shape (the public launchers below pass the default; the
// dev/cuda workbench sweeps alternatives).

// Calls body(std::integral_constant<int, K>{}) for K = chunks_per_thread, 1 <= K <= kMax.
template <int kMax, typename Body> void dispatch_chunks_per_thread(int chunks_per_thread, Body&& body) {
    static_assert(kMax >= 1 && kMax <= 4, "instantiated for 1..4 chunks per thread");
    switch (chunks_per_thread) {
        case 1: body(std::integral_constant<int, 1>{}); break;
        case 2: if constexpr (kMax >= 2) { body(std::integral_constant<int, 2>{}); break; } [[fallthrough]];
        case 3: if constexpr (kMax >= 3) { body(std::integral_constant<int, 3>{}); break; } [[fallthrough]];
        case 4: if constexpr (kMax >= 4) { body(std::integral_constant<int, 4>{}); break; } [[fallthrough]];
        default: REQUIRE(false, "LayerNorm: %d chunks per thread is not instantiated (1..%d)", chunks_per_thread, kMax);
    }
}

// The trainer's backward kernel (the public launchers' choice; dev/cuda/layernorm times every
// BackwardKernel side by side). H100, 2026-12-07, N = 32768 rows, with a 16-bit residual: the
// prefetching kernel at about 512 threads a block moves 79-86% of copy bandwidth at C = 768, 1280
// and 2048 and 68% at 1600, where the row team moved 51-67%; with an fp32 residual 85-89% against
// 73-86%; at C = 2560 (one team a block) the two are within 2%.
constexpr BackwardKernel kDefaultBackwardKernel = BackwardKernel::prefetch;
// The prefetching kernels' block size: the most rows in flight per SM that the sweep rewarded.
constexpr int kPrefetchBackwardBlockThreads = 512;

// The row-team layout each backward kernel is written for, at width C.
inline RowTeamShape backward_row_team_shape(BackwardKernel kernel, int C) {
    return kernel == BackwardKernel::row_team ? row_team_shape(C, kBackwardMaxChunksPerThread)
                                              : prefetch_row_team_shape(C, kPrefetchBackwardBlockThreads);
}
template <typename T, typename R> size_t backward_dynamic_smem_bytes(BackwardKernel kernel, const RowTeamShape& shape) {
    if (kernel == BackwardKernel::row_team) return 0;
    const size_t exchange = size_t(shape.block_threads()) * kChunk * sizeof(float);
    const size_t stages = size_t(backward_stages(kernel)) * shape.block_threads() *
                          staged_row_bytes_per_thread<T, R>(shape.chunks_per_thread);
    return std::max(exchange, stages);
}
constexpr size_t kSmemWithoutAsking = 48 * 1024;  // dynamic shared memory any kernel may take
// Whether `kernel` at `shape` fits the current GPU's shared memory for one block.
template <typename T, typename R> bool backward_fits(BackwardKernel kernel, const RowTeamShape& shape) {
    int device = 0, optin_bytes = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return backward_dynamic_smem_bytes<T, R>(kernel, shape) <= size_t(optin_bytes);
}

// Calls body(the kernel function) for `kernel` instantiated at chunks_per_thread.
template <typename T, typename R, typename Body>
void with_backward_kernel(BackwardKernel kernel, int chunks_per_thread, Body&& body) {
    dispatch_chunks_per_thread<kBackwardMaxChunksPerThread>(chunks_per_thread, [&](auto chunks) {
        constexpr int K = decltype(chunks)::value;
        switch (kernel) {
            case BackwardKernel::row_team: body(layernorm_backward_kernel<T, R, K>); return;
            case BackwardKernel::prefetch: body(prefetching_layernorm_backward_kernel<T, R, K, 1, 0>); return;
            case BackwardKernel::prefetch_pairs: body(prefetching_layernorm_backward_kernel<T, R, K, 2, 0>); return;
            case BackwardKernel::staged2: body(prefetching_layernorm_backward_kernel<T, R, K, 1, 2>); return;
            case BackwardKernel::staged3: body(prefetching_layernorm_backward_kernel<T, R, K, 1, 3>); return;
            case BackwardKernel::staged4: body(prefetching_layernorm_backward_kernel<T, R, K, 1, 4>); return;
        }
        REQUIRE(false, "LayerNorm backward: unknown kernel %d", int(kernel));
    });
}

// The default backward grid is one full wave: as many blocks as the GPU keeps resident at once.
// A fixed block count leaves a partial last wave for some widths (block sizes follow the row
// team shape), which idles most SMs for a whole round; the per-block partial rows of a full wave
// stay a few percent of the traffic. (The README's LayerNorm section has the sweep.)
template <typename T, typename R> int backward_wave_warps(BackwardKernel kernel, const RowTeamShape& shape) {
    int device = 0, sms = 0, blocks_per_sm = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    const size_t smem_bytes = backward_dynamic_smem_bytes<T, R>(kernel, shape);
    with_backward_kernel<T, R>(kernel, shape.chunks_per_thread, [&](auto kernel_function) {
        if (smem_bytes > kSmemWithoutAsking) allow_dynamic_smem(kernel_function, smem_bytes);
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, kernel_function,
                                                                 shape.block_threads(), smem_bytes));
    });
    return std::max(1, blocks_per_sm) * sms * shape.block_threads() / 32;
}
template <typename T, typename R>
BackwardPlan default_backward_plan(int N, int C, BackwardKernel kernel = kDefaultBackwardKernel) {
    const RowTeamShape shape = backward_row_team_shape(kernel, C);
    return backward_plan(kernel, N, shape, backward_wave_warps<T, R>(kernel, shape));
}

inline void check_row_shape(int N, int C) {
    REQUIRE(N > 0, "LayerNorm: N = %d rows; need at least one row", N);
    REQUIRE(C % kChunk == 0 && C >= kChunk && C <= kMaxC,
            "LayerNorm: C = %d; the fused LayerNorm supports hidden sizes that are multiples of 8 from 8 to %d",
            C, kMaxC);
}
inline void check_shape_fits(const RowTeamShape& shape, int C, int max_chunks_per_thread) {
    REQUIRE(shape.chunks_per_thread >= 1 && shape.chunks_per_thread <= max_chunks_per_thread &&
                shape.teams_per_block >= 1 && shape.block_threads() <= kMaxBlockThreads &&
                32 * shape.warps_per_team * shape.chunks_per_thread * kChunk >= C,
            "LayerNorm: launch shape (%d warps x %d chunks per thread, %d teams) cannot cover C = %d",
            shape.warps_per_team, shape.chunks_per_thread, shape.teams_per_block, C);
}
inline void check_dropout(const DropoutParams& drop) {
    REQUIRE(drop.p >= 0.0f && drop.p < 1.0f, "LayerNorm: dropout probability %g must be in [0, 1)", drop.p);
}

template <typename T, typename R>
void launch_forward(const RowTeamShape& shape, T* ln_out, R* residual_out, float* mean, float* rstd, const T* x,
                    const R* residual_in, const T* weight, const T* bias, DropoutParams drop, float eps, int N,
                    int C, cudaStream_t stream) {
    check_row_shape(N, C);
    check_shape_fits(shape, C, kForwardMaxChunksPerThread);
    check_dropout(drop);
    REQUIRE(ln_out && residual_out && x && weight && bias, "LayerNorm forward: ln_out, residual_out, x, weight "
            "and bias must be non-null (residual_in, mean and rstd may be null)");
    REQUIRE(is_aligned16(ln_out) && is_aligned16(residual_out) && is_aligned16(x) && is_aligned16(weight) &&
                is_aligned16(bias) && is_aligned16(residual_in),
            "LayerNorm forward: every tensor must be 16-byte aligned (16-byte vector access)");
    const dim3 block(32 * shape.warps_per_team, shape.teams_per_block);
    const int grid = ceil_div(N, shape.teams_per_block);
    dispatch_chunks_per_thread<kForwardMaxChunksPerThread>(shape.chunks_per_thread, [&](auto chunks_per_thread) {
        dropout_residual_layernorm_forward_kernel<T, R, decltype(chunks_per_thread)::value>
            <<<grid, block, 0, stream>>>(ln_out, residual_out, mean, rstd, x, residual_in, weight, bias, drop, eps,
                                         N, C);
    });
    CUDA_CHECK_LAUNCH();
}

// The common backward of both block forms (see the kernel for the aliasing rules).
template <typename T, typename R>
void launch_backward(const BackwardPlan& plan, T* dx, R* d_sum_out, float* dweight, float* dbias,
                     float* d_sublayer_bias, const T* dy, const T* dy_extra, const R* d_sum_addend,
                     const R* saved_sum, const float* mean, const float* rstd, const T* weight, DropoutParams drop,
                     int N, int C, GradWrite write, float* scratch, cudaStream_t stream) {
    check_row_shape(N, C);
    check_shape_fits(plan.shape, C, kBackwardMaxChunksPerThread);
    REQUIRE(plan.kernel == BackwardKernel::row_team || plan.shape.teams_per_block <= kMaxNamedBarrierTeams,
            "LayerNorm backward: %d teams per block; the prefetching kernel gives each team one of %d barriers",
            plan.shape.teams_per_block, kMaxNamedBarrierTeams);
    REQUIRE(dy_extra == nullptr || (d_sum_addend == nullptr && std::is_same_v<T, R>),
            "LayerNorm backward: the extra output gradient (post-norm) comes without a residual-gradient addend "
            "(pre-norm) and only with R == T");
    REQUIRE(plan.rows_per_team >= 1 && size_t(plan.blocks) * plan.rows_per_team * plan.shape.teams_per_block >= size_t(N),
            "LayerNorm backward: plan of %d blocks x %d teams x %d rows does not cover N = %d", plan.blocks,
            plan.shape.teams_per_block, plan.rows_per_team, N);
    check_dropout(drop);
    REQUIRE(dx && dweight && dbias && dy && saved_sum && mean && rstd && weight && scratch,
            "LayerNorm backward: dx, dweight, dbias, the output gradient, the saved sum, mean, rstd, weight and "
            "scratch must be non-null");
    REQUIRE(is_aligned16(dx) && is_aligned16(d_sum_out) && is_aligned16(dy) && is_aligned16(dy_extra) &&
                is_aligned16(d_sum_addend) && is_aligned16(saved_sum) && is_aligned16(weight),
            "LayerNorm backward: every (N, C) tensor and the weight must be 16-byte aligned");
    // Past 48 KiB a kernel must ask for its shared memory (the staged kernels), within the GPU's limit.
    const size_t smem_bytes = backward_dynamic_smem_bytes<T, R>(plan.kernel, plan.shape);
    const bool asks = smem_bytes > kSmemWithoutAsking;
    const bool fits = !asks || backward_fits<T, R>(plan.kernel, plan.shape);
    REQUIRE(fits, "LayerNorm backward: %zu bytes of shared memory a block (kernel %d, %d threads) exceed this GPU's limit",
            smem_bytes, int(plan.kernel), plan.shape.block_threads());
    const dim3 block(32 * plan.shape.warps_per_team, plan.shape.teams_per_block);
    const int components = d_sublayer_bias != nullptr ? 3 : 2;
    with_backward_kernel<T, R>(plan.kernel, plan.shape.chunks_per_thread, [&](auto kernel_function) {
        if (asks) allow_dynamic_smem(kernel_function, smem_bytes);
        kernel_function<<<plan.blocks, block, smem_bytes, stream>>>(
            dx, d_sum_out, scratch, dy, dy_extra, d_sum_addend, saved_sum, mean, rstd, weight, drop, N, C,
            plan.rows_per_team, components);
    });
    CUDA_CHECK_LAUNCH();
    layernorm_param_grads_reduce_kernel<<<ceil_div(components * C, 32), dim3(32, kReduceRows), 0, stream>>>(
        dweight, dbias, d_sublayer_bias, scratch, plan.blocks, components, C, write);
    CUDA_CHECK_LAUNCH();
}

}  // namespace layernorm_detail

// ---------------------------------------------------------------------------------------------
// Public launchers (the trainer's contract). T in {__nv_bfloat16, __half}; R in {T, float}.
// N rows of C elements, C a multiple of 8 up to 8192; tensors 16-byte aligned. The dropout
// element index is row * C + col of x.

// Floats of scratch the backward launchers <T, R> need for C and any row count up to N on the
// current GPU (the block count is not monotonic in N, so this is the bound
// min(ceil(N / teams), ceil(target / teams))).
template <typename T, typename R> size_t layernorm_backward_scratch_floats(int N, int C) {
    using namespace layernorm_detail;
    check_row_shape(N, C);
    const RowTeamShape shape = backward_row_team_shape(kDefaultBackwardKernel, C);
    const int target_teams = std::max(1, backward_wave_warps<T, R>(kDefaultBackwardKernel, shape) / shape.warps_per_team);
    const int max_blocks = std::min(ceil_div(N, shape.teams_per_block), ceil_div(target_teams, shape.teams_per_block));
    return size_t(max_blocks) * kMaxComponents * C;
}

// Pre-norm forward: residual_out = residual_in + dropout(x); ln_out = LayerNorm(residual_out).
// mean and rstd may be null when no backward follows.
template <typename T, typename R>
void fused_dropout_residual_layernorm_forward(T* ln_out /*(N,C)*/, R* residual_out /*(N,C)*/, float* mean /*(N)*/,
                                              float* rstd /*(N)*/, const T* x /*(N,C)*/,
                                              const R* residual_in /*(N,C) or nullptr = zeros*/,
                                              const T* weight /*(C)*/, const T* bias /*(C)*/, DropoutParams drop,
                                              float eps, int N, int C, cudaStream_t stream) {
    layernorm_detail::launch_forward(
        layernorm_detail::row_team_shape(C, layernorm_detail::kForwardMaxChunksPerThread), ln_out, residual_out,
        mean, rstd, x, residual_in, weight, bias, drop, eps, N, C, stream);
}

// Pre-norm backward: d_sum = d_residual + LayerNorm_backward(d_ln_out); d_residual := d_sum
// (in place); dx = keep * d_sum / (1 - p); dweight, dbias +=; d_sublayer_bias += column sums of
// dx (the bias gradient of the linear layer whose output x was; nullptr skips it). The three
// parameter gradients are stored (=) instead with `write` GradWrite::store.
template <typename T, typename R>
void fused_dropout_residual_layernorm_backward(
    T* dx /*(N,C)*/,
    R* d_residual /*(N,C) in: grad of residual_out (ignored if d_residual_is_zero); out: grad of residual_in*/,
    float* dweight /*(C) +=*/, float* dbias /*(C) +=*/, float* d_sublayer_bias /*(C) += or nullptr*/,
    const T* d_ln_out /*(N,C)*/, const R* residual_out /*(N,C)*/, const float* mean /*(N)*/,
    const float* rstd /*(N)*/, const T* weight /*(C)*/, DropoutParams drop, bool d_residual_is_zero, int N, int C,
    GradWrite write, float* scratch /*layernorm_backward_scratch_floats<T, R>(N or more, C)*/, cudaStream_t stream) {
    REQUIRE(d_residual != nullptr, "LayerNorm backward: d_residual receives the residual gradient; it cannot be null");
    layernorm_detail::launch_backward<T, R>(layernorm_detail::default_backward_plan<T, R>(N, C), dx, d_residual, dweight,
                                            dbias, d_sublayer_bias, d_ln_out, nullptr,
                                            d_residual_is_zero ? nullptr : d_residual, residual_out, mean, rstd,
                                            weight, drop, N, C, write, scratch, stream);
}

// Post-norm forward: sum_out = residual_in + dropout(x); out = LayerNorm(sum_out).
template <typename T>
void fused_dropout_residual_layernorm_postnorm_forward(T* out /*(N,C)*/, T* sum_out /*(N,C) saved for backward*/,
                                                       float* mean /*(N)*/, float* rstd /*(N)*/,
                                                       const T* x /*(N,C)*/,
                                                       const T* residual_in /*(N,C) or nullptr = zeros*/,
                                                       const T* weight /*(C)*/, const T* bias /*(C)*/,
                                                       DropoutParams drop, float eps, int N, int C,
                                                       cudaStream_t stream) {
    fused_dropout_residual_layernorm_forward<T, T>(out, sum_out, mean, rstd, x, residual_in, weight, bias, drop, eps,
                                                   N, C, stream);
}

// Post-norm backward: d_sum = LayerNorm_backward(d_out + d_out_extra); d_residual_in := d_sum;
// dx = keep * d_sum / (1 - p); dweight, dbias +=; d_sublayer_bias += column sums of dx (as in
// pre-norm; nullptr skips it; = instead of += with `write` GradWrite::store).
template <typename T>
void fused_dropout_residual_layernorm_postnorm_backward(
    T* dx /*(N,C)*/, T* d_residual_in /*(N,C) or nullptr (residual_in was null); may alias d_out_extra or d_out*/,
    float* dweight /*(C) +=*/, float* dbias /*(C) +=*/, float* d_sublayer_bias /*(C) += or nullptr*/,
    const T* d_out /*(N,C)*/,
    const T* d_out_extra /*(N,C) or nullptr: gradient reaching out through the next residual path*/,
    const T* sum_out /*(N,C)*/, const float* mean /*(N)*/, const float* rstd /*(N)*/, const T* weight /*(C)*/,
    DropoutParams drop, int N, int C, GradWrite write,
    float* scratch /*layernorm_backward_scratch_floats<T, T>(N or more, C)*/, cudaStream_t stream) {
    layernorm_detail::launch_backward<T, T>(layernorm_detail::default_backward_plan<T, T>(N, C), dx, d_residual_in,
                                            dweight, dbias, d_sublayer_bias, d_out, d_out_extra, nullptr, sum_out,
                                            mean, rstd, weight, drop, N, C, write, scratch, stream);
}
