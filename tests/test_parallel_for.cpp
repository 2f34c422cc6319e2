// host/parallel_for.h: every iteration exactly once, worker indices in range, the same results
// for any number of workers, and a worker's exception reaches the caller.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "host/parallel_for.h"

TEST(ParallelForTest, EveryIterationOnceWithWorkerIndicesInRange) {
    for (int count : {0, 1, 5, 32, 1000})
        for (int workers : {1, 3, 8, 64}) {
            std::vector<std::atomic<int>> visits(count);
            std::atomic<bool> worker_out_of_range{false};
            const int expected_workers = std::max(1, std::min(workers, count));
            parallel_for(count, workers, [&](int i, int worker) {
                visits[i].fetch_add(1);
                if (worker < 0 || worker >= expected_workers) worker_out_of_range = true;
            });
            for (int i = 0; i < count; ++i) EXPECT_EQ(visits[i].load(), 1) << "count " << count << ", workers " << workers;
            EXPECT_FALSE(worker_out_of_range) << "count " << count << ", workers " << workers;
        }
}

TEST(ParallelForTest, ResultsDoNotDependOnTheNumberOfWorkers) {
    auto run = [](int workers) {
        std::vector<double> out(257);
        std::vector<std::vector<double>> scratch(workers, std::vector<double>(8));
        parallel_for((int)out.size(), workers, [&](int i, int worker) {
            std::vector<double>& s = scratch[worker];
            for (int j = 0; j < 8; ++j) s[j] = (i + 1) * (j + 0.5);
            double sum = 0.0;
            for (double v : s) sum += v / 3.0;
            out[i] = sum;
        });
        return out;
    };
    const std::vector<double> one = run(1);
    EXPECT_EQ(run(4), one);
    EXPECT_EQ(run(16), one);
}

TEST(ParallelForTest, AWorkersExceptionReachesTheCaller) {
    EXPECT_THROW(parallel_for(100, 4,
                              [](int i, int) {
                                  if (i == 77) throw std::runtime_error("row 77");
                              }),
                 std::runtime_error);
    EXPECT_THROW(parallel_for(3, 1, [](int i, int) { if (i == 2) throw std::invalid_argument("x"); }),
                 std::invalid_argument);
}
