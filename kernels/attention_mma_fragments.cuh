// Register-fragment building blocks of the tensor-core attention kernels: the mma.sync
// m16n8k16 fragment layouts and the loads that fill them (ldmatrix; cp.async comes from
// kernels/common.cuh), the C-to-A conversion that keeps P and dS in registers, staging of output
// rows, and the dropout keep-bit exchange over score tiles in the C layout. The kernels are in
// kernels/attention_mma_sync.cuh; the function they compute in kernels/attention.cuh.
//
// mma.sync.m16n8k16 fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point
// type"), with g = lane / 4 and t = lane % 4; each 32-bit register holds two consecutive
// 16-bit elements, the lower column (or row, for B) in the low half:
//   A (16 x 16, row-major): a[0] = A[g][2t..2t+1]   a[1] = A[g+8][2t..2t+1]
//                           a[2] = A[g][2t+8..2t+9] a[3] = A[g+8][2t+8..2t+9]
//   B (16 x 8):             b[0] = B[2t..2t+1][g]   b[1] = B[2t+8..2t+9][g]
//   C (16 x 8, fp32):       c[0..1] = C[g][2t..2t+1] c[2..3] = C[g+8][2t..2t+1]
// ldmatrix.x4 loads four 8 x 8 matrices: lanes 8m..8m+7 supply the row addresses of matrix m,
// and register m of lane l receives row l/4, columns 2(l%4)..+1 of matrix m; with .trans it
// receives rows 2(l%4)..+1 of column l/4 instead. Consequences used below:
//   * an A fragment is ldmatrix of the 16 x 16 block with matrices ordered (rows 0-7, cols 0-7),
//     (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 8-15)   ["A order"];
//   * when B^T is stored row-major as X[n][k] (K in Q K^T), B fragments for two n8 tiles are
//     ldmatrix of X with matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7),
//     (n 8-15, k 8-15)   ["B order"]: registers 0, 1 serve n 0-7 and registers 2, 3 n 8-15;
//   * when B is stored row-major as X[k][n] (V in P V), B fragments for two n8 tiles are
//     ldmatrix.trans of X in A order: registers 0, 1 serve n 0-7 and registers 2, 3 n 8-15;
//   * a C tile pair (n8 tiles 2i and 2i+1) is, element for element, the A fragment of k16
//     step i, so P and dS go from one matmul into the next without leaving registers.

#pragma once

#include "kernels/attention_common.cuh"

namespace attention_detail {
namespace tensor_cores {

// Shared-memory rows are padded by 8 elements (16 bytes). For HD in {64, 80, 96, 128} the row
// pitch (144, 176, 208, 272 bytes) is an odd multiple of 16 bytes modulo 128, so the 8 rows of
// one ldmatrix matrix start in 8 distinct 16-byte bank groups: conflict-free without a swizzle.
template <int HD> constexpr int smem_pitch() { return HD + 8; }

__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(p))
                 : "memory");
}
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(p))
                 : "memory");
}

template <typename T> __device__ inline void mma_16x8x16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ inline void mma_16x8x16<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ inline void mma_16x8x16<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <typename T> __device__ inline uint32_t pack_pair(float lo, float hi);
template <> __device__ inline uint32_t pack_pair<__nv_bfloat16>(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) is the low half
    return *reinterpret_cast<const uint32_t*>(&v);
}
template <> __device__ inline uint32_t pack_pair<__half>(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}

// A fragment of the 16 x 16 block at (row0, col0) of a row-major tile (A order, see above).
template <int P, typename T> __device__ inline void load_a(uint32_t (&a)[4], const T* tile, int row0, int col0, int lane) {
    ldmatrix_x4(a, tile + (row0 + (lane & 15)) * P + col0 + ((lane >> 4) << 3));
}
// B fragments of n tiles n0..n0+7 (b[0], b[1]) and n0+8..n0+15 (b[2], b[3]) over k0..k0+15, from a
// tile stored as X[n][k] (B order).
template <int P, typename T> __device__ inline void load_b_nk(uint32_t (&b)[4], const T* tile, int n0, int k0, int lane) {
    ldmatrix_x4(b, tile + (n0 + (lane & 7) + ((lane >> 4) << 3)) * P + k0 + (((lane >> 3) & 1) << 3));
}
// The same from a tile stored as X[k][n] (transposing load, A order).
template <int P, typename T> __device__ inline void load_b_kn(uint32_t (&b)[4], const T* tile, int k0, int n0, int lane) {
    ldmatrix_x4_trans(b, tile + (k0 + (lane & 15)) * P + n0 + ((lane >> 4) << 3));
}

