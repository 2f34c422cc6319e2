// Attention backward on Hopper (sm_90a; AttentionKernel::Hopper): the dK/dV kernel on the
// forward's machinery (kernels/attention_hopper.cuh): TMA copies on mbarriers, a producer warp,
// consumer warpgroups on wgmma, setmaxnreg. Same function, mask and dropout as kernels/attention.cuh
// describes; dQ and D = rowsum(dO * O) run on the mma.sync family's kernels. Head dims 64 and 128.
//
// Block: 128 keys and three warpgroups. Warpgroup 0 is the producer: its first warp loads the K
// and V tiles once, then streams the query tiles that see these keys (from the diagonal to the
// end) into a ring of kStages stages: one lane copies Q and dO by TMA. A stage's "full" mbarrier
// completes when the TMA bytes have landed; its "empty" one when every consumer warp has finished
// with it. Each consumer warpgroup reads the tile's lse (times log2 e) and D itself: its threads
// load them from global memory one tile ahead, into registers, and publish them in the
// warpgroup's own double buffer of shared memory behind a barrier of the warpgroup's 128 threads
// (their rows need not be 16-byte aligned, which a bulk copy would require; and a barrier that
// every reader and writer takes is an ordering compute-sanitizer's racecheck follows, where an
// mbarrier arrival of the writers is not). Warpgroups 1 and 2 own 64 keys each; per query tile,
// all in the key-row (transposed) orientation so that each warpgroup's accumulators are its own
// keys:
//   S^T = K Q^T, dP^T = V dO^T   wgmma from shared memory, all operands K-major;
//   P^T = exp2(S^T scale log2 e - lse log2 e), the causal mask on tiles that cross the diagonal,
//   dS^T = P^T (dP^T - D), with dropout applied to P^T (for dV) and dP^T as mma.sync's dK/dV
//   kernel does: the accumulator layout of a warp is mma.sync's C layout, so tile_keep in the
//   key-row layout yields the same Philox calls and the same mask bit for bit;
//   dV += P^T dO, dK += dS^T Q   wgmma with P^T and dS^T from registers (c_pair_to_a) and dO, Q
//                                from shared memory, N-major (their rows are queries).
// At the end each consumer stages dK (times the softmax scale) in its K rows and dV in its V rows
// and stores them with TMA. Rows past T: TMA loads zeros for Q and dO, the consumers take lse =
// +inf (so P = 0) and D = 0 for them, and the stores clip them; any T works. No atomics: every
// key's gradient is summed by one warpgroup in a fixed order, so results repeat bit for bit.

#pragma once

#include "kernels/attention_hopper.cuh"

