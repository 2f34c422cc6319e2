// Causal multi-head attention (FlashAttention): forward and deterministic backward.
//
// Math, per batch b and head h, with s = softmax_scale and queries/keys/values q_i, k_j, v_j:
//   S_ij = s * q_i . k_j  for j <= i (causal; j > i is masked out)
//   P_ij = exp(S_ij - lse_i),  lse_i = log sum_j exp(S_ij)            (the row's log-sum-exp)
//   Pd_ij = P_ij * keep_ij * c                                         (attention dropout)
//   O_i = sum_j Pd_ij v_j
// Backward, with dO the gradient of O:
//   dV_j = sum_i Pd_ij dO_i
//   dP_ij = (dO_i . v_j) * keep_ij * c
//   D_i = sum_j P_ij dP_ij = dO_i . O_i                                 (one dot product per row)
//   dS_ij = P_ij (dP_ij - D_i)
//   dQ_i = s * sum_j dS_ij k_j,   dK_j = s * sum_i dS_ij q_i
//
// Fused structure. The T x T matrices S and P never reach memory: forward streams key/value
// tiles through shared memory and keeps a running (max, sum) per query row (online softmax),
// saving only O and lse (memory linear in T). Backward recomputes P from lse. The dropout mask
// is regenerated from DropoutParams, so nothing mask-sized is stored either.
//
// Dropout mask (attention_keep in kernels/common.cuh): one Philox-4x32-10 call per (b, h, query
// i, cell of 8 keys j >> 3), call id ((b*NH + h)*T + i) * ceil(T/8) + (j >> 3); its four words
// hold eight 16-bit values, key j taking half (j & 1) of word (j & 7) >> 1; keep_ij iff the
// value >= threshold = round(p * 65536), and c = 1 / (1 - threshold / 65536) (the effective
// rate is p rounded to a multiple of 2^-16). Philox dominates the cost of dropout, so the
// tensor-core kernels compute each call once per warp and trade the keep bits between the lanes
// that hold its 8 keys (see tile_keep): 1/8 of a call per element in all three kernels.
//
// Determinism: no floating-point atomics. Backward is three kernels: D = rowsum(dO * O); dK and
// dV by key tile (each block loops over the query tiles that see its keys); dQ by query tile
// (each block loops over its key tiles). The price is computing S and dP twice (7 matmuls per
// tile pair instead of FlashAttention-2's 5 with atomic dQ); see dev/cuda/attention_notes.md.
//
// Launch order: grids are (tiles, NH, B) with the tile index fastest, so the blocks running at
// once are the tiles of a few heads and share those heads' K/V (forward, dQ) or Q/dO (dK/dV) in
// L2. With heads fastest, the resident blocks span every head of a batch, whose qkv is several
// times larger than L2, and the kernels become memory-bound (profile in dev/cuda/attention_notes.md).
//
// Kernel families compute the same function, each in its own file:
//   TensorCores: FlashAttention-2-style kernels on mma.sync m16n8k16 (fp32 accumulation),
//                operands fetched with ldmatrix, tiles double-buffered with cp.async
//                (kernels/attention_mma_sync.cuh, fragments in kernels/attention_mma_fragments.cuh).
//                Any GPU from sm_80 on.
//   Hopper:      FlashAttention-3-style forward, dK/dV and dQ on sm_90a: TMA copies, wgmma,
//                a producer warp and two consumer warpgroups (kernels/attention_hopper.cuh,
//                kernels/attention_hopper_backward.cuh), tiles of head dim 64 and 128 (80 and 96
//                run on the 128-wide tiles, their extra columns zero); D = rowsum(dO * O) is the
//                common kernel.
//   CudaCores:   the same tiling in plain fp32 on CUDA cores, 32 x 32 tiles. Several times
//                slower; kept as the trusted fallback and as variant 1 of the dev/cuda workbench
//                (kernels/attention_cuda_cores.cuh).
// Pieces all use (argument checks, head-dim dispatch, D = rowsum(dO * O)) are in
// kernels/attention_common.cuh.
//
// attention_forward_using/attention_backward_using take the family as an argument (the families
// can be mixed: their O and lse agree); resolve_attention_kernel() turns a run's choice into one.
//
// Layouts: qkv (B, T, 3, NH, HD) packed as the QKV matmul writes it (row stride 3*NH*HD);
// out and dout (B, T, NH, HD); lse (B, NH, T), natural log; dqkv like qkv.
#pragma once

#include "host/attention_kernel.h"
#include "kernels/attention_common.cuh"
#include "kernels/attention_cuda_cores.cuh"
#include "kernels/attention_hopper.cuh"
#include "kernels/attention_hopper_backward.cuh"
#include "kernels/attention_mma_sync.cuh"

inline const char* attention_kernel_name(AttentionKernel kernel) {
    switch (kernel) {
        case AttentionKernel::TensorCores: return "tensor cores (mma.sync)";
        case AttentionKernel::Hopper: return "Hopper tensor cores (wgmma + TMA forward and backward)";
        case AttentionKernel::CudaCores: break;
    }
    return "CUDA cores (fp32)";
}

// Whether AttentionKernel::Hopper can run here: a compute capability 9.0 GPU and a binary built
// for sm_90a (GPU_ARCH=90).
inline bool attention_hopper_available() { return attention_detail::hopper::forward_available(); }

