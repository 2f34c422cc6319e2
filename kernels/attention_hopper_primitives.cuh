// Hopper (sm_90a) primitives of the wgmma attention kernels (kernels/attention_hopper.cuh):
// asynchronous warpgroup matrix multiplies (wgmma) with their shared-memory descriptors, the
// tensor memory accelerator (TMA: cp.async.bulk.tensor) and its host-side tensor maps,
// mbarriers, and setmaxnreg. Each wrapper is one PTX instruction (PTX ISA 8.x, sections
// "Asynchronous Warpgroup Level Matrix Multiply-Accumulate", "Tensor Copy" and "mbarrier").
// Device code compiles only for sm_90a (the Makefile's GPU_ARCH=90); kernels guard their
// bodies with kHopperDeviceCode.
#pragma once

#include <cuda.h>           // CUtensorMap
#include <cudaTypedefs.h>   // PFN_cuTensorMapEncodeTiled

#include "kernels/attention_common.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "wgmma and setmaxnreg need the sm_90a target: build with -gencode arch=compute_90a,code=sm_90a (GPU_ARCH=90)"
#endif

namespace attention_detail {
namespace hopper {

// True in the sm_90a device pass, the only one whose kernels may use these instructions.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
inline constexpr bool kHopperDeviceCode = true;
#else
inline constexpr bool kHopperDeviceCode = false;
#endif

// ---------------------------------------------------------------------------------------------
// Shared-memory tiles in the 128-byte swizzle. A tile of R rows and C columns (16-bit elements,
// C a multiple of 64) is C/64 column blocks of R rows x 128 bytes; in each group of 8 rows
// (1024 bytes, 1024-byte aligned), the 16-byte chunk c of row r sits at chunk c ^ (r % 8). TMA
// writes (and reads, for stores) this layout when the tensor map says CU_TENSOR_MAP_SWIZZLE_128B,
// and wgmma reads it with swizzle mode 1 in the descriptor. Both are conflict-free in it.

constexpr int kSwizzleBytes = 128;                  // one row of a column block
constexpr int kColumnsPerBlock = kSwizzleBytes / 2; // 16-bit elements
constexpr int kSwizzleGroupBytes = 8 * kSwizzleBytes;

// Byte offset of element (row, col) in a swizzled tile of `rows` rows (16-bit elements).
__device__ __forceinline__ uint32_t swizzled_offset(int rows, int row, int col) {
    const int block = col / kColumnsPerBlock, chunk = (col % kColumnsPerBlock) / 8;
    return static_cast<uint32_t>(block * rows * kSwizzleBytes + row * kSwizzleBytes +
                                 ((chunk ^ (row % 8)) * 16) + (col % 8) * 2);
}

__device__ __forceinline__ uint32_t shared_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// wgmma shared-memory matrix descriptor (PTX ISA "Matrix Descriptor Format"): start address,
// leading-dimension byte offset (LBO), stride-dimension byte offset (SBO), each >> 4, and the
// swizzle mode (1: 128-byte) in bits 62-63.
//   K-major operand (rows of K-contiguous elements: Q and K for S = Q K^T): SBO is the distance
//     between 8-row groups (1024 bytes); LBO is unused with this swizzle (the k16 slice of one
//     instruction stays inside a 128-byte row).
//   N-major operand (K rows of N-contiguous elements: V for O += P V): SBO is the distance
//     between groups of 8 K rows (1024 bytes), LBO the distance between 64-column blocks.
__device__ __forceinline__ uint64_t smem_descriptor(uint32_t address, uint32_t leading_bytes, uint32_t stride_bytes) {
    return static_cast<uint64_t>((address & 0x3FFFF) >> 4) |
           static_cast<uint64_t>((leading_bytes & 0x3FFFF) >> 4) << 16 |
           static_cast<uint64_t>((stride_bytes & 0x3FFFF) >> 4) << 32 | 1ull << 62;
}
// Descriptor of the k16 slice kk (columns 16 kk .. 16 kk + 15) of a K-major swizzled tile.
__device__ __forceinline__ uint64_t k_major_descriptor(uint32_t tile, int rows, int kk) {
    const uint32_t address = tile + (kk / 4) * rows * kSwizzleBytes + (kk % 4) * 32;
    return smem_descriptor(address, 16, kSwizzleGroupBytes);
}
// Descriptor of the k16 slice kk (rows 16 kk .. 16 kk + 15) of an N-major swizzled tile.
__device__ __forceinline__ uint64_t n_major_descriptor(uint32_t tile, int rows, int kk) {
    return smem_descriptor(tile + kk * 16 * kSwizzleBytes, rows * kSwizzleBytes, kSwizzleGroupBytes);
}

// ---------------------------------------------------------------------------------------------
// wgmma. D (64 x N, fp32) += A (64 x 16) B (16 x N), issued by the 128 threads of a warpgroup.
// Accumulator layout (PTX ISA "Register Fragments: wgmma .m64nNk16"): warp w of the warpgroup
// holds rows 16 w + g and 16 w + g + 8 (g = lane / 4, t = lane % 4); d[i][0..1] are columns
// 8 i + 2t, 8 i + 2t + 1 of the first row, d[i][2..3] of the second: per warp, the C layout of
// N/8 mma.sync m16n8 tiles. The A fragment from registers is mma.sync's m16n8k16 A fragment
// per warp, so c_pair_to_a turns S's accumulators into P's A fragments.

#define ATTN_ACC4(d, i) "+f"(d[i][0]), "+f"(d[i][1]), "+f"(d[i][2]), "+f"(d[i][3])
#define ATTN_ACC32(d)                                                                                         \
    ATTN_ACC4(d, 0), ATTN_ACC4(d, 1), ATTN_ACC4(d, 2), ATTN_ACC4(d, 3), ATTN_ACC4(d, 4), ATTN_ACC4(d, 5),     \
        ATTN_ACC4(d, 6), ATTN_ACC4(d, 7)
#define ATTN_ACC64(d)                                                                                         \
    ATTN_ACC32(d), ATTN_ACC4(d, 8), ATTN_ACC4(d, 9), ATTN_ACC4(d, 10), ATTN_ACC4(d, 11), ATTN_ACC4(d, 12),    \
        ATTN_ACC4(d, 13), ATTN_ACC4(d, 14), ATTN_ACC4(d, 15)
#define ATTN_REGS32                                                                                           \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "  \
    "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define ATTN_REGS64                                                                                           \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "  \
    "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, "    \
    "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, "    \
    "%62, %63}"
// Both operands from shared memory (descriptors), neither transposed; `accumulate` 0 overwrites D.
#define ATTN_WGMMA_SS(N, REGS, ACC, A, B, S, TYPE)                                                           \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " S ", 0;\n"                                              \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " " REGS ", " A ", " B       \
                 ", p, 1, 1, 0, 0;\n}\n"                                                                      \
                 : ACC(d)                                                                                     \
                 : "l"(a_descriptor), "l"(b_descriptor), "r"(accumulate))
// A from registers, B from shared memory N-major (imm-trans-b = 1).
#define ATTN_WGMMA_RS(N, REGS, ACC, A0, B, S, TYPE)                                                          \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " S ", 0;\n"                                              \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " " REGS ", {" A0 "}, " B  \
                 ", p, 1, 1, 1;\n}\n"                                                                         \
                 : ACC(d)                                                                                     \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_descriptor), "r"(accumulate))