// C tiles 2i and 2i+1 (16 x 16 fp32) -> A fragment of k16 step i, rounded to T.
template <typename T> __device__ inline void c_pair_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
    a[0] = pack_pair<T>(c0[0], c0[1]);
    a[1] = pack_pair<T>(c0[2], c0[3]);
    a[2] = pack_pair<T>(c1[0], c1[1]);
    a[3] = pack_pair<T>(c1[2], c1[3]);
}

// Issues cp.async for ROWS rows of HD elements (global row stride `row_stride`); rows at or past
// `valid_rows` become zeros.
template <int HD, int ROWS, int NTHREADS, typename T>
__device__ inline void load_tile_async(T* dst /*(ROWS, pitch)*/, const T* src, int64_t row_stride, int valid_rows) {
    static_assert(sizeof(T) == 2, "16-bit storage types only");
    constexpr int kChunks = HD / 8;  // 16-byte chunks per row
    for (int i = threadIdx.x; i < ROWS * kChunks; i += NTHREADS) {
        const int row = i / kChunks, col = (i % kChunks) * 8;
        const bool valid = row < valid_rows;
        cp_async_16(dst + row * smem_pitch<HD>() + col, valid ? src + row * row_stride + col : src, valid);
    }
}
template <int N, int NTHREADS>
__device__ inline void load_floats_async(float* dst /*(N)*/, const float* src, int valid) {
    for (int i = threadIdx.x; i < N; i += NTHREADS) cp_async_4(dst + i, i < valid ? src + i : src, i < valid);
}

// A warp's 16 x HD fp32 accumulators (C layout, n8 tiles along HD) -> T rows in shared memory,
// rows g and g+8 multiplied by scale0 and scale1. Packed 32-bit stores: with the padded pitch
// the 32 lanes hit 32 distinct banks. `dst` is rows this warp read before (its Q, K or V tile):
// the __syncwarp orders every lane's earlier reads before any lane's stores, which independent
// thread scheduling does not promise otherwise (compute-sanitizer's racecheck flags it).
template <typename T, int HD>
__device__ inline void stage_rows(T* dst /*(16, pitch)*/, const float (&acc)[HD / 8][4], float scale0, float scale1,
                                  int lane) {
    constexpr int P = smem_pitch<HD>();
    const int g = lane / 4, t = lane % 4;
    __syncwarp();
#pragma unroll
    for (int dt = 0; dt < HD / 8; ++dt) {
        *reinterpret_cast<uint32_t*>(dst + g * P + dt * 8 + 2 * t) = pack_pair<T>(acc[dt][0] * scale0, acc[dt][1] * scale0);
        *reinterpret_cast<uint32_t*>(dst + (g + 8) * P + dt * 8 + 2 * t) =
            pack_pair<T>(acc[dt][2] * scale1, acc[dt][3] * scale1);
    }
}
// Copies the first `valid_rows` staged rows to global memory with 16-byte stores.
template <typename T, int HD>
__device__ inline void store_rows(T* dst, int64_t row_stride, const T* src /*(16, pitch)*/, int valid_rows, int lane) {
    constexpr int kChunks = HD / 8;
    __syncwarp();  // rows were staged by other lanes
    for (int i = lane; i < 16 * kChunks; i += 32) {
        const int row = i / kChunks, col = (i % kChunks) * 8;
        if (row < valid_rows) store16(dst + row * row_stride + col, load16(src + row * smem_pitch<HD>() + col));
    }
}

