// REQUIRE: a caller's assumption (a shape, an alignment, a rank in range) checked where it is
// relied on; a violation is a programming error, so it stops the process with the condition, the
// file and line, and a message saying what was given.
//
// Plain C++: host code and CUDA code share it (kernels reach it through host/cuda_check.h).
#pragma once

#include <cstdio>
#include <cstdlib>

#define REQUIRE(condition, ...)                                                             \
    do {                                                                                    \
        if (!(condition)) {                                                                 \
            std::fprintf(stderr, "%s:%d: requirement failed: %s\n  ", __FILE__, __LINE__,  \
                         #condition);                                                       \
            std::fprintf(stderr, __VA_ARGS__);                                              \
            std::fprintf(stderr, "\n");                                                     \
            std::exit(EXIT_FAILURE);                                                        \
        }                                                                                   \
    } while (0)
