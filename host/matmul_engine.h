// Which code runs the linear layers' GEMMs (kernels/matmul.cuh; the trainer's --matmul-engine).
#pragma once

enum class MatmulEngine {
    cublaslt,  // cuBLASLt, with its epilogues where they pay (the default, and the only fast one)
    simple,    // our own CUDA-core GEMM (kernels/matmul_simple.cuh) and unfused epilogues: a step runs no
               // cuBLASLt kernel, so compute-sanitizer's racecheck and initcheck can check all of it
};