namespace attention_detail {
namespace hopper {

// Block shape. QUERIES: rows of each streamed Q/dO tile; STAGES: query tiles in flight;
// PIPELINED: see ConsumerKeys::accumulate.
template <int HD, int QUERIES, int STAGES, bool PIPELINED> struct DkdvShape : WarpSpecializedBlock<2> {
    static_assert(HD == 64 || HD == 128, "the wgmma backward supports head dims 64 and 128");
    static_assert(QUERIES == 64 || QUERIES == 128, "wgmma N (the streamed queries) is 64 or 128");
    static_assert(!PIPELINED || HD == 64, "pipelined at HD 128 needs more than the consumers' 240 registers");
    static constexpr int kKeys = 64 * kConsumers;  // per block
    static constexpr int kQueries = QUERIES;       // per streamed tile
    static constexpr int kStages = STAGES;
    static constexpr bool kPipelined = PIPELINED;
    // Shared memory (bytes from a 1024-byte aligned base): K, V, Q stages, dO stages, each
    // consumer's two buffers of a tile's lse and D, barriers.
    static constexpr int kKeyTileBytes = kKeys * HD * 2, kQueryTileBytes = kQueries * HD * 2;
    static constexpr int kVOffset = kKeyTileBytes, kQOffset = 2 * kKeyTileBytes;
    static constexpr int kDoOffset = kQOffset + kStages * kQueryTileBytes;
    static constexpr int kStatsBytes = 2 * kQueries * 4;  // one buffer: lse[kQueries], then D[kQueries]
    static constexpr int kStatsOffset = kDoOffset + kStages * kQueryTileBytes;
    static constexpr int kBarrierOffset = kStatsOffset + kConsumers * 2 * kStatsBytes;
    static constexpr int kBarriers = 1 + 2 * kStages;  // K/V full, then full and empty per stage
    static constexpr size_t kSharedBytes = kBarrierOffset + 8 * kBarriers + 1024;  // + alignment slack
    static_assert(kSharedBytes <= 227 * 1024, "shared memory per block");
    // Arrivals that complete a stage's "full" barrier: the TMA lane's expect_tx.
    static constexpr int kFullArrivals = 1;
    // Stats values each consumer thread loads per tile (lse and D of kQueries queries, 128 threads).
    static constexpr int kStatsPerThread = 2 * kQueries / 128;
};

// Production shape per head dim (the workbench's sweep times the others).
template <int HD> using DkdvConfig = DkdvShape<HD, 64, 2, false>;

// Shared-memory addresses of one block's tiles and barriers.
template <typename C> struct DkdvSmem {
    uint32_t base;
    __device__ uint32_t k() const { return base; }
    __device__ uint32_t v() const { return base + C::kVOffset; }
    __device__ uint32_t q(int stage) const { return base + C::kQOffset + stage * C::kQueryTileBytes; }
    __device__ uint32_t dout(int stage) const { return base + C::kDoOffset + stage * C::kQueryTileBytes; }
    // Consumer `consumer`'s stats buffer `buffer` (0, 1): lse at stats(...), D kQueries floats on.
    __device__ uint32_t stats(int consumer, int buffer) const {
        return base + C::kStatsOffset + (2 * consumer + buffer) * C::kStatsBytes;
    }
    __device__ uint32_t kv_full() const { return base + C::kBarrierOffset; }
    __device__ uint32_t full(int stage) const { return kv_full() + 8 * (1 + stage); }
    __device__ uint32_t empty(int stage) const { return kv_full() + 8 * (1 + C::kStages + stage); }
};

// Generic pointer to the float at shared address `address` of this block's dynamic shared memory.
__device__ __forceinline__ float* shared_floats(uint32_t address) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    return reinterpret_cast<float*>(smem_raw + (address - shared_address(smem_raw)));
}

// Producer (one thread): K and V once, then query tile first_q_tile + j into stage j % kStages
// once the consumers have released the tile that used it before.
template <int HD, typename C>
__device__ __forceinline__ void load_query_tiles(const DkdvSmem<C>& smem, const CUtensorMap& kv_map,
                                                 const CUtensorMap& q_map, const CUtensorMap& dout_map, int k0,
                                                 int first_q_tile, int num_q_tiles, int h, int b, int NH) {
    mbarrier_arrive_expect_bytes(smem.kv_full(), 2 * C::kKeyTileBytes);
    tma_load_rows<HD>(smem.k(), C::kKeys, kv_map, k0, NH + h, b, smem.kv_full());
    tma_load_rows<HD>(smem.v(), C::kKeys, kv_map, k0, 2 * NH + h, b, smem.kv_full());
    for (int j = 0; first_q_tile + j < num_q_tiles; ++j) {
        const int stage = j % C::kStages, use = j / C::kStages, qs0 = (first_q_tile + j) * C::kQueries;
        if (use > 0) mbarrier_wait(smem.empty(stage), (use - 1) & 1);
        mbarrier_arrive_expect_bytes(smem.full(stage), 2 * C::kQueryTileBytes);
        tma_load_rows<HD>(smem.q(stage), C::kQueries, q_map, qs0, h, b, smem.full(stage));
        tma_load_rows<HD>(smem.dout(stage), C::kQueries, dout_map, qs0, h, b, smem.full(stage));
    }
}

// One consumer warpgroup's keys, wg_k0 .. wg_k0 + 63, and their dK, dV accumulators.
template <typename T, int HD, typename C> struct ConsumerKeys {
    static constexpr int NQ = C::kQueries / 8;  // n8 tiles of S^T
    static constexpr int ND = HD / 8;           // n8 tiles of dK, dV
    const DkdvSmem<C>& smem;
    const DropoutParams& drop;
    int lane, t, wg_k0, warp_k0, key[2];
    uint32_t k_rows, v_rows;  // this warpgroup's rows in column block 0 of K and V; 1024-byte aligned
    float scale_log2, drop_scale;
    uint32_t drop_threshold;
    uint64_t drop_call0, drop_calls_per_query;
    float st[NQ][4], dpt[NQ][4], dk[ND][4], dv[ND][4];
    uint32_t p_frag[NQ / 2][4], ds_frag[NQ / 2][4];
    // The tile's lse (times log2 e) and D: this (b, h)'s rows in global memory, this thread's
    // values of the next tile in registers, the warpgroup's buffers in shared memory.
    const float *lse_rows, *row_dot_rows;
    int seq_len, consumer;
    float next_stats[C::kStatsPerThread];

    __device__ ConsumerKeys(const DkdvSmem<C>& smem_, const DropoutParams& drop_, const float* lse,
                            const float* row_dot, int consumer_, int k0, int h, int b, int seq_len_, int NH,
                            float softmax_scale)
        : smem(smem_), drop(drop_), seq_len(seq_len_), consumer(consumer_) {
        const int64_t stat_base = (static_cast<int64_t>(b) * NH + h) * seq_len;
        lse_rows = lse + stat_base;
        row_dot_rows = row_dot + stat_base;
        const int thread = threadIdx.x % 128, warp = thread / 32;
        lane = thread % 32;
        t = lane % 4;
        wg_k0 = k0 + 64 * consumer;
        warp_k0 = wg_k0 + 16 * warp;
        key[0] = warp_k0 + lane / 4;
        key[1] = key[0] + 8;
        k_rows = smem.k() + consumer * 64 * kSwizzleBytes;
        v_rows = smem.v() + consumer * 64 * kSwizzleBytes;
        scale_log2 = softmax_scale * kLog2e;
        const AttentionDropoutRate rate = attention_dropout_rate(drop.p);
        drop_scale = drop.enabled() ? rate.scale : 1.0f;
        drop_threshold = rate.threshold;
        // This lane's dropout calls in query tile qs0 (tensor_cores::tile_keep, key-row layout,
        // member g = lane / 4, as in the mma.sync dK/dV kernel): queries qs0 + 16n + 8 (g >> 2) +
        // 2t + (g & 1), key cell warp_k0/8 + ((g >> 1) & 1); query q + d has call id + d ceil(T/8).
        const int g = lane / 4;
        drop_call0 =
            attention_dropout_call(b, h, NH, seq_len, 8 * (g >> 2) + 2 * t + (g & 1), warp_k0 / 8 + ((g >> 1) & 1));
        drop_calls_per_query = ceil_div(seq_len, 8);
#pragma unroll
        for (int i = 0; i < ND; ++i)
#pragma unroll
            for (int e = 0; e < 4; ++e) dk[i][e] = dv[i][e] = 0.0f;
    }

    // Loads query tile qs0's lse (times log2 e) and D into next_stats: value i of the tile's
    // [lse..., D...] is thread i's, thread i + 128's, ...; +inf and 0 past T.
    __device__ __forceinline__ void prefetch_stats(int qs0) {
        const int thread = threadIdx.x % 128;
#pragma unroll
        for (int s = 0; s < C::kStatsPerThread; ++s) {
            const int i = thread + 128 * s, is_d = i >= C::kQueries, query = qs0 + i - (is_d ? C::kQueries : 0);
            const bool valid = query < seq_len;
            next_stats[s] = is_d ? (valid ? row_dot_rows[query] : 0.0f) : (valid ? lse_rows[query] * kLog2e : INFINITY);
        }
    }
    // Publishes next_stats as tile j's (buffer j & 1) to the warpgroup. The buffer was last read
    // for tile j - 2, before every thread reached tile j - 1's barrier, which this write follows.
    __device__ __forceinline__ void publish_stats(int j) {
        float* buffer = shared_floats(smem.stats(consumer, j & 1));
        const int thread = threadIdx.x % 128;
#pragma unroll
        for (int s = 0; s < C::kStatsPerThread; ++s) buffer[thread + 128 * s] = next_stats[s];
        named_barrier_sync(3 + consumer, 128);  // ids 1, 2: store_warpgroup_rows'
    }

    // Issues S^T = K Q^T and dP^T = V dO^T for the tile in `stage` (one commit group).
    __device__ __forceinline__ void issue_scores(int stage) {
        wgmma_rows_times_rows<T, C::kQueries, HD>(st, k_rows, C::kKeys, smem.q(stage), C::kQueries);
        wgmma_rows_times_rows<T, C::kQueries, HD>(dpt, v_rows, C::kKeys, smem.dout(stage), C::kQueries);
        wgmma_commit();
    }
    // Issues dV += P^T dO and dK += dS^T Q for the tile in `stage` (one commit group).
    __device__ __forceinline__ void issue_gradients(int stage) {
        wgmma_fragments_times_rows<T, HD>(dv, p_frag, smem.dout(stage), C::kQueries);
        wgmma_fragments_times_rows<T, HD>(dk, ds_frag, smem.q(stage), C::kQueries);
        wgmma_commit();
    }

    // S^T, dP^T (completed) of query tile j at qs0 -> dropped P^T (in st) and dS^T (in dpt); its
    // lse and D are published (publish_stats(j)).
    __device__ __forceinline__ void scores_to_gradients(int qs0, int j) {
        const float* lse_s = shared_floats(smem.stats(consumer, j & 1));
        const float* row_dot_s = lse_s + C::kQueries;
        const bool masked_tile = warp_k0 + 15 > qs0;  // some key of this warp after some query
        tensor_cores::TileKeep<NQ> keep;
        if (drop.enabled())
            keep = tensor_cores::tile_keep<NQ, 8, 4>(drop, drop_threshold, lane / 4, [&](int n) {
                return drop_call0 + static_cast<uint64_t>(qs0 + 16 * n) * drop_calls_per_query;
            });
#pragma unroll
        for (int nt = 0; nt < NQ; ++nt) {
            const int col = 8 * nt + 2 * t;
            const float2 lse_pair = *reinterpret_cast<const float2*>(lse_s + col);
            const float2 d_pair = *reinterpret_cast<const float2*>(row_dot_s + col);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float lse_log2 = (e & 1) ? lse_pair.y : lse_pair.x, d_row = (e & 1) ? d_pair.y : d_pair.x;
                float p = exp2f(fmaf(st[nt][e], scale_log2, -lse_log2));
                if (masked_tile && key[e >> 1] > qs0 + col + (e & 1)) p = 0.0f;
                float dp = dpt[nt][e], pd = p;
                if (drop.enabled()) {
                    pd = keep(nt, e) ? p * drop_scale : 0.0f;
                    dp = keep(nt, e) ? dp * drop_scale : 0.0f;
                }
                st[nt][e] = pd;
                dpt[nt][e] = p * (dp - d_row);
            }
        }
    }
    __device__ __forceinline__ void gradients_to_fragments() {
#pragma unroll
        for (int kk = 0; kk < NQ / 2; ++kk) {
            tensor_cores::c_pair_to_a<T>(p_frag[kk], st[2 * kk], st[2 * kk + 1]);
            tensor_cores::c_pair_to_a<T>(ds_frag[kk], dpt[2 * kk], dpt[2 * kk + 1]);
        }
    }

