// Attention forward on Hopper (sm_90a; AttentionKernel::Hopper), after FlashAttention-3: tiles
// copied by the tensor memory accelerator (TMA), matrix products by asynchronous warpgroup
// multiplies (wgmma), a producer warp and consumer warpgroups that meet on mbarriers. Same
// function, layouts, lse and dropout mask as kernels/attention.cuh describes; the backward is in
// kernels/attention_hopper_backward.cuh. Tiles of head dim 64 and 128; head dims 80 and 96 run on
// the 128-wide tiles (tile_head_dim). Primitives in kernels/attention_hopper_primitives.cuh.
//
// Block: 128 queries, three warpgroups. Warpgroup 0 is the producer: one thread loads the Q
// tile once and K/V tiles of 128 keys into a ring of kStages shared-memory stages; a stage's
// "full" mbarrier completes when its bytes have landed, its "empty" mbarrier when every consumer
// warp has finished reading it. Warpgroups 1 and 2 are consumers of 64 query rows each; per key
// tile:
//   S = Q K^T      wgmma from shared memory, both operands K-major;
//   online softmax in registers, exp2 with the softmax scale folded in (one FFMA + EX2 per score);
//                  the causal mask only on tiles that cross the diagonal of the warpgroup's rows;
//                  dropout zeroes probabilities after they entered the row sum (as mma.sync does);
//   O += P V       wgmma with P from registers (S's accumulators are, pair of n8 tiles by pair,
//                  the A fragments of P: tensor_cores::c_pair_to_a) and V from shared memory,
//                  N-major (its rows are keys, its columns head dims).
// setmaxnreg hands the producer's registers to the consumers, whose S, P and O fragments need
// about 200 per thread at HD = 128. At the end each consumer stages O in its own Q rows (same
// swizzled layout) and one thread stores it with TMA.
//
// Shared-memory tiles are in the 128-byte swizzle (attention_hopper_primitives.cuh) that TMA
// writes and wgmma reads without bank conflicts. Partial tiles: TMA fills rows past T with
// zeros (their scores are masked as causal: such keys follow every valid query) and the output
// store skips them, so any T works.

#pragma once

#include <type_traits>

#include "kernels/attention_hopper_primitives.cuh"
#include "kernels/attention_mma_fragments.cuh"

