// The collective watchdog: a rank whose peer dies or hangs must not hang with it.
//
// DistributedContext (train/nccl_context.cuh) owns one per multi-rank process:
//   - Every collective is followed by an event on the communication stream (watch()). A thread
//     polls the oldest unfinished one (cudaEventQuery never blocks) and the communicator's
//     asynchronous error state. When a collective has been pending longer than the timeout, or
//     NCCL reports an error (a peer's connection closed), the watchdog prints which rank and
//     which operation, calls ncclCommAbort (which also stops the NCCL kernels that spin waiting
//     for the dead peer), and exits the process with status 1. Whatever the main thread was
//     blocked in (a stream synchronization, a device-to-host copy) does not matter.
//   - ncclCommAbort itself is given 30 s (it has hung in some NCCL versions); then the process
//     exits anyway. So a dead peer stops every other rank within timeout + 1 s polling + 30 s at
//     worst.
//   - abort_and_exit() is also the main thread's way out when an NCCL call fails or does not
//     complete in time (DistributedContext::wait_for_nccl).
//   - Under the --nproc launcher, mpirun or srun, the launcher usually kills the other ranks as
//     soon as one dies; the watchdog covers hangs and launchers that do not.
//   - The timeout must exceed the longest time one rank can legitimately wait for the others at a
//     collective (e.g. a rank-0-only evaluation or checkpoint write between two collectives).
//
// Header-only, compiled with nvcc; uses NCCL when USE_NCCL is defined.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <cuda_runtime.h>

#include "host/cuda_check.h"

#ifdef USE_NCCL
#include <nccl.h>
#endif

namespace distributed {

// Writes everything buffered on stdout without waiting on a lock another thread might hold.
inline void flush_stdout_if_possible() {
    if (ftrylockfile(stdout) == 0) {
        fflush_unlocked(stdout);
        funlockfile(stdout);
    }
}

class CollectiveWatchdog {
  public:
    // `rank` and `timeout_s` for the messages and the limit; `device` is the GPU the polling
    // thread queries.
    CollectiveWatchdog(int rank, int device, double timeout_s) : rank_(rank), device_(device), timeout_s_(timeout_s) {}

    CollectiveWatchdog(const CollectiveWatchdog&) = delete;
    CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

    ~CollectiveWatchdog() {
        stop();
        for (const Pending& pending : pending_) cudaEventDestroy(pending.event);
        for (cudaEvent_t event : free_events_) cudaEventDestroy(event);
    }

#ifdef USE_NCCL
    // The communicator to poll and to abort, as soon as ncclCommInitRankConfig has handed it out
    // (its setup can fail or time out too).
    void attach(ncclComm_t comm) { comm_ = comm; }
#endif

    // Starts the polling thread.
    void start() { thread_ = std::thread([this] { poll_loop(); }); }

    // Stops and joins the polling thread (the process goes on: a normal shutdown).
    void stop() {
        if (!thread_.joinable()) return;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        thread_.join();
    }

    // Puts the work enqueued on `stream` so far under the timeout, named `what` in messages.
    void watch(cudaStream_t stream, const char* what) {
        std::lock_guard<std::mutex> lock(mutex_);
        cudaEvent_t event = nullptr;
        if (free_events_.empty()) {
            CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
        } else {
            event = free_events_.back();
            free_events_.pop_back();
        }
        CUDA_CHECK(cudaEventRecord(event, stream));
        pending_.push_back({event, what, std::chrono::steady_clock::now()});
    }

    // Ends this process after an unrecoverable communication failure (from any thread, once).
    [[noreturn]] void abort_and_exit(const char* reason) {
        if (aborting_.exchange(true)) {
            for (;;) pause();  // another thread is already aborting and will end the process
        }
        flush_stdout_if_possible();
        std::fprintf(stderr,
                     "[rank %d] distributed failure: %s\n"
                     "[rank %d] aborting the NCCL communicator and exiting; look at the other ranks' output for the "
                     "first failure, then resume from the last checkpoint (--nccl-timeout sets the limit, now %.0f s)\n",
                     rank_, reason, rank_, timeout_s_);
        std::thread([rank = rank_] {
            std::this_thread::sleep_for(std::chrono::seconds(30));
            std::fprintf(stderr, "[rank %d] ncclCommAbort did not return within 30 s; exiting anyway\n", rank);
            _exit(EXIT_FAILURE);
        }).detach();
#ifdef USE_NCCL
        if (comm_) ncclCommAbort(comm_);
#endif
        _exit(EXIT_FAILURE);
    }

  private:
    struct Pending {
        cudaEvent_t event;
        std::string what;
        std::chrono::steady_clock::time_point enqueued;
    };

    const int rank_;
    const int device_;
    const double timeout_s_;
#ifdef USE_NCCL
    ncclComm_t comm_ = nullptr;
#endif

    std::thread thread_;
    std::mutex mutex_;  // guards pending_, free_events_, stopping_
    std::condition_variable wake_;
    std::deque<Pending> pending_;  // in enqueue order; the stream completes them in that order
    std::vector<cudaEvent_t> free_events_;
    bool stopping_ = false;
    std::atomic<bool> aborting_{false};

    void poll_loop() {
        cudaSetDevice(device_);
        // A CUDA graph captured in the global mode by the main thread forbids "unsafe" calls on
        // every thread in that mode; an event query of unrelated work is safe, so this thread opts out.
        cudaStreamCaptureMode relaxed = cudaStreamCaptureModeRelaxed;
        cudaThreadExchangeStreamCaptureMode(&relaxed);
        const auto poll_interval = std::chrono::duration<double>(std::min(1.0, timeout_s_ / 10));
        std::unique_lock<std::mutex> lock(mutex_);
        while (!stopping_) {
            wake_.wait_for(lock, poll_interval);
            if (aborting_) return;  // the main thread is aborting the communicator: hands off it
            while (!pending_.empty()) {
                const cudaError_t status = cudaEventQuery(pending_.front().event);
                if (status == cudaErrorNotReady) break;
                if (status != cudaSuccess) {
                    const std::string reason = "CUDA error while \"" + pending_.front().what +
                                               "\" was in flight: " + cudaGetErrorString(status);
                    lock.unlock();
                    abort_and_exit(reason.c_str());
                }
                free_events_.push_back(pending_.front().event);
                pending_.pop_front();
            }
#ifdef USE_NCCL
            ncclResult_t async_error = ncclSuccess;
            ncclCommGetAsyncError(comm_, &async_error);
            if (async_error != ncclSuccess && async_error != ncclInProgress) {
                const std::string reason = std::string("NCCL reported ") + ncclGetErrorString(async_error) + " (" +
                                           ncclGetLastError(comm_) + ")" +
                                           (pending_.empty() ? "" : " during \"" + pending_.front().what + "\"") +
                                           ": a peer rank probably failed";
                lock.unlock();
                abort_and_exit(reason.c_str());
            }
#endif
            if (!pending_.empty()) {
                const double waited =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - pending_.front().enqueued).count();
                if (waited > timeout_s_) {
                    char reason[512];
                    std::snprintf(reason, sizeof reason,
                                  "\"%s\" did not complete within %.0f s: another rank probably died or hung",
                                  pending_.front().what.c_str(), timeout_s_);
                    lock.unlock();
                    abort_and_exit(reason);
                }
            }
        }
    }
};

}  // namespace distributed