    // This warp is done with the tile in `stage`.
    __device__ __forceinline__ void release(int stage) {
        __syncwarp();
        if (lane == 0) mbarrier_arrive(smem.empty(stage));
    }
    __device__ __forceinline__ void wait_full(int j) { mbarrier_wait(smem.full(j % C::kStages), (j / C::kStages) & 1); }
    __device__ __forceinline__ int query0(int first_q_tile, int j) const { return (first_q_tile + j) * C::kQueries; }
    __device__ __forceinline__ void wait_gradients() {
        wgmma_wait<0>();
        keep_in_place(dk);
        keep_in_place(dv);
        keep_until_here(p_frag);
        keep_until_here(ds_frag);
    }

    // Tile j's stats published and tile j + 1's loads in flight (while tile j's multiplies run).
    __device__ __forceinline__ void stats_of_tile(int first_q_tile, int j, int num_tiles) {
        publish_stats(j);
        if (j + 1 < num_tiles) prefetch_stats(query0(first_q_tile, j + 1));
    }

    // P^T and dS^T of tile j in fragments, nothing else in flight.
    __device__ __forceinline__ void fragments_of_tile(int first_q_tile, int j, int num_tiles) {
        wait_full(j);
        wgmma_fence();
        issue_scores(j % C::kStages);
        stats_of_tile(first_q_tile, j, num_tiles);
        wgmma_wait<0>();
        keep_in_place(st);
        keep_in_place(dpt);
        scores_to_gradients(query0(first_q_tile, j), j);
        gradients_to_fragments();
    }

