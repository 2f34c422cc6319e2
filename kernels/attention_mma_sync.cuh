// Attention on tensor cores with mma.sync (AttentionKernel::TensorCores): FlashAttention-2-style
// forward and deterministic backward, the sm_80 path, and the dev/cuda workbench's variant 2.
// Same function, layouts and dropout mask as kernels/attention.cuh describes.
//
// Operands are fetched with ldmatrix and tiles double-buffered with cp.async
// (kernels/attention_mma_fragments.cuh). Each warp owns 16 rows: query rows in forward and dQ,
// key rows in dK/dV.
#pragma once

#include "kernels/attention_mma_fragments.cuh"

namespace attention_detail {
namespace tensor_cores {

// Forward and dQ stream key tiles: issues cp.async for K and V rows [k0, k0 + BK) of a head
// into one stage of the double buffers (rows past the sequence end become zeros).
template <int HD, int BK, int NTHREADS, typename T>
__device__ __forceinline__ void load_key_tile_async(T* k_dst /*(BK, pitch)*/, T* v_dst /*(BK, pitch)*/, const T* k_g,
                                                    const T* v_g, int64_t row_stride, int k0, int seq_len) {
    load_tile_async<HD, BK, NTHREADS>(k_dst, k_g + k0 * row_stride, row_stride, min(BK, seq_len - k0));
    load_tile_async<HD, BK, NTHREADS>(v_dst, v_g + k0 * row_stride, row_stride, min(BK, seq_len - k0));
}

// acc += S X for a warp's 16 rows (O += P V in forward, dQ += dS K in dQ): S the 16 x BK score
// tile in C fragments, rounded to T on the way into A fragments; X the BK x HD tile stored
// row-major in shared memory.
template <typename T, int HD, int BK>
__device__ __forceinline__ void accumulate_scores_times_tile(float (&acc)[HD / 8][4], const float (&s)[BK / 8][4],
                                                             const T* x_tile /*(BK, pitch)*/, int lane) {
    constexpr int P = smem_pitch<HD>();
#pragma unroll
    for (int kc = 0; kc < BK / 16; ++kc) {
        uint32_t sa[4];
        c_pair_to_a<T>(sa, s[2 * kc], s[2 * kc + 1]);
#pragma unroll
        for (int dt = 0; dt < HD / 16; ++dt) {
            uint32_t xb[4];
            load_b_kn<P>(xb, x_tile, kc * 16, dt * 16, lane);
            mma_16x8x16<T>(acc[2 * dt], sa, xb[0], xb[1]);
            mma_16x8x16<T>(acc[2 * dt + 1], sa, xb[2], xb[3]);
        }
    }
}

// Forward. Block: NWARPS warps x 16 query rows; loops over key tiles of BK keys up to the
// diagonal, K and V double-buffered so the copy of tile j+1 overlaps the math of tile j.
template <typename T, int HD, int NWARPS, int BK>
__global__ void __launch_bounds__(NWARPS * 32)
    forward_kernel(T* out, float* lse, const T* qkv, int seq_len, int NH, float softmax_scale, DropoutParams drop) {
    drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
    constexpr int BQ = 16 * NWARPS, P = smem_pitch<HD>(), NTHREADS = NWARPS * 32;
    constexpr int KD = HD / 16;  // k16 steps over the head dim
    constexpr int ND = HD / 8;   // n8 tiles over the head dim
    constexpr int NK = BK / 8;   // n8 tiles over a key tile
    static_assert(BK % 16 == 0 && HD % 16 == 0, "tile shapes must be multiples of 16");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* q_s = reinterpret_cast<T*>(smem_raw);  // (BQ, P); each warp later stages its output in its rows
    T* k_s = q_s + BQ * P;                    // (2, BK, P)
    T* v_s = k_s + 2 * BK * P;                // (2, BK, P)

    const int h = blockIdx.y, b = blockIdx.z;
    const int q_tile = gridDim.x - 1 - blockIdx.x;  // most key tiles first: better tail balance
    const int q0 = q_tile * BQ;
    const int q_rows = min(BQ, seq_len - q0);
    const int num_k_tiles = ceil_div(q0 + q_rows, BK);
    const int64_t row_stride = 3LL * NH * HD;
    const T* q_g = qkv + static_cast<int64_t>(b) * seq_len * row_stride + static_cast<int64_t>(h) * HD;
    const T* k_g = q_g + NH * HD;
    const T* v_g = k_g + NH * HD;

    load_tile_async<HD, BQ, NTHREADS>(q_s, q_g + q0 * row_stride, row_stride, q_rows);
    load_key_tile_async<HD, BK, NTHREADS>(k_s, v_s, k_g, v_g, row_stride, 0, seq_len);
    cp_async_commit();

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
    const int warp_q0 = q0 + warp * 16;
    const bool warp_active = warp_q0 < seq_len;  // warp-uniform
    const int row[2] = {warp_q0 + lane / 4, warp_q0 + lane / 4 + 8};
    const float scale_log2 = softmax_scale * kLog2e;
    const AttentionDropoutRate drop_rate = attention_dropout_rate(drop.p);
    // This lane's dropout calls in key tile k0 (tile_keep, row layout): row g + 8 (t & 1), cells
    // k0/8 + 2n + (t >> 1).
    const uint64_t drop_call0 = attention_dropout_call(b, h, NH, seq_len, row[0] + 8 * (t & 1), t >> 1);

    cp_async_wait_all();
    __syncthreads();
    uint32_t q_frag[KD][4];
#pragma unroll
    for (int kd = 0; kd < KD; ++kd) load_a<P>(q_frag[kd], q_s, warp * 16, kd * 16, lane);

    float o[ND][4];
#pragma unroll
    for (int dt = 0; dt < ND; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};  // row_sum: this lane's columns

    for (int j = 0; j < num_k_tiles; ++j) {
        if (j > 0) {
            cp_async_wait_all();  // tile j has landed ...
            __syncthreads();      // ... for every thread, and every warp is done with tile j-1
        }
        if (j + 1 < num_k_tiles) {  // refill the buffer tile j-1 used
            const int next = (j + 1) * BK;
            const int stage = (j + 1) & 1;
            load_key_tile_async<HD, BK, NTHREADS>(k_s + stage * BK * P, v_s + stage * BK * P, k_g, v_g, row_stride, next,
                                                  seq_len);
            cp_async_commit();
        }
        const int k0 = j * BK;
        if (!warp_active || k0 > warp_q0 + 15) continue;  // every key of the tile is after every row
        const T* k_tile = k_s + (j & 1) * BK * P;
        const T* v_tile = v_s + (j & 1) * BK * P;

        float s[NK][4];
#pragma unroll
        for (int nt = 0; nt < NK; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) {
#pragma unroll
            for (int np = 0; np < NK / 2; ++np) {
                uint32_t kb[4];
                load_b_nk<P>(kb, k_tile, np * 16, kd * 16, lane);
                mma_16x8x16<T>(s[2 * np], q_frag[kd], kb[0], kb[1]);
                mma_16x8x16<T>(s[2 * np + 1], q_frag[kd], kb[2], kb[3]);
            }
        }
        if (k0 + BK - 1 > warp_q0) {  // the tile reaches past the diagonal of some row: causal mask
#pragma unroll
            for (int nt = 0; nt < NK; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (k0 + nt * 8 + 2 * t + (e & 1) > row[e >> 1]) s[nt][e] = -INFINITY;
        }

        // Online softmax in raw-score units: max first, then p = exp2((s - max) * scale * log2 e).
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float tile_max = row_max[i];
#pragma unroll
            for (int nt = 0; nt < NK; ++nt) tile_max = fmaxf(tile_max, fmaxf(s[nt][2 * i], s[nt][2 * i + 1]));
            tile_max = shuffle_max4(tile_max);
            // All keys masked so far (only rows past the sequence end): base 0 keeps exp2 at 0, not NaN.
            const float base = tile_max == -INFINITY ? 0.0f : tile_max;
            const float alpha = exp2f((row_max[i] - base) * scale_log2);
            row_max[i] = tile_max;
            row_sum[i] *= alpha;
#pragma unroll
            for (int dt = 0; dt < ND; ++dt) {
                o[dt][2 * i] *= alpha;
                o[dt][2 * i + 1] *= alpha;
            }
            const float offset = base * scale_log2;
#pragma unroll
            for (int nt = 0; nt < NK; ++nt)
#pragma unroll
                for (int e = 2 * i; e < 2 * i + 2; ++e) {
                    s[nt][e] = exp2f(fmaf(s[nt][e], scale_log2, -offset));
                    row_sum[i] += s[nt][e];
                }
        }
        // Dropout zeroes probabilities after they entered the softmax sum; its scale is applied once at the end.
        if (drop.enabled()) {
            const TileKeep<NK> keep = tile_keep<NK, 4, 1>(drop, drop_rate.threshold, t,
                                                          [&](int n) { return drop_call0 + k0 / 8 + 2 * n; });
#pragma unroll
            for (int nt = 0; nt < NK; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (!keep(nt, e)) s[nt][e] = 0.0f;
        }
        accumulate_scores_times_tile<T, HD, BK>(o, s, v_tile, lane);
    }
    if (!warp_active) return;  // no block-wide barrier follows

    const float drop_scale = drop.enabled() ? drop_rate.scale : 1.0f;
    float inv[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        row_sum[i] = shuffle_sum4(row_sum[i]);
        inv[i] = drop_scale / row_sum[i];
        if (t == 0 && row[i] < seq_len)
            lse[(static_cast<int64_t>(b) * NH + h) * seq_len + row[i]] = row_max[i] * softmax_scale + logf(row_sum[i]);
    }
    T* o_s = q_s + warp * 16 * P;  // this warp's Q rows: already in q_frag
    stage_rows<T, HD>(o_s, o, inv[0], inv[1], lane);
    store_rows<T, HD>(out + ((static_cast<int64_t>(b) * seq_len + warp_q0) * NH + h) * HD, static_cast<int64_t>(NH) * HD,
                      o_s, min(16, seq_len - warp_q0), lane);
}

// Backward, dQ. Block: NWARPS warps x 16 query rows (Q and dO fragments stay in registers);
// loops over key tiles of BK keys up to the diagonal, recomputing P and dP per tile.
template <typename T, int HD, int NWARPS, int BK>
__global__ void __launch_bounds__(NWARPS * 32)
    backward_dq_kernel(T* dqkv, const T* qkv, const T* dout, const float* lse, const float* row_dot, int seq_len,
                       int NH, float softmax_scale, DropoutParams drop) {
    drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
    constexpr int BQ = 16 * NWARPS, P = smem_pitch<HD>(), NTHREADS = NWARPS * 32;
    constexpr int KD = HD / 16, ND = HD / 8, NK = BK / 8;
    static_assert(BK % 16 == 0 && HD % 16 == 0, "tile shapes must be multiples of 16");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* q_s = reinterpret_cast<T*>(smem_raw);  // (BQ, P); each warp later stages its dQ in its rows
    T* do_s = q_s + BQ * P;                   // (BQ, P)
    T* k_s = do_s + BQ * P;                   // (2, BK, P)
    T* v_s = k_s + 2 * BK * P;                // (2, BK, P)

    const int h = blockIdx.y, b = blockIdx.z;
    const int q_tile = gridDim.x - 1 - blockIdx.x;
    const int q0 = q_tile * BQ;
    const int q_rows = min(BQ, seq_len - q0);
    const int num_k_tiles = ceil_div(q0 + q_rows, BK);
    const int64_t row_stride = 3LL * NH * HD, out_stride = static_cast<int64_t>(NH) * HD;
    const T* q_g = qkv + static_cast<int64_t>(b) * seq_len * row_stride + static_cast<int64_t>(h) * HD;
    const T* k_g = q_g + NH * HD;
    const T* v_g = k_g + NH * HD;
    const T* do_g = dout + static_cast<int64_t>(b) * seq_len * out_stride + static_cast<int64_t>(h) * HD;

    load_tile_async<HD, BQ, NTHREADS>(q_s, q_g + q0 * row_stride, row_stride, q_rows);
    load_tile_async<HD, BQ, NTHREADS>(do_s, do_g + q0 * out_stride, out_stride, q_rows);
    load_key_tile_async<HD, BK, NTHREADS>(k_s, v_s, k_g, v_g, row_stride, 0, seq_len);
    cp_async_commit();

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
    const int warp_q0 = q0 + warp * 16;
    const bool warp_active = warp_q0 < seq_len;
    const int row[2] = {warp_q0 + lane / 4, warp_q0 + lane / 4 + 8};
    const float scale_log2 = softmax_scale * kLog2e;
    const AttentionDropoutRate drop_rate = attention_dropout_rate(drop.p);
    const float drop_scale = drop.enabled() ? drop_rate.scale : 1.0f;
    // This lane's dropout calls in key tile k0, as in forward.
    const uint64_t drop_call0 = attention_dropout_call(b, h, NH, seq_len, row[0] + 8 * (t & 1), t >> 1);
    const int64_t stat_base = (static_cast<int64_t>(b) * NH + h) * seq_len;
    float lse_log2[2], d_row[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        lse_log2[i] = row[i] < seq_len ? lse[stat_base + row[i]] * kLog2e : 0.0f;
        d_row[i] = row[i] < seq_len ? row_dot[stat_base + row[i]] : 0.0f;
    }

    cp_async_wait_all();
    __syncthreads();
    uint32_t q_frag[KD][4], do_frag[KD][4];
#pragma unroll
    for (int kd = 0; kd < KD; ++kd) {
        load_a<P>(q_frag[kd], q_s, warp * 16, kd * 16, lane);
        load_a<P>(do_frag[kd], do_s, warp * 16, kd * 16, lane);
    }
    float dq[ND][4];
#pragma unroll
    for (int dt = 0; dt < ND; ++dt) dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.0f;

    for (int j = 0; j < num_k_tiles; ++j) {
        if (j > 0) {
            cp_async_wait_all();
            __syncthreads();
        }
        if (j + 1 < num_k_tiles) {
            const int next = (j + 1) * BK;
            const int stage = (j + 1) & 1;
            load_key_tile_async<HD, BK, NTHREADS>(k_s + stage * BK * P, v_s + stage * BK * P, k_g, v_g, row_stride, next,
                                                  seq_len);
            cp_async_commit();
        }
        const int k0 = j * BK;
        if (!warp_active || k0 > warp_q0 + 15) continue;
        const T* k_tile = k_s + (j & 1) * BK * P;
        const T* v_tile = v_s + (j & 1) * BK * P;

        float s[NK][4], dp[NK][4];  // S = Q K^T and dP = dO V^T, 16 rows x BK keys
#pragma unroll
        for (int nt = 0; nt < NK; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) {
#pragma unroll
            for (int np = 0; np < NK / 2; ++np) {
                uint32_t kb[4], vb[4];
                load_b_nk<P>(kb, k_tile, np * 16, kd * 16, lane);
                mma_16x8x16<T>(s[2 * np], q_frag[kd], kb[0], kb[1]);
                mma_16x8x16<T>(s[2 * np + 1], q_frag[kd], kb[2], kb[3]);
                load_b_nk<P>(vb, v_tile, np * 16, kd * 16, lane);
                mma_16x8x16<T>(dp[2 * np], do_frag[kd], vb[0], vb[1]);
                mma_16x8x16<T>(dp[2 * np + 1], do_frag[kd], vb[2], vb[3]);
            }
        }
        const bool masked_tile = k0 + BK - 1 > warp_q0;
        TileKeep<NK> keep;
        if (drop.enabled())
            keep = tile_keep<NK, 4, 1>(drop, drop_rate.threshold, t,
                                       [&](int n) { return drop_call0 + k0 / 8 + 2 * n; });
        // dS = P (dP - D), written over s.
#pragma unroll
        for (int nt = 0; nt < NK; ++nt)
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const int key = k0 + nt * 8 + 2 * t;
                float p0 = exp2f(fmaf(s[nt][2 * i], scale_log2, -lse_log2[i]));
                float p1 = exp2f(fmaf(s[nt][2 * i + 1], scale_log2, -lse_log2[i]));
                if (masked_tile) {
                    if (key > row[i]) p0 = 0.0f;
                    if (key + 1 > row[i]) p1 = 0.0f;
                }
                float dp0 = dp[nt][2 * i], dp1 = dp[nt][2 * i + 1];
                if (drop.enabled()) {
                    dp0 = keep(nt, 2 * i) ? dp0 * drop_scale : 0.0f;
                    dp1 = keep(nt, 2 * i + 1) ? dp1 * drop_scale : 0.0f;
                }
                s[nt][2 * i] = p0 * (dp0 - d_row[i]);
                s[nt][2 * i + 1] = p1 * (dp1 - d_row[i]);
            }
        accumulate_scores_times_tile<T, HD, BK>(dq, s, k_tile, lane);  // dQ += dS K
    }
    if (!warp_active) return;
    T* dq_s = q_s + warp * 16 * P;  // this warp's Q rows: already in q_frag
    stage_rows<T, HD>(dq_s, dq, softmax_scale, softmax_scale, lane);
    store_rows<T, HD>(dqkv + static_cast<int64_t>(b) * seq_len * row_stride + warp_q0 * row_stride +
                          static_cast<int64_t>(h) * HD,
                      row_stride, dq_s, min(16, seq_len - warp_q0), lane);
}

// Backward, dK and dV. Block: NWARPS warps x 16 key rows (K and V stay in shared memory for the
// whole block); loops over the query tiles of BQ queries that see these keys (from the diagonal
// to the end), with Q, dO, lse and D double-buffered. Works on transposed scores S^T (keys x
// queries) so that each warp's accumulators are its own key rows.
template <typename T, int HD, int NWARPS, int BQ>
__global__ void __launch_bounds__(NWARPS * 32)
    backward_dkdv_kernel(T* dqkv, const T* qkv, const T* dout, const float* lse, const float* row_dot, int seq_len,
                         int NH, float softmax_scale, DropoutParams drop) {
    drop = drop.resolved();  // the pass's offset, read once (DropoutParams)
    constexpr int BKV = 16 * NWARPS, P = smem_pitch<HD>(), NTHREADS = NWARPS * 32;
    constexpr int KD = HD / 16, ND = HD / 8, NQ = BQ / 8;
    static_assert(BQ % 16 == 0 && HD % 16 == 0, "tile shapes must be multiples of 16");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* k_s = reinterpret_cast<T*>(smem_raw);                // (BKV, P); each warp later stages its dK in its rows
    T* v_s = k_s + BKV * P;                                 // (BKV, P); ... and its dV
    T* q_s = v_s + BKV * P;                                 // (2, BQ, P)
    T* do_s = q_s + 2 * BQ * P;                             // (2, BQ, P)
    float* lse_s = reinterpret_cast<float*>(do_s + 2 * BQ * P);  // (2, BQ)
    float* d_s = lse_s + 2 * BQ;                            // (2, BQ)

    const int h = blockIdx.y, b = blockIdx.z;
    const int k0 = blockIdx.x * BKV;  // key tile 0 sees every query: heaviest first
    const int first_q_tile = k0 / BQ, num_q_tiles = ceil_div(seq_len, BQ);
    const int64_t row_stride = 3LL * NH * HD, out_stride = static_cast<int64_t>(NH) * HD;
    const T* q_g = qkv + static_cast<int64_t>(b) * seq_len * row_stride + static_cast<int64_t>(h) * HD;
    const T* k_g = q_g + NH * HD;
    const T* v_g = k_g + NH * HD;
    const T* do_g = dout + static_cast<int64_t>(b) * seq_len * out_stride + static_cast<int64_t>(h) * HD;
    const int64_t stat_base = (static_cast<int64_t>(b) * NH + h) * seq_len;

    auto load_query_tile = [&](int q_tile, int stage) {
        const int qs0 = q_tile * BQ, rows = min(BQ, seq_len - qs0);
        load_tile_async<HD, BQ, NTHREADS>(q_s + stage * BQ * P, q_g + qs0 * row_stride, row_stride, rows);
        load_tile_async<HD, BQ, NTHREADS>(do_s + stage * BQ * P, do_g + qs0 * out_stride, out_stride, rows);
        load_floats_async<BQ, NTHREADS>(lse_s + stage * BQ, lse + stat_base + qs0, rows);
        load_floats_async<BQ, NTHREADS>(d_s + stage * BQ, row_dot + stat_base + qs0, rows);
    };
    load_tile_async<HD, BKV, NTHREADS>(k_s, k_g + k0 * row_stride, row_stride, min(BKV, seq_len - k0));
    load_tile_async<HD, BKV, NTHREADS>(v_s, v_g + k0 * row_stride, row_stride, min(BKV, seq_len - k0));
    load_query_tile(first_q_tile, 0);
    cp_async_commit();

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
    const int warp_k0 = k0 + warp * 16;
    const bool warp_active = warp_k0 < seq_len;
    const int key[2] = {warp_k0 + lane / 4, warp_k0 + lane / 4 + 8};
    const float scale_log2 = softmax_scale * kLog2e;
    const AttentionDropoutRate drop_rate = attention_dropout_rate(drop.p);
    const float drop_scale = drop.enabled() ? drop_rate.scale : 1.0f;
    // This lane's dropout calls in query tile qs0 (tile_keep, key-row layout, member g = lane / 4):
    // queries qs0 + 16n + 8 (g >> 2) + 2t + (g & 1), key cell warp_k0/8 + ((g >> 1) & 1). Call ids
    // are linear in the query: query q + d has call id + d * ceil(T/8).
    const int g = lane / 4;
    const uint64_t drop_call0 =
        attention_dropout_call(b, h, NH, seq_len, 8 * (g >> 2) + 2 * t + (g & 1), warp_k0 / 8 + ((g >> 1) & 1));
    const uint64_t drop_calls_per_query = ceil_div(seq_len, 8);

    float dk[ND][4], dv[ND][4];
#pragma unroll
    for (int dt = 0; dt < ND; ++dt)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[dt][e] = dv[dt][e] = 0.0f;

    cp_async_wait_all();
    __syncthreads();
    for (int q_tile = first_q_tile; q_tile < num_q_tiles; ++q_tile) {
        const int stage = (q_tile - first_q_tile) & 1;
        if (q_tile > first_q_tile) {
            cp_async_wait_all();
            __syncthreads();
        }
        if (q_tile + 1 < num_q_tiles) {
            load_query_tile(q_tile + 1, stage ^ 1);
            cp_async_commit();
        }
        const int qs0 = q_tile * BQ;
        if (!warp_active || warp_k0 > qs0 + BQ - 1) continue;  // every query of the tile is before every key
        const T* q_tile_s = q_s + stage * BQ * P;
        const T* do_tile_s = do_s + stage * BQ * P;
        const float* lse_t = lse_s + stage * BQ;
        const float* d_t = d_s + stage * BQ;

        float st[NQ][4], dpt[NQ][4];  // S^T = K Q^T and dP^T = V dO^T, 16 keys x BQ queries
#pragma unroll
        for (int nt = 0; nt < NQ; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) st[nt][e] = dpt[nt][e] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) {
            uint32_t ka[4], va[4];
            load_a<P>(ka, k_s, warp * 16, kd * 16, lane);
            load_a<P>(va, v_s, warp * 16, kd * 16, lane);
#pragma unroll
            for (int np = 0; np < NQ / 2; ++np) {
                uint32_t qb[4], ob[4];
                load_b_nk<P>(qb, q_tile_s, np * 16, kd * 16, lane);
                mma_16x8x16<T>(st[2 * np], ka, qb[0], qb[1]);
                mma_16x8x16<T>(st[2 * np + 1], ka, qb[2], qb[3]);
                load_b_nk<P>(ob, do_tile_s, np * 16, kd * 16, lane);
                mma_16x8x16<T>(dpt[2 * np], va, ob[0], ob[1]);
                mma_16x8x16<T>(dpt[2 * np + 1], va, ob[2], ob[3]);
            }
        }
        // Masked: key after query (causal), or query past the sequence end (partial last tile).
        const bool masked_tile = warp_k0 + 15 > qs0 || qs0 + BQ > seq_len;
        TileKeep<NQ> keep;
        if (drop.enabled())
            keep = tile_keep<NQ, 8, 4>(drop, drop_rate.threshold, g, [&](int n) {
                return drop_call0 + static_cast<uint64_t>(qs0 + 16 * n) * drop_calls_per_query;
            });
        // st := dropped P^T, dpt := dS^T
#pragma unroll
        for (int nt = 0; nt < NQ; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int col = nt * 8 + 2 * t + (e & 1), query = qs0 + col, k = key[e >> 1];
                float p = exp2f(fmaf(st[nt][e], scale_log2, -lse_t[col] * kLog2e));
                if (masked_tile && (k > query || query >= seq_len)) p = 0.0f;
                float dpv = dpt[nt][e], pd = p;
                if (drop.enabled()) {
                    pd = keep(nt, e) ? p * drop_scale : 0.0f;
                    dpv = keep(nt, e) ? dpv * drop_scale : 0.0f;
                }
                st[nt][e] = pd;
                dpt[nt][e] = p * (dpv - d_t[col]);
            }
        // dV += Pd^T dO,  dK += dS^T Q
#pragma unroll
        for (int kc = 0; kc < BQ / 16; ++kc) {
            uint32_t pa[4], da[4];
            c_pair_to_a<T>(pa, st[2 * kc], st[2 * kc + 1]);
            c_pair_to_a<T>(da, dpt[2 * kc], dpt[2 * kc + 1]);
#pragma unroll
            for (int dd = 0; dd < HD / 16; ++dd) {
                uint32_t ob[4], qb[4];
                load_b_kn<P>(ob, do_tile_s, kc * 16, dd * 16, lane);
                mma_16x8x16<T>(dv[2 * dd], pa, ob[0], ob[1]);
                mma_16x8x16<T>(dv[2 * dd + 1], pa, ob[2], ob[3]);
                load_b_kn<P>(qb, q_tile_s, kc * 16, dd * 16, lane);
                mma_16x8x16<T>(dk[2 * dd], da, qb[0], qb[1]);
                mma_16x8x16<T>(dk[2 * dd + 1], da, qb[2], qb[3]);
            }
        }
    }
    if (!warp_active) return;
    T* dk_s = k_s + warp * 16 * P;  // this warp's K and V rows: read only by this warp, now done
    T* dv_s = v_s + warp * 16 * P;
    stage_rows<T, HD>(dk_s, dk, softmax_scale, softmax_scale, lane);
    stage_rows<T, HD>(dv_s, dv, 1.0f, 1.0f, lane);
    T* dk_g = dqkv + static_cast<int64_t>(b) * seq_len * row_stride + warp_k0 * row_stride + static_cast<int64_t>(NH + h) * HD;
    const int rows = min(16, seq_len - warp_k0);
    store_rows<T, HD>(dk_g, row_stride, dk_s, rows, lane);
    store_rows<T, HD>(dk_g + NH * HD, row_stride, dv_s, rows, lane);
}

template <typename T, int HD, int NWARPS, int BK>
void forward(T* out, float* lse, const T* qkv, int B, int T_len, int NH, float softmax_scale, DropoutParams drop,
             cudaStream_t stream) {
    constexpr int BQ = 16 * NWARPS;
    const size_t smem = static_cast<size_t>(BQ + 4 * BK) * smem_pitch<HD>() * sizeof(T);
    allow_dynamic_smem(forward_kernel<T, HD, NWARPS, BK>, smem);
    forward_kernel<T, HD, NWARPS, BK><<<dim3(ceil_div(T_len, BQ), NH, B), NWARPS * 32, smem, stream>>>(
        out, lse, qkv, T_len, NH, softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
}

template <typename T, int HD, int NWARPS, int BK>
void backward_dq(T* dqkv, const float* row_dot, const T* dout, const T* qkv, const float* lse, int B, int T_len, int NH,
                 float softmax_scale, DropoutParams drop, cudaStream_t stream) {
    constexpr int BQ = 16 * NWARPS;
    const size_t smem = static_cast<size_t>(2 * BQ + 4 * BK) * smem_pitch<HD>() * sizeof(T);
    allow_dynamic_smem(backward_dq_kernel<T, HD, NWARPS, BK>, smem);
    backward_dq_kernel<T, HD, NWARPS, BK><<<dim3(ceil_div(T_len, BQ), NH, B), NWARPS * 32, smem, stream>>>(
        dqkv, qkv, dout, lse, row_dot, T_len, NH, softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
}

template <typename T, int HD, int NWARPS, int BQ>
void backward_dkdv(T* dqkv, const float* row_dot, const T* dout, const T* qkv, const float* lse, int B, int T_len,
                   int NH, float softmax_scale, DropoutParams drop, cudaStream_t stream) {
    constexpr int BKV = 16 * NWARPS;
    const size_t smem =
        static_cast<size_t>(2 * BKV + 4 * BQ) * smem_pitch<HD>() * sizeof(T) + 4 * BQ * sizeof(float);
    allow_dynamic_smem(backward_dkdv_kernel<T, HD, NWARPS, BQ>, smem);
    backward_dkdv_kernel<T, HD, NWARPS, BQ><<<dim3(ceil_div(T_len, BKV), NH, B), NWARPS * 32, smem, stream>>>(
        dqkv, qkv, dout, lse, row_dot, T_len, NH, softmax_scale, drop);
    CUDA_CHECK_LAUNCH();
}

// Production tile shapes per head dim: warps per block and the streamed tile length of each
// kernel (keys for forward and dQ, queries for dK/dV), each the fastest of the workbench's tile
// sweep (dev/cuda/attention.cu; figures in dev/cuda/attention_notes.md). The HD-128 forward
// takes 8 warps: twice the queries per K/V tile loaded. Larger head dims stream shorter tiles in
// backward to stay within 255 registers (accumulators grow with HD); dK/dV streams 32 queries at
// every head dim, which the sweep also preferred at HD 64.
template <int HD> struct Config {
    static constexpr int kForwardWarps = HD >= 128 ? 8 : 4, kForwardKeys = 64;
    static constexpr int kDqWarps = 4, kDqKeys = HD <= 80 ? 64 : 32;
    static constexpr int kDkdvWarps = 4, kDkdvQueries = 32;
};

}  // namespace tensor_cores
}  // namespace attention_detail
