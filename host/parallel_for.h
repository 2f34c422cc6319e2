// Running independent iterations on several host threads, for host work per row of a batch that
// would otherwise leave the GPU waiting (generation's sampling: a heap over a row of 50k logits
// per sequence and step).
#pragma once

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

// Calls body(i, worker) once for every i in [0, count), on up to `workers` threads (the calling
// thread is worker 0), each taking one contiguous range of i, and returns when all are done. A
// worker index is below min(workers, count), so per-worker scratch can be indexed by it. The
// results do not depend on the number of workers when the iterations are independent. The first
// exception a worker throws (lowest worker index) is rethrown here, after every worker finished.
template <typename Body> void parallel_for(int count, int workers, Body&& body) {
    workers = std::max(1, std::min(workers, count));
    if (count <= 0) return;
    std::vector<std::exception_ptr> errors(workers);
    auto run_range = [&](int worker) {
        const int begin = (int)((long long)count * worker / workers), end = (int)((long long)count * (worker + 1) / workers);
        try {
            for (int i = begin; i < end; ++i) body(i, worker);
        } catch (...) {
            errors[worker] = std::current_exception();
        }
    };
    std::vector<std::thread> threads;
    threads.reserve(workers - 1);
    for (int worker = 1; worker < workers; ++worker) threads.emplace_back(run_range, worker);
    run_range(0);
    for (std::thread& thread : threads) thread.join();
    for (const std::exception_ptr& error : errors)
        if (error) std::rethrow_exception(error);
}

// How many host threads generation's sampling may use: the machine's cores, at most 16 (a batch's
// rows rarely need more; the threads are started afresh for every step).
inline int host_sampling_workers() {
    const unsigned cores = std::thread::hardware_concurrency();
    return (int)std::min(16u, std::max(1u, cores));
}