    // Query tiles first_q_tile + j, j = 0 .. num_tiles - 1. Those whose queries all precede this
    // warpgroup's keys (a prefix) are released unused; the others are accumulated one at a time
    // or, PIPELINED, with the elementwise work on tile j overlapping dV, dK += ... of tile j - 1
    // (at the price of holding S^T, dP^T and the previous tile's fragments at once).
    template <bool PIPELINED> __device__ __forceinline__ void accumulate(int first_q_tile, int num_tiles) {
        int begin = 0;
        for (; begin < num_tiles && query0(first_q_tile, begin) + C::kQueries - 1 < wg_k0; ++begin) {
            wait_full(begin);
            release(begin % C::kStages);
        }
        if (begin == num_tiles) return;
        prefetch_stats(query0(first_q_tile, begin));
        if constexpr (!PIPELINED) {
            for (int j = begin; j < num_tiles; ++j) {
                fragments_of_tile(first_q_tile, j, num_tiles);
                wgmma_fence();
                issue_gradients(j % C::kStages);
                wait_gradients();
                release(j % C::kStages);
            }
        } else {
            fragments_of_tile(first_q_tile, begin, num_tiles);
            for (int j = begin + 1; j < num_tiles; ++j) {
                wait_full(j);
                wgmma_fence();
                issue_scores(j % C::kStages);
                issue_gradients((j - 1) % C::kStages);
                stats_of_tile(first_q_tile, j, num_tiles);
                wgmma_wait<1>();  // S^T, dP^T of tile j have landed; tile j - 1's products may still run
                keep_in_place(st);
                keep_in_place(dpt);
                scores_to_gradients(query0(first_q_tile, j), j);
                wait_gradients();
                release((j - 1) % C::kStages);
                gradients_to_fragments();
            }
            wgmma_fence();
            issue_gradients((num_tiles - 1) % C::kStages);
            wait_gradients();
            release((num_tiles - 1) % C::kStages);
        }
    }