namespace attention_detail {
namespace hopper {

// Block shape and schedule. CONSUMERS: consumer warpgroups of 64 queries each. STAGES: K/V
// tiles in flight. PIPELINED: each consumer issues S_j = Q K_j^T and O += P_{j-1} V_{j-1}
// together and computes softmax(S_j) while the second runs (FlashAttention-3's intra-warpgroup
// overlap), at the price of holding S and P at once; else one tile at a time (both multiplies,
// then the softmax, in turn).
template <int HD, int STAGES, bool PIPELINED, int CONSUMERS = 2>
struct ForwardShape : WarpSpecializedBlock<CONSUMERS> {
    static_assert(HD == 64 || HD == 128, "the wgmma forward supports head dims 64 and 128");
    static_assert(CONSUMERS == 2 || CONSUMERS == 3, "two or three consumer warpgroups");
    static constexpr int kQueries = 64 * CONSUMERS;           // per block
    static constexpr int kKeys = 128;                         // per K/V tile
    static constexpr int kStages = STAGES;
    static constexpr bool kPipelined = PIPELINED;
    // Shared memory (bytes from a 1024-byte aligned base): Q, K stages, V stages, barriers.
    static constexpr int kQBytes = kQueries * HD * 2, kTileBytes = kKeys * HD * 2;
    static constexpr int kKOffset = kQBytes, kVOffset = kKOffset + kStages * kTileBytes;
    static constexpr int kBarrierOffset = kVOffset + kStages * kTileBytes;
    static constexpr int kBarriers = 1 + 2 * kStages;  // Q full, then full and empty per stage
    static constexpr size_t kSharedBytes = kBarrierOffset + 8 * kBarriers + 1024;  // + alignment slack
    static_assert(kSharedBytes <= 227 * 1024, "shared memory per block");
};

// Production shape per head dim, the sweep's fastest (the workbench times the others): at HD 64
// the tile-at-a-time schedule wins, its S and P fit without the pipelined one's register
// pressure; at HD 128 a third K/V stage keeps the pipelined consumers fed.
template <int HD>
using ForwardConfig = std::conditional_t<HD == 64, ForwardShape<64, 2, false>, ForwardShape<HD, 3, true>>;

// Shared-memory addresses of one block's tiles and barriers.
template <typename C> struct ForwardSmem {
    uint32_t base;
    __device__ uint32_t q() const { return base; }
    __device__ uint32_t k(int stage) const { return base + C::kKOffset + stage * C::kTileBytes; }
    __device__ uint32_t v(int stage) const { return base + C::kVOffset + stage * C::kTileBytes; }
    __device__ uint32_t q_full() const { return base + C::kBarrierOffset; }
    __device__ uint32_t full(int stage) const { return q_full() + 8 * (1 + stage); }
    __device__ uint32_t empty(int stage) const { return q_full() + 8 * (1 + C::kStages + stage); }
};

// Issues the TMA copy of rows row0 .. row0 + tile_rows - 1 of `slot` (batch b) of the tensor `map`
// describes (boxes of tile_rows rows) into the swizzled tile at `tile`, one box per 64-column block,
// completing on `barrier`.
template <int HD>
__device__ __forceinline__ void tma_load_rows(uint32_t tile, int tile_rows, const CUtensorMap& map, int row0, int slot,
                                              int b, uint32_t barrier) {
#pragma unroll
    for (int c = 0; c < HD / kColumnsPerBlock; ++c)
        tma_load_4d(tile + c * tile_rows * kSwizzleBytes, map, c * kColumnsPerBlock, row0, slot, b, barrier);
}

// Initialises a block's mbarriers (thread 0; then every thread syncs): `resident_full`, which the
// tiles loaded once complete (one arrival plus their bytes), and per stage of the ring "full"
// (full_arrivals) and "empty" (one arrival per consumer warp). `smem` has full(stage), empty(stage).
template <typename C, typename Smem>
__device__ __forceinline__ void init_barriers(const Smem& smem, uint32_t resident_full, int full_arrivals) {
    if (threadIdx.x == 0) {
        mbarrier_init(resident_full, 1);
        for (int stage = 0; stage < C::kStages; ++stage) {
            mbarrier_init(smem.full(stage), full_arrivals);
            mbarrier_init(smem.empty(stage), 4 * C::kConsumers);
        }
        mbarrier_init_fence();
    }
    __syncthreads();
}

// Producer (one thread) of the kernels that stream key tiles (forward, dQ): K and V tile j into
// stage j % kStages once the consumers have released the tile that used it before. `smem` has
// k(stage), v(stage) and the stage's full and empty barriers.
template <int HD, typename C, typename Smem>
__device__ __forceinline__ void stream_key_tiles(const Smem& smem, const CUtensorMap& kv_map, int h, int b, int NH,
                                                 int num_k_tiles) {
    for (int j = 0; j < num_k_tiles; ++j) {
        const int stage = j % C::kStages, use = j / C::kStages;
        if (use > 0) mbarrier_wait(smem.empty(stage), (use - 1) & 1);
        mbarrier_arrive_expect_bytes(smem.full(stage), 2 * C::kTileBytes);
        tma_load_rows<HD>(smem.k(stage), C::kKeys, kv_map, j * C::kKeys, NH + h, b, smem.full(stage));
        tma_load_rows<HD>(smem.v(stage), C::kKeys, kv_map, j * C::kKeys, 2 * NH + h, b, smem.full(stage));
    }
}

template <int R> __device__ __forceinline__ void keep_until_here(const uint32_t (&x)[R][4]) {
#pragma unroll
    for (int i = 0; i < R; ++i) asm volatile("" ::"r"(x[i][0]), "r"(x[i][1]), "r"(x[i][2]), "r"(x[i][3]) : "memory");
}

// A warpgroup's 64 x HD accumulator rows (wgmma layout; rows g and g + 8 of each warp times
// scale[0] and scale[1]) to global rows row0 .. row0 + 63 of `slot`, batch b, of the tensor `map`
// describes (boxes of 64 rows), through a TMA store. The rows are staged in shared memory at
// `rows`, the warpgroup's first row in column block 0 of a swizzled tile of `tile_rows` rows
// (1024-byte aligned), which the warpgroup's own multiplies must have finished reading. Rows past
// the tensor's end are clipped by the store. `barrier_id`: a named barrier of this warpgroup.
template <typename T, int HD>
__device__ __forceinline__ void store_warpgroup_rows(const float (&acc)[HD / 8][4], const float (&scale)[2],
                                                     uint32_t rows, int tile_rows, const CUtensorMap& map, int row0,
                                                     int slot, int b, int barrier_id) {
    const int thread = threadIdx.x % 128, warp = thread / 32, lane = thread % 32, g = lane / 4, t = lane % 4;
    named_barrier_sync(barrier_id, 128);
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    unsigned char* staged = smem_raw + (rows - shared_address(smem_raw));
#pragma unroll
    for (int dt = 0; dt < HD / 8; ++dt)
#pragma unroll
        for (int i = 0; i < 2; ++i)
            *reinterpret_cast<uint32_t*>(staged + swizzled_offset(tile_rows, 16 * warp + g + 8 * i, 8 * dt + 2 * t)) =
                tensor_cores::pack_pair<T>(acc[dt][2 * i] * scale[i], acc[dt][2 * i + 1] * scale[i]);
    fence_shared_for_copy_engine();
    named_barrier_sync(barrier_id, 128);
    if (thread == 0) {
#pragma unroll
        for (int c = 0; c < HD / kColumnsPerBlock; ++c)
            tma_store_4d(map, c * kColumnsPerBlock, row0, slot, b, rows + c * tile_rows * kSwizzleBytes);
        tma_store_commit_and_wait();
    }
}

// One consumer warpgroup's rows, q0 + 64 consumer .. + 63, and their running softmax state.
template <typename T, int HD, typename C> struct ConsumerRows {
    static constexpr int NK = C::kKeys / 8;  // n8 tiles of S
    static constexpr int ND = HD / 8;        // n8 tiles of O
    const ForwardSmem<C>& smem;
    const DropoutParams& drop;
    int lane, t, wg_q0, row[2];
    uint32_t q_rows;      // this warpgroup's rows in column block 0 of Q; 1024-byte aligned
    float scale_log2;
    AttentionDropoutRate drop_rate;
    uint64_t drop_call0;
    float s[NK][4], o[ND][4];
    uint32_t p[NK / 2][4];
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};  // row_sum: this lane's columns