template <typename T, int N>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 8][4], uint64_t a_descriptor, uint64_t b_descriptor,
                                         int accumulate) {
    static_assert(N == 64 || N == 128, "wgmma_ss: N is 64 or 128");
    constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
    if constexpr (N == 64) {
        if constexpr (bf16) ATTN_WGMMA_SS(64, ATTN_REGS32, ATTN_ACC32, "%32", "%33", "%34", "bf16");
        else ATTN_WGMMA_SS(64, ATTN_REGS32, ATTN_ACC32, "%32", "%33", "%34", "f16");
    } else {
        if constexpr (bf16) ATTN_WGMMA_SS(128, ATTN_REGS64, ATTN_ACC64, "%64", "%65", "%66", "bf16");
        else ATTN_WGMMA_SS(128, ATTN_REGS64, ATTN_ACC64, "%64", "%65", "%66", "f16");
    }
}

template <typename T, int N>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t b_descriptor,
                                         int accumulate) {
    static_assert(N == 64 || N == 128, "wgmma_rs: N is 64 or 128");
    constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
    if constexpr (N == 64) {
        if constexpr (bf16) ATTN_WGMMA_RS(64, ATTN_REGS32, ATTN_ACC32, "%32, %33, %34, %35", "%36", "%37", "bf16");
        else ATTN_WGMMA_RS(64, ATTN_REGS32, ATTN_ACC32, "%32, %33, %34, %35", "%36", "%37", "f16");
    } else {
        if constexpr (bf16) ATTN_WGMMA_RS(128, ATTN_REGS64, ATTN_ACC64, "%64, %65, %66, %67", "%68", "%69", "bf16");
        else ATTN_WGMMA_RS(128, ATTN_REGS64, ATTN_ACC64, "%64, %65, %66, %67", "%68", "%69", "f16");
    }
}