    // dK (times the softmax scale) and dV to dqkv through TMA stores staged in this warpgroup's K
    // and V rows, which only its own multiplies read.
    __device__ __forceinline__ void finish(const CUtensorMap& dkv_map, int consumer, int h, int b, int seq_len, int NH,
                                           float softmax_scale) {
        if (wg_k0 >= seq_len) return;  // no key to store (uniform over the warpgroup)
        const float dk_scale[2] = {softmax_scale, softmax_scale}, dv_scale[2] = {1.0f, 1.0f};
        store_warpgroup_rows<T, HD>(dk, dk_scale, k_rows, C::kKeys, dkv_map, wg_k0, NH + h, b, 1 + consumer);
        store_warpgroup_rows<T, HD>(dv, dv_scale, v_rows, C::kKeys, dkv_map, wg_k0, 2 * NH + h, b, 1 + consumer);
    }
};

// Grid (key tiles, NH, B), key tile 0 (which every query sees) first. kv_map: qkv (B, T, 3 NH, HD)
// with boxes of kKeys rows; q_map: qkv with boxes of kQueries rows; dout_map: dout (B, T, NH, HD)
// with boxes of kQueries rows; dkv_map: dqkv (B, T, 3 NH, HD) with boxes of 64 rows.
template <typename T, int HD, typename C>
__global__ void __launch_bounds__(C::kThreads, 1)
    backward_dkdv_kernel(const __grid_constant__ CUtensorMap kv_map, const __grid_constant__ CUtensorMap q_map,
                         const __grid_constant__ CUtensorMap dout_map, const __grid_constant__ CUtensorMap dkv_map,
                         const float* lse, const float* row_dot, int seq_len, int NH, float softmax_scale,
                         DropoutParams drop) {
    if constexpr (kHopperDeviceCode) {
        drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
        const DkdvSmem<C> smem{swizzle_aligned_shared_memory()};
        const int h = blockIdx.y, b = blockIdx.z;
        const int k0 = blockIdx.x * C::kKeys;
        const int first_q_tile = k0 / C::kQueries, num_q_tiles = ceil_div(seq_len, C::kQueries);
        init_barriers<C>(smem, smem.kv_full(), C::kFullArrivals);
        run_warp_specialized<C>(
            [&] {
                if (threadIdx.x != 0) return;
                load_query_tiles<HD, C>(smem, kv_map, q_map, dout_map, k0, first_q_tile, num_q_tiles, h, b, NH);
            },
            [&](int consumer) {
                ConsumerKeys<T, HD, C> keys(smem, drop, lse, row_dot, consumer, k0, h, b, seq_len, NH, softmax_scale);
                mbarrier_wait(smem.kv_full(), 0);
                keys.template accumulate<C::kPipelined>(first_q_tile, num_q_tiles - first_q_tile);
                keys.finish(dkv_map, consumer, h, b, seq_len, NH, softmax_scale);
            });
    }
}