    __device__ ConsumerRows(const ForwardSmem<C>& smem_, const DropoutParams& drop_, int consumer, int q0, int h,
                            int b, int seq_len, int NH, float softmax_scale)
        : smem(smem_), drop(drop_) {
        const int thread = threadIdx.x % 128, warp = thread / 32;
        lane = thread % 32;
        t = lane % 4;
        wg_q0 = q0 + 64 * consumer;
        row[0] = wg_q0 + 16 * warp + lane / 4;
        row[1] = row[0] + 8;
        q_rows = smem.q() + consumer * 64 * kSwizzleBytes;
        scale_log2 = softmax_scale * kLog2e;
        drop_rate = attention_dropout_rate(drop.p);
        // This lane's dropout calls in key tile k0 (tensor_cores::tile_keep, row layout, as in the
        // mma.sync forward): row g + 8 (t & 1), cells k0/8 + 2n + (t >> 1).
        drop_call0 = attention_dropout_call(b, h, NH, seq_len, row[0] + 8 * (t & 1), t >> 1);
#pragma unroll
        for (int i = 0; i < NK; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
        for (int i = 0; i < ND; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    }

    // Issues S = Q K^T for the tile in `stage` (one commit group).
    __device__ __forceinline__ void issue_scores(int stage) {
        wgmma_rows_times_rows<T, C::kKeys, HD>(s, q_rows, C::kQueries, smem.k(stage), C::kKeys);
        wgmma_commit();
    }
    // Issues O += P V for the tile in `stage` (one commit group).
    __device__ __forceinline__ void issue_output(int stage) {
        wgmma_fragments_times_rows<T, HD>(o, p, smem.v(stage), C::kKeys);
        wgmma_commit();
    }
    // This warp is done with the tile in `stage` (its multiplies have completed).
    __device__ __forceinline__ void release(int stage) {
        __syncwarp();
        if (lane == 0) mbarrier_arrive(smem.empty(stage));
    }

    // S (completed) of key tile j -> probabilities in s, the running max and sum updated; returns
    // in alpha the factor by which O must be rescaled.
    __device__ __forceinline__ void softmax(int j, float (&alpha)[2]) {
        const int k0 = j * C::kKeys;
        if (k0 + C::kKeys - 1 > wg_q0) {  // the tile crosses the diagonal of some row: causal mask
#pragma unroll
            for (int nt = 0; nt < NK; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (k0 + 8 * nt + 2 * t + (e & 1) > row[e >> 1]) s[nt][e] = -INFINITY;
        }
        // Raw-score units. Key 0, in tile 0, is visible to every row, so the running max is
        // finite from the first tile on (alpha = exp2(-inf) = 0 there).
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float tile_max = row_max[i];
#pragma unroll
            for (int nt = 0; nt < NK; ++nt) tile_max = fmaxf(tile_max, fmaxf(s[nt][2 * i], s[nt][2 * i + 1]));
            tile_max = shuffle_max4(tile_max);
            alpha[i] = exp2f((row_max[i] - tile_max) * scale_log2);
            row_max[i] = tile_max;
            row_sum[i] *= alpha[i];
            const float offset = tile_max * scale_log2;
#pragma unroll
            for (int nt = 0; nt < NK; ++nt)
#pragma unroll
                for (int e = 2 * i; e < 2 * i + 2; ++e) {
                    s[nt][e] = exp2f(fmaf(s[nt][e], scale_log2, -offset));
                    row_sum[i] += s[nt][e];
                }
        }
    }
    __device__ __forceinline__ void rescale_output(const float (&alpha)[2]) {
#pragma unroll
        for (int dt = 0; dt < ND; ++dt) {
            o[dt][0] *= alpha[0];
            o[dt][1] *= alpha[0];
            o[dt][2] *= alpha[1];
            o[dt][3] *= alpha[1];
        }
    }
    // Dropout (after the probabilities entered the row sum; its scale is applied at the end),
    // then P in A fragments.
    __device__ __forceinline__ void probabilities_to_fragments(int j) {
        if (drop.enabled()) {
            const tensor_cores::TileKeep<NK> keep = tensor_cores::tile_keep<NK, 4, 1>(
                drop, drop_rate.threshold, t, [&](int n) { return drop_call0 + j * (C::kKeys / 8) + 2 * n; });
#pragma unroll
            for (int nt = 0; nt < NK; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (!keep(nt, e)) s[nt][e] = 0.0f;
        }
#pragma unroll
        for (int kk = 0; kk < NK / 2; ++kk) tensor_cores::c_pair_to_a<T>(p[kk], s[2 * kk], s[2 * kk + 1]);
    }

    __device__ __forceinline__ void wait_full(int j) { mbarrier_wait(smem.full(j % C::kStages), (j / C::kStages) & 1); }

    // Every key tile, one at a time.
    __device__ __forceinline__ void attend_in_turn(int num_k_tiles) {
        for (int j = 0; j < num_k_tiles; ++j) {
            const int stage = j % C::kStages;
            wait_full(j);
            wgmma_fence();
            issue_scores(stage);
            wgmma_wait<0>();
            keep_in_place(s);
            float alpha[2];
            softmax(j, alpha);
            rescale_output(alpha);
            probabilities_to_fragments(j);
            wgmma_fence();
            issue_output(stage);
            wgmma_wait<0>();
            keep_in_place(o);
            keep_until_here(p);  // wgmma reads P's registers asynchronously
            release(stage);
        }
    }
    // Every key tile, softmax(S_j) overlapping O += P_{j-1} V_{j-1}.
    __device__ __forceinline__ void attend_pipelined(int num_k_tiles) {
        float alpha[2];
        wait_full(0);
        wgmma_fence();
        issue_scores(0);
        wgmma_wait<0>();
        keep_in_place(s);
        softmax(0, alpha);  // O is still zero: no rescale
        probabilities_to_fragments(0);
        for (int j = 1; j < num_k_tiles; ++j) {
            wait_full(j);
            wgmma_fence();
            issue_scores(j % C::kStages);
            issue_output((j - 1) % C::kStages);
            wgmma_wait<1>();  // S_j has landed; O += P_{j-1} V_{j-1} may still run
            keep_in_place(s);
            softmax(j, alpha);
            wgmma_wait<0>();
            keep_in_place(o);
            keep_until_here(p);
            release((j - 1) % C::kStages);
            rescale_output(alpha);
            probabilities_to_fragments(j);
        }
        wgmma_fence();
        issue_output((num_k_tiles - 1) % C::kStages);
        wgmma_wait<0>();
        keep_in_place(o);
        keep_until_here(p);
        release((num_k_tiles - 1) % C::kStages);
    }

    // O / rowsum (and the dropout scale) to out through a TMA store staged in this warpgroup's Q
    // rows, which its own multiplies have finished reading; lse for rows < T.
    __device__ __forceinline__ void finish(const CUtensorMap& out_map, float* lse, int consumer, int h, int b,
                                           int seq_len, int NH, float softmax_scale) {
        const float drop_scale = drop.enabled() ? drop_rate.scale : 1.0f;
        float inv[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            row_sum[i] = shuffle_sum4(row_sum[i]);
            inv[i] = drop_scale / row_sum[i];
            if (t == 0 && row[i] < seq_len)
                lse[(static_cast<int64_t>(b) * NH + h) * seq_len + row[i]] =
                    row_max[i] * softmax_scale + logf(row_sum[i]);
        }
        if (wg_q0 >= seq_len) return;  // no row to store (uniform over the warpgroup)
        store_warpgroup_rows<T, HD>(o, inv, q_rows, C::kQueries, out_map, wg_q0, h, b, 1 + consumer);
    }
};

// Grid (query tiles, NH, B), heaviest query tiles first. q_map and kv_map: qkv (B, T, 3 NH, HD)
// with boxes of kQueries and kKeys rows; out_map: out (B, T, NH, HD) with boxes of 64 rows.
template <typename T, int HD, typename C>
__global__ void __launch_bounds__(C::kThreads, 1)
    forward_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap kv_map,
                   const __grid_constant__ CUtensorMap out_map, float* lse, int seq_len, int NH, float softmax_scale,
                   DropoutParams drop) {
    if constexpr (kHopperDeviceCode) {
        drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
        const ForwardSmem<C> smem{swizzle_aligned_shared_memory()};
        const int h = blockIdx.y, b = blockIdx.z;
        const int q0 = (gridDim.x - 1 - blockIdx.x) * C::kQueries;
        const int num_k_tiles = ceil_div(min(q0 + C::kQueries, seq_len), C::kKeys);
        init_barriers<C>(smem, smem.q_full(), 1);
        run_warp_specialized<C>(
            [&] {
                if (threadIdx.x != 0) return;
                mbarrier_arrive_expect_bytes(smem.q_full(), C::kQBytes);
                tma_load_rows<HD>(smem.q(), C::kQueries, q_map, q0, h, b, smem.q_full());
                stream_key_tiles<HD, C>(smem, kv_map, h, b, NH, num_k_tiles);
            },
            [&](int consumer) {
                ConsumerRows<T, HD, C> rows(smem, drop, consumer, q0, h, b, seq_len, NH, softmax_scale);
                mbarrier_wait(smem.q_full(), 0);
                if constexpr (C::kPipelined) rows.attend_pipelined(num_k_tiles);
                else rows.attend_in_turn(num_k_tiles);
                rows.finish(out_map, lse, consumer, h, b, seq_len, NH, softmax_scale);
            });
    }
}

// Whether this binary carries the sm_90a kernels and runs on a device that loads them (a
// compute capability 9.0 GPU); elsewhere the kernels have empty bodies and must not run.
inline bool forward_available() {
    cudaFuncAttributes attributes{};
    if (cudaFuncGetAttributes(&attributes, forward_kernel<__nv_bfloat16, 64, ForwardConfig<64>>) != cudaSuccess) {
        (void)cudaGetLastError();  // no image of the kernel for this device
        return false;
    }
    return attributes.binaryVersion == 90;
}

// HD: the tiles' head dim; head_dim: the tensors' (tile_head_dim(head_dim) == HD).
template <typename T, int HD, typename C = ForwardConfig<HD>>
void forward(T* out, float* lse, const T* qkv, int B, int T_len, int NH, int head_dim, float softmax_scale,
             DropoutParams drop, cudaStream_t stream) {
    check_tile_head_dim("attention_forward", HD, head_dim);
    const CUtensorMap q_map = head_rows_tensor_map(qkv, B, T_len, 3 * NH, head_dim, C::kQueries);
    const CUtensorMap kv_map = head_rows_tensor_map(qkv, B, T_len, 3 * NH, head_dim, C::kKeys);
    const CUtensorMap out_map = head_rows_tensor_map<T>(out, B, T_len, NH, head_dim, 64);
    allow_dynamic_smem(forward_kernel<T, HD, C>, C::kSharedBytes);
    forward_kernel<T, HD, C><<<dim3(ceil_div(T_len, C::kQueries), NH, B), C::kThreads, C::kSharedBytes, stream>>>(
        q_map, kv_map, out_map, lse, T_len, NH, softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
}

}  // namespace hopper
}  // namespace attention_detail