#undef ATTN_WGMMA_RS
#undef ATTN_WGMMA_SS
#undef ATTN_REGS64
#undef ATTN_REGS32
#undef ATTN_ACC64
#undef ATTN_ACC32
#undef ATTN_ACC4

// D (64 x N) = A B^T with both operands K-major swizzled tiles in shared memory, over a K of HD:
// A the 64 rows at `a` (in column block 0) of a tile of a_rows rows, B the N rows of the tile at
// `b` of b_rows rows. Issues HD / 16 wgmma (no commit).
template <typename T, int N, int HD>
__device__ __forceinline__ void wgmma_rows_times_rows(float (&d)[N / 8][4], uint32_t a, int a_rows, uint32_t b,
                                                      int b_rows) {
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
        wgmma_ss<T, N>(d, k_major_descriptor(a, a_rows, kk), k_major_descriptor(b, b_rows, kk), kk > 0);
}
// D (64 x N) += A X with A (64 x 16 KSTEPS) in A fragments and X the first 16 KSTEPS rows of the
// N-major swizzled tile at `x` of x_rows rows. Issues KSTEPS wgmma (no commit).
template <typename T, int N, int KSTEPS>
__device__ __forceinline__ void wgmma_fragments_times_rows(float (&d)[N / 8][4], const uint32_t (&a)[KSTEPS][4],
                                                           uint32_t x, int x_rows) {
#pragma unroll
    for (int kk = 0; kk < KSTEPS; ++kk) wgmma_rs<T, N>(d, a[kk], n_major_descriptor(x, x_rows, kk), 1);
}

// Orders register accesses around the asynchronous multiplies: wgmma_fence before the first
// wgmma that reads registers written by ordinary instructions; commit closes a group; wait<N>
// blocks until at most N groups are pending. keep_in_place(x) stops the compiler from moving an
// accumulator across these points (it cannot see that wgmma writes it late).
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
template <int R> __device__ __forceinline__ void keep_in_place(float (&x)[R][4]) {
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(x[i][e])::"memory");
}

// ---------------------------------------------------------------------------------------------
// mbarriers (64-bit, in shared memory; addresses are shared-window addresses).