// ---------------------------------------------------------------------------------------------
// dQ. Block: 128 queries and three warpgroups, shaped like the forward: the producer thread loads
// Q and dO once and streams K/V tiles of kKeys keys up to the diagonal (stream_key_tiles); each
// consumer warpgroup owns 64 query rows, keeps their lse and D in registers and, per key tile:
//   S = Q K^T, dP = dO V^T       wgmma from shared memory, all operands K-major;
//   P = exp2(S scale log2 e - lse log2 e), causal mask on tiles that cross the diagonal,
//   dS = P (dP - D) with dropout on dP as mma.sync's dQ kernel (row layout, the forward's
//   tile_keep calls: the same mask);
//   dQ += dS K                   wgmma with dS from registers and K N-major.
// Rows past T: TMA loads zeros and lse = +inf makes their P zero; the store clips them.

template <int HD, int KEYS, int STAGES> struct DqShape : WarpSpecializedBlock<2> {
    static_assert(HD == 64 || HD == 128, "the wgmma backward supports head dims 64 and 128");
    static_assert(KEYS == 64 || KEYS == 128, "wgmma N (the streamed keys) is 64 or 128");
    static constexpr int kQueries = 64 * kConsumers;  // per block
    static constexpr int kKeys = KEYS;                // per streamed K/V tile
    static constexpr int kStages = STAGES;
    // Shared memory (bytes from a 1024-byte aligned base): Q, dO, K stages, V stages, barriers.
    static constexpr int kQBytes = kQueries * HD * 2, kTileBytes = kKeys * HD * 2;
    static constexpr int kDoOffset = kQBytes, kKOffset = 2 * kQBytes, kVOffset = kKOffset + kStages * kTileBytes;
    static constexpr int kBarrierOffset = kVOffset + kStages * kTileBytes;
    static constexpr int kBarriers = 1 + 2 * kStages;  // Q/dO full, then full and empty per stage
    static constexpr size_t kSharedBytes = kBarrierOffset + 8 * kBarriers + 1024;  // + alignment slack
    static_assert(kSharedBytes <= 227 * 1024, "shared memory per block");
};

// Production shape per head dim: at HD 128 a 128-key tile would need S, dP and dQ (192
// accumulators) plus dS at once, more than the consumers' 240 registers.
template <int HD> using DqConfig = DqShape<HD, HD == 64 ? 128 : 64, 2>;

template <typename C> struct DqSmem {
    uint32_t base;
    __device__ uint32_t q() const { return base; }
    __device__ uint32_t dout() const { return base + C::kDoOffset; }
    __device__ uint32_t k(int stage) const { return base + C::kKOffset + stage * C::kTileBytes; }
    __device__ uint32_t v(int stage) const { return base + C::kVOffset + stage * C::kTileBytes; }
    __device__ uint32_t q_full() const { return base + C::kBarrierOffset; }
    __device__ uint32_t full(int stage) const { return q_full() + 8 * (1 + stage); }
    __device__ uint32_t empty(int stage) const { return q_full() + 8 * (1 + C::kStages + stage); }
};