// Attention dropout on a warp's 16 x 8NT score tile in C fragments. Lane (g, t) holds elements
// (nt, e), e = 0..3, at tile row g + 8 (e >> 1), column 8 nt + 2t + (e & 1):
//   row layout (forward, dQ; S = Q K^T): rows are queries, columns keys;
//   key-row layout (dK/dV; S^T = K Q^T): rows are keys, columns queries.
// The tile needs 16 NT Philox calls (attention_keep: one per query and cell of 8 keys), and the
// 8 values of each call belong to one group of lanes: in the row layout the quad sharing g (cell
// nt of row g + 8i, lane t taking keys 2t, 2t+1), in the key-row layout the 8 lanes sharing t
// (query 8 nt + 2t + (e & 1), cell of keys 8i..8i+7, lane g taking key g). Rather than have every
// lane recompute whole calls, member s of a group computes calls c = GROUP n + s of its group
// (n = 0 .. NT/2 - 1) and stores each call's keep byte (attention_keep_byte) at byte n % 4 of a
// word; transpose_keep_bits then hands every member the flags of its own keys. The group's calls
// are numbered c = 2 nt + (e >> 1) (row layout) or c = 4 nt + e (key-row layout), which puts the
// flag of element (nt, e) at bit 4 (nt % 8) + e of word nt / 8 in both layouts (TileKeep).

// Transposes keep bits within groups of GROUP (4 or 8) lanes, lanes STRIDE apart. Before: member
// s holds in byte j the 8 flags of one call. After: member d holds in byte j, at bits W s .. W s
// + W - 1 (W = 8 / GROUP), member s's flags W d .. W d + W - 1 of byte j. A butterfly: each step
// swaps one bit of the position within the byte with one bit of the member index, with one
// shuffle (cheaper than exchanging whole 32-bit words: 2 or 3 shuffles for 4 calls per lane).
template <int GROUP, int STRIDE> __device__ inline uint32_t transpose_keep_bits(uint32_t bits, int member) {
    static_assert(GROUP == 4 || GROUP == 8, "a group covers the 8 keys of a cell in W = 8 / GROUP bits per lane");
    constexpr int kFirstLevel = GROUP == 4 ? 1 : 0;  // log2(W): position bits below it stay in place
#pragma unroll
    for (int level = kFirstLevel; level < 3; ++level) {
        // Byte positions with bit `level` set; member bit (level - kFirstLevel) trades places with it.
        const uint32_t upper = level == 0 ? 0xAAAAAAAAu : level == 1 ? 0xCCCCCCCCu : 0xF0F0F0F0u;
        const int shift = 1 << level, member_bit = level - kFirstLevel;
        const bool upper_member = (member >> member_bit) & 1;
        const uint32_t send = upper_member ? (bits & ~upper) << shift : (bits & upper) >> shift;
        const uint32_t received = __shfl_xor_sync(0xffffffffu, send, STRIDE << member_bit);
        bits = (bits & (upper_member ? upper : ~upper)) | received;
    }
    return bits;
}

// Keep flags of a warp's score tile (layout above); element (nt, e) is kept iff keep(nt, e).
template <int NT> struct TileKeep {
    uint32_t words[(NT + 7) / 8] = {};
    __device__ bool operator()(int nt, int e) const { return (words[nt >> 3] >> (4 * (nt & 7) + e)) & 1u; }
};

// call_id(n): the Philox call id of this lane's n-th call, group call GROUP n + member. Every lane
// of the warp must take part (shuffles); calls of masked elements are computed like the others.
template <int NT, int GROUP, int STRIDE, typename CallId>
__device__ inline TileKeep<NT> tile_keep(const DropoutParams& drop, uint32_t threshold, int member, CallId call_id) {
    static_assert(NT % 2 == 0, "16 NT calls over 32 lanes");
    TileKeep<NT> keep;
#pragma unroll
    for (int w = 0; w < (NT + 7) / 8; ++w) {
        uint32_t bytes = 0;
#pragma unroll
        for (int j = 0; j < 4 && 4 * w + j < NT / 2; ++j)
            bytes |= attention_keep_byte(drop.random_words(call_id(4 * w + j)), threshold) << (8 * j);
        keep.words[w] = transpose_keep_bits<GROUP, STRIDE>(bytes, member);
    }
    return keep;
}

}  // namespace tensor_cores
}  // namespace attention_detail