__device__ __forceinline__ void mbarrier_init(uint32_t barrier, uint32_t arrivals) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(barrier), "r"(arrivals) : "memory");
}
// Makes the initialised barriers visible to the copy engine (then a __syncthreads for the threads).
__device__ __forceinline__ void mbarrier_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
// One arrival that also announces `bytes` of TMA transactions for the current phase.
__device__ __forceinline__ void mbarrier_arrive_expect_bytes(uint32_t barrier, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(barrier), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbarrier_arrive(uint32_t barrier) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(barrier) : "memory");
}
// Waits until the phase with parity `parity` has completed.
__device__ __forceinline__ void mbarrier_wait(uint32_t barrier, uint32_t parity) {
    uint32_t done = 0;
    do {
        asm volatile("{\n.reg .pred complete;\n"
                     "mbarrier.try_wait.parity.shared::cta.b64 complete, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, complete;\n}\n"
                     : "=r"(done)
                     : "r"(barrier), "r"(parity)
                     : "memory");
    } while (!done);
}

// Synchronises the `threads` threads (whole warps) that use named barrier `id` (1..15; 0 is
// __syncthreads).
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// setmaxnreg moves registers between the warpgroups of a block: every thread starts with the
// launch's count (what __launch_bounds__(threads, 1) allows: 65536 / threads, rounded down to a
// multiple of 8), and .inc waits until the block's own .dec calls have freed what it asks for, so a
// split whose producer frees too little hangs. Whether the producer's cut pays for the raise:
constexpr bool register_split_balances(int threads, int producer_registers, int consumers,
                                       int consumer_registers) {
    const int launch_registers = 65536 / threads / 8 * 8;
    return launch_registers - producer_registers >= consumers * (consumer_registers - launch_registers);
}

// A warp-specialized block: one producer warpgroup (TMA copies) and CONSUMERS consumer
// warpgroups (wgmma). The producer keeps 24 registers per thread and the consumers share the rest
// of the SM's 65536 (in multiples of 8): 240 each for two consumer warpgroups, 160 for three.
template <int CONSUMERS> struct WarpSpecializedBlock {
    static constexpr int kConsumers = CONSUMERS;
    static constexpr int kThreads = 128 * (1 + kConsumers);
    static constexpr int kProducerRegisters = 24;
    static constexpr int kConsumerRegisters = (65536 / 128 - kProducerRegisters) / kConsumers / 8 * 8;
    static_assert(register_split_balances(kThreads, kProducerRegisters, kConsumers, kConsumerRegisters),
                  "setmaxnreg: the producer must free the registers the consumers take");
};

// Register budget of the calling warpgroup; every warp of the warpgroup executes it.
template <int R> __device__ __forceinline__ void setmaxnreg_increase() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> __device__ __forceinline__ void setmaxnreg_decrease() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}

// The block's dynamic shared memory, its start rounded up to the 1024 bytes the 128-byte swizzle
// needs (each block shape asks for 1024 bytes of slack).
__device__ __forceinline__ uint32_t swizzle_aligned_shared_memory() {
    extern __shared__ __align__(1024) unsigned char dynamic_smem[];
    return (shared_address(dynamic_smem) + 1023u) & ~1023u;
}

// The roles of a warp-specialized block C: warpgroup 0 gives up its registers and runs produce();
// every other warpgroup takes them and runs consume(consumer), consumer = 0, 1, ... .
template <typename C, typename Produce, typename Consume>
__device__ __forceinline__ void run_warp_specialized(Produce&& produce, Consume&& consume) {
    const int warpgroup = threadIdx.x / 128;
    if (warpgroup == 0) {
        setmaxnreg_decrease<C::kProducerRegisters>();
        produce();
    } else {
        setmaxnreg_increase<C::kConsumerRegisters>();
        consume(warpgroup - 1);
    }
}

// ---------------------------------------------------------------------------------------------
// TMA. The tensor map lives in kernel parameter space (__grid_constant__); coordinates are
// element indices, innermost first. Loads complete on an mbarrier; stores are bulk groups.