// One consumer warpgroup's query rows, wg_q0 .. wg_q0 + 63, and their dQ accumulators.
template <typename T, int HD, typename C> struct ConsumerQueries {
    static constexpr int NK = C::kKeys / 8;  // n8 tiles of S
    static constexpr int ND = HD / 8;        // n8 tiles of dQ
    const DqSmem<C>& smem;
    const DropoutParams& drop;
    int lane, t, wg_q0, row[2];
    uint32_t q_rows, dout_rows;  // this warpgroup's rows in column block 0 of Q and dO
    float scale_log2, drop_scale, lse_log2[2], d_row[2];
    uint32_t drop_threshold;
    uint64_t drop_call0;
    float s[NK][4], dp[NK][4], dq[ND][4];
    uint32_t ds_frag[NK / 2][4];

    __device__ ConsumerQueries(const DqSmem<C>& smem_, const DropoutParams& drop_, const float* lse,
                               const float* row_dot, int consumer, int q0, int h, int b, int seq_len, int NH,
                               float softmax_scale)
        : smem(smem_), drop(drop_) {
        const int thread = threadIdx.x % 128, warp = thread / 32;
        lane = thread % 32;
        t = lane % 4;
        wg_q0 = q0 + 64 * consumer;
        row[0] = wg_q0 + 16 * warp + lane / 4;
        row[1] = row[0] + 8;
        q_rows = smem.q() + consumer * 64 * kSwizzleBytes;
        dout_rows = smem.dout() + consumer * 64 * kSwizzleBytes;
        scale_log2 = softmax_scale * kLog2e;
        const AttentionDropoutRate rate = attention_dropout_rate(drop.p);
        drop_scale = drop.enabled() ? rate.scale : 1.0f;
        drop_threshold = rate.threshold;
        // This lane's dropout calls in key tile j, as in the forward (tile_keep, row layout).
        drop_call0 = attention_dropout_call(b, h, NH, seq_len, row[0] + 8 * (t & 1), t >> 1);
        const int64_t stat_base = (static_cast<int64_t>(b) * NH + h) * seq_len;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            lse_log2[i] = row[i] < seq_len ? lse[stat_base + row[i]] * kLog2e : INFINITY;
            d_row[i] = row[i] < seq_len ? row_dot[stat_base + row[i]] : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < ND; ++i) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.0f;
    }

    __device__ __forceinline__ void release(int stage) {
        __syncwarp();
        if (lane == 0) mbarrier_arrive(smem.empty(stage));
    }

    // Every key tile up to the diagonal, one at a time.
    __device__ __forceinline__ void accumulate(int num_k_tiles) {
        for (int j = 0; j < num_k_tiles; ++j) {
            const int stage = j % C::kStages, k0 = j * C::kKeys;
            mbarrier_wait(smem.full(stage), (j / C::kStages) & 1);
            wgmma_fence();
            wgmma_rows_times_rows<T, C::kKeys, HD>(s, q_rows, C::kQueries, smem.k(stage), C::kKeys);
            wgmma_rows_times_rows<T, C::kKeys, HD>(dp, dout_rows, C::kQueries, smem.v(stage), C::kKeys);
            wgmma_commit();
            wgmma_wait<0>();
            keep_in_place(s);
            keep_in_place(dp);
            const bool masked_tile = k0 + C::kKeys - 1 > wg_q0;  // the tile crosses some row's diagonal
            tensor_cores::TileKeep<NK> keep;
            if (drop.enabled())
                keep = tensor_cores::tile_keep<NK, 4, 1>(drop, drop_threshold, t,
                                                         [&](int n) { return drop_call0 + k0 / 8 + 2 * n; });
#pragma unroll
            for (int nt = 0; nt < NK; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int i = e >> 1;
                    float p = exp2f(fmaf(s[nt][e], scale_log2, -lse_log2[i]));
                    if (masked_tile && k0 + 8 * nt + 2 * t + (e & 1) > row[i]) p = 0.0f;
                    float dpv = dp[nt][e];
                    if (drop.enabled()) dpv = keep(nt, e) ? dpv * drop_scale : 0.0f;
                    s[nt][e] = p * (dpv - d_row[i]);
                }
#pragma unroll
            for (int kk = 0; kk < NK / 2; ++kk) tensor_cores::c_pair_to_a<T>(ds_frag[kk], s[2 * kk], s[2 * kk + 1]);
            wgmma_fence();
            wgmma_fragments_times_rows<T, HD>(dq, ds_frag, smem.k(stage), C::kKeys);
            wgmma_commit();
            wgmma_wait<0>();
            keep_in_place(dq);
            keep_until_here(ds_frag);
            release(stage);
        }
    }

    // dQ (times the softmax scale) to dqkv through a TMA store staged in this warpgroup's Q rows.
    __device__ __forceinline__ void finish(const CUtensorMap& dq_map, int consumer, int h, int b, int seq_len,
                                           float softmax_scale) {
        if (wg_q0 >= seq_len) return;  // no row to store (uniform over the warpgroup)
        const float scale[2] = {softmax_scale, softmax_scale};
        store_warpgroup_rows<T, HD>(dq, scale, q_rows, C::kQueries, dq_map, wg_q0, h, b, 1 + consumer);
    }
};