// The family a run asked for (--attention-kernel), checked against this GPU and build.
inline AttentionKernel resolve_attention_kernel(AttentionKernelChoice choice) {
    switch (choice) {
        case AttentionKernelChoice::automatic: break;
        case AttentionKernelChoice::hopper:
            REQUIRE(attention_hopper_available(),
                    "--attention-kernel hopper: the Hopper kernels need a compute capability 9.0 GPU and a build for "
                    "it (make GPU_ARCH=90); use --attention-kernel auto or tensor-cores");
            return AttentionKernel::Hopper;
        case AttentionKernelChoice::tensor_cores: return AttentionKernel::TensorCores;
        case AttentionKernelChoice::cuda_cores: return AttentionKernel::CudaCores;
    }
    return attention_hopper_available() ? AttentionKernel::Hopper : AttentionKernel::TensorCores;
}

// Floats of scratch attention_backward needs: D = rowsum(dO * O), one per (b, h, query).
inline size_t attention_backward_scratch_floats(int B, int T, int NH, int HD) {
    (void)HD;
    return static_cast<size_t>(B) * NH * T;
}

// =============================================================================================
// Host launchers (contract of the trainer).

template <typename T>
void attention_forward_using(AttentionKernel kernel, T* out /*(B,T,NH,HD)*/, float* lse /*(B,NH,T)*/,
                             const T* qkv /*(B,T,3,NH,HD)*/, int B, int T_len, int NH, int HD, float softmax_scale,
                             DropoutParams drop /*element ((b*NH+h)*T+q)*T+k*/, cudaStream_t stream) {
    attention_detail::check_attention_arguments("attention_forward", qkv, out, B, T_len, NH, HD, softmax_scale, drop);
    REQUIRE(kernel != AttentionKernel::Hopper || attention_hopper_available(),
            "attention_forward: the Hopper kernels need a compute capability 9.0 GPU and a build for it "
            "(make GPU_ARCH=90)");
    attention_detail::dispatch_head_dim(HD, [&](auto head_dim) {
        constexpr int D = decltype(head_dim)::value;
        using Config = attention_detail::tensor_cores::Config<D>;
        if (kernel == AttentionKernel::Hopper) {
            constexpr int kTileHD = attention_detail::hopper::tile_head_dim(D);
            attention_detail::hopper::forward<T, kTileHD>(out, lse, qkv, B, T_len, NH, D, softmax_scale, drop, stream);
            return;
        }
        if (kernel == AttentionKernel::CudaCores)
            attention_detail::cuda_cores::forward<T, D>(out, lse, qkv, B, T_len, NH, softmax_scale, drop, stream);
        else
            attention_detail::tensor_cores::forward<T, D, Config::kForwardWarps, Config::kForwardKeys>(
                out, lse, qkv, B, T_len, NH, softmax_scale, drop, stream);
    });
}

template <typename T>
void attention_backward_using(AttentionKernel kernel, T* dqkv /*(B,T,3,NH,HD) overwritten*/,
                              float* scratch /*attention_backward_scratch_floats(B,T,NH,HD)*/,
                              const T* dout /*(B,T,NH,HD)*/, const T* qkv /*(B,T,3,NH,HD)*/,
                              const T* out /*(B,T,NH,HD)*/, const float* lse /*(B,NH,T)*/, int B, int T_len, int NH,
                              int HD, float softmax_scale, DropoutParams drop, cudaStream_t stream) {
    attention_detail::check_attention_arguments("attention_backward", qkv, out, B, T_len, NH, HD, softmax_scale, drop);
    REQUIRE(is_aligned16(dqkv) && is_aligned16(dout), "attention_backward: dqkv and dout must be 16-byte aligned");
    REQUIRE(scratch != nullptr, "attention_backward: scratch of attention_backward_scratch_floats() floats is required");
    REQUIRE(kernel != AttentionKernel::Hopper || attention_hopper_available(),
            "attention_backward: the Hopper kernels need a compute capability 9.0 GPU and a build for it "
            "(make GPU_ARCH=90)");
    float* row_dot = scratch;  // (B, NH, T): D = rowsum(dO * O)
    attention_detail::attention_backward_row_dot<T>(row_dot, dout, out, B, T_len, NH, HD, stream);
    attention_detail::dispatch_head_dim(HD, [&](auto head_dim) {
        constexpr int D = decltype(head_dim)::value;
        namespace tc = attention_detail::tensor_cores;
        using Config = tc::Config<D>;
        if (kernel != AttentionKernel::CudaCores) {  // TensorCores and Hopper
            if (kernel == AttentionKernel::Hopper) {
                namespace hopper = attention_detail::hopper;
                constexpr int kTileHD = hopper::tile_head_dim(D);
                hopper::backward_dkdv<T, kTileHD>(dqkv, row_dot, dout, qkv, lse, B, T_len, NH, D, softmax_scale, drop,
                                                  stream);
                hopper::backward_dq<T, kTileHD>(dqkv, row_dot, dout, qkv, lse, B, T_len, NH, D, softmax_scale, drop,
                                                stream);
                return;
            }
            tc::backward_dkdv<T, D, Config::kDkdvWarps, Config::kDkdvQueries>(dqkv, row_dot, dout, qkv, lse, B, T_len,
                                                                              NH, softmax_scale, drop, stream);
            tc::backward_dq<T, D, Config::kDqWarps, Config::kDqKeys>(dqkv, row_dot, dout, qkv, lse, B, T_len, NH,
                                                                     softmax_scale, drop, stream);
        } else {
            attention_detail::cuda_cores::backward<T, D>(dqkv, row_dot, dout, qkv, lse, B, T_len, NH, softmax_scale,
                                                         drop, stream);
        }
    });
}