__device__ __forceinline__ void tma_load_4d(uint32_t destination, const CUtensorMap& map, int c0, int c1, int c2,
                                            int c3, uint32_t barrier) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
        "[%6];\n" ::"r"(destination),
        "l"(reinterpret_cast<uint64_t>(&map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(barrier)
        : "memory");
}
__device__ __forceinline__ void tma_store_4d(const CUtensorMap& map, int c0, int c1, int c2, int c3, uint32_t source) {
    asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%1, %2, %3, %4}], [%5];\n" ::"l"(
                     reinterpret_cast<uint64_t>(&map)),
                 "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(source)
                 : "memory");
}
__device__ __forceinline__ void tma_store_commit_and_wait() {
    asm volatile("cp.async.bulk.commit_group;\ncp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
// Orders this thread's ordinary shared-memory writes before later copy-engine reads of them.
__device__ __forceinline__ void fence_shared_for_copy_engine() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Host: the driver's tensor-map encoder, through the runtime (no -lcuda link).
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
    static const PFN_cuTensorMapEncodeTiled_v12000 encoder = [] {
        void* function = nullptr;
        cudaDriverEntryPointQueryResult status{};
        CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000, cudaEnableDefault,
                                                    &status));
        REQUIRE(status == cudaDriverEntryPointSuccess && function != nullptr,
                "attention: the CUDA driver has no cuTensorMapEncodeTiled (needs a CUDA 12+ driver)");
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function);
    }();
    return encoder;
}

// The head dim of the tiles the wgmma kernels use for a tensor's head dim: 64 and 128 as they are,
// 80 and 96 on the 128-wide tiles. The tensor maps describe the tensor's own head dim, so TMA loads
// the columns past it as zeros (they add nothing to Q K^T, and P V, dV, dK and dQ get zero columns
// there) and the stores skip them. The price is the padded columns' multiplies (1.6x at 80, 1.33x
// at 96), against the mma.sync kernels' lower throughput.
constexpr int tile_head_dim(int head_dim) { return head_dim <= 64 ? 64 : 128; }

inline void check_tile_head_dim(const char* who, int tile_hd, int head_dim) {
    REQUIRE(tile_head_dim(head_dim) == tile_hd && head_dim % 16 == 0,
            "%s: head dim %d does not run on %d-wide tiles", who, head_dim, tile_hd);
}

// Tensor map of the rows of one head in a (B, T, slots, HD) tensor of 16-bit elements (qkv:
// slots = 3 NH, the slot of head h's q, k, v being h, NH + h, 2 NH + h; out: slots = NH), as 4-D
// (HD, T, slots, B), boxes of 64 columns x `box_rows` rows in the 128-byte swizzle. Rows past T
// are out of bounds: loads fill them with zeros, stores skip them.
template <typename T>
CUtensorMap head_rows_tensor_map(const T* base, int B, int T_len, int slots, int HD, int box_rows) {
    static_assert(sizeof(T) == 2, "16-bit elements");
    CUtensorMap map;
    const cuuint64_t dims[4] = {static_cast<cuuint64_t>(HD), static_cast<cuuint64_t>(T_len),
                                static_cast<cuuint64_t>(slots), static_cast<cuuint64_t>(B)};
    const cuuint64_t row_bytes = static_cast<cuuint64_t>(slots) * HD * sizeof(T);
    const cuuint64_t strides[3] = {row_bytes, static_cast<cuuint64_t>(HD) * sizeof(T), row_bytes * T_len};
    const cuuint32_t box[4] = {static_cast<cuuint32_t>(kColumnsPerBlock), static_cast<cuuint32_t>(box_rows), 1, 1};
    const cuuint32_t element_strides[4] = {1, 1, 1, 1};
    const CUtensorMapDataType type =
        std::is_same<T, __nv_bfloat16>::value ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    const CUresult result = tensor_map_encoder()(
        &map, type, 4, const_cast<T*>(base), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
        CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    REQUIRE(result == CUDA_SUCCESS,
            "attention: cuTensorMapEncodeTiled failed (error %d) for B=%d T=%d slots=%d HD=%d; the tensor must be "
            "16-byte aligned", static_cast<int>(result), B, T_len, slots, HD);
    return map;
}

}  // namespace hopper
}  // namespace attention_detail