// Grid (query tiles, NH, B), heaviest query tiles first. q_map and dout_map: boxes of kQueries
// rows of qkv and dout; kv_map: boxes of kKeys rows of qkv; dq_map: dqkv with boxes of 64 rows.
template <typename T, int HD, typename C>
__global__ void __launch_bounds__(C::kThreads, 1)
    backward_dq_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap dout_map,
                       const __grid_constant__ CUtensorMap kv_map, const __grid_constant__ CUtensorMap dq_map,
                       const float* lse, const float* row_dot, int seq_len, int NH, float softmax_scale,
                       DropoutParams drop) {
    if constexpr (kHopperDeviceCode) {
        drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
        const DqSmem<C> smem{swizzle_aligned_shared_memory()};
        const int h = blockIdx.y, b = blockIdx.z;
        const int q0 = (gridDim.x - 1 - blockIdx.x) * C::kQueries;
        const int num_k_tiles = ceil_div(min(q0 + C::kQueries, seq_len), C::kKeys);
        init_barriers<C>(smem, smem.q_full(), 1);
        run_warp_specialized<C>(
            [&] {
                if (threadIdx.x != 0) return;
                mbarrier_arrive_expect_bytes(smem.q_full(), 2 * C::kQBytes);
                tma_load_rows<HD>(smem.q(), C::kQueries, q_map, q0, h, b, smem.q_full());
                tma_load_rows<HD>(smem.dout(), C::kQueries, dout_map, q0, h, b, smem.q_full());
                stream_key_tiles<HD, C>(smem, kv_map, h, b, NH, num_k_tiles);
            },
            [&](int consumer) {
                ConsumerQueries<T, HD, C> queries(smem, drop, lse, row_dot, consumer, q0, h, b, seq_len, NH,
                                                  softmax_scale);
                mbarrier_wait(smem.q_full(), 0);
                queries.accumulate(num_k_tiles);
                queries.finish(dq_map, consumer, h, b, seq_len, softmax_scale);
            });
    }
}

// dQ of every head into dqkv; row_dot holds D = rowsum(dO * O).
template <typename T, int HD, typename C = DqConfig<HD>>
void backward_dq(T* dqkv, const float* row_dot, const T* dout, const T* qkv, const float* lse, int B, int T_len,
                 int NH, int head_dim, float softmax_scale, DropoutParams drop, cudaStream_t stream) {
    check_tile_head_dim("attention_backward", HD, head_dim);
    const CUtensorMap q_map = head_rows_tensor_map(qkv, B, T_len, 3 * NH, head_dim, C::kQueries);
    const CUtensorMap dout_map = head_rows_tensor_map(dout, B, T_len, NH, head_dim, C::kQueries);
    const CUtensorMap kv_map = head_rows_tensor_map(qkv, B, T_len, 3 * NH, head_dim, C::kKeys);
    const CUtensorMap dq_map = head_rows_tensor_map<T>(dqkv, B, T_len, 3 * NH, head_dim, 64);
    allow_dynamic_smem(backward_dq_kernel<T, HD, C>, C::kSharedBytes);
    backward_dq_kernel<T, HD, C><<<dim3(ceil_div(T_len, C::kQueries), NH, B), C::kThreads, C::kSharedBytes, stream>>>(
        q_map, dout_map, kv_map, dq_map, lse, row_dot, T_len, NH, softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
}

// dK and dV of every head into dqkv; row_dot holds D = rowsum(dO * O) (attention_backward_row_dot).
template <typename T, int HD, typename C = DkdvConfig<HD>>
void backward_dkdv(T* dqkv, const float* row_dot, const T* dout, const T* qkv, const float* lse, int B, int T_len,
                   int NH, int head_dim, float softmax_scale, DropoutParams drop, cudaStream_t stream) {
    check_tile_head_dim("attention_backward", HD, head_dim);
    const CUtensorMap kv_map = head_rows_tensor_map(qkv, B, T_len, 3 * NH, head_dim, C::kKeys);
    const CUtensorMap q_map = head_rows_tensor_map(qkv, B, T_len, 3 * NH, head_dim, C::kQueries);
    const CUtensorMap dout_map = head_rows_tensor_map(dout, B, T_len, NH, head_dim, C::kQueries);
    const CUtensorMap dkv_map = head_rows_tensor_map<T>(dqkv, B, T_len, 3 * NH, head_dim, 64);
    allow_dynamic_smem(backward_dkdv_kernel<T, HD, C>, C::kSharedBytes);
    backward_dkdv_kernel<T, HD, C><<<dim3(ceil_div(T_len, C::kKeys), NH, B), C::kThreads, C::kSharedBytes, stream>>>(
        kv_map, q_map, dout_map, dkv_map, lse, row_dot, T_len, NH, softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
}

}  // namespace hopper
}  // namespace attention_detail
