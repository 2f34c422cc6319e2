// Every kernel, copy and memset of the profiled step of a normal, loaded run: a CUPTI activity
// trace that the CUDA driver loads into the trainer (CUDA_INJECTION64_PATH), for
// dev/bench/step_breakdown.sh. Unlike Nsight Compute, which replays each kernel alone, the trace
// times kernels as they ran back to back, at the clock the loaded GPU held; the spaces between
// them are the GPU's idle time.
//
//   make build/dev/bench/libkernel_trace.so
//   CUDA_INJECTION64_PATH=build/dev/bench/libkernel_trace.so KERNEL_TRACE_FILE=trace.csv
//   ./train_gpt2cu ... --profile-step 8      (the two variables in the trainer's environment)
//
// The records kept are those that start between the trainer's cudaProfilerStart and its
// cudaProfilerStop (--profile-step N brackets step N). Recording itself runs from the start of the
// process: enabled at the step's start instead, CUPTI's set-up put a 5.5 ms idle space at the
// start of the traced step (gpt2s on an H100), which no untraced step has. At the stop the records
// are written to KERNEL_TRACE_FILE, one CSV row each: kind,start_ns,end_ns,stream,name (kernel
// names demangled). A run that never reaches the stop writes no file, and any CUPTI failure is
// reported on stderr and leaves the trace unwritten.
#include <cupti.h>
#include <cxxabi.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace {

struct Record {
    const char* kind;
    uint64_t start_ns, end_ns;
    uint32_t stream;
    std::string name;
};

// The driver calls InitializeInjection once per process, and CUPTI's callbacks take no user
// state for activity buffers: the tracer's state is therefore one object for the process.
struct Tracer {
    std::mutex mutex;
    std::vector<Record> records;
    std::string path;
    uint64_t window_start_ns = UINT64_MAX;  // CUPTI's clock at cudaProfilerStart; before it, nothing is kept
    std::atomic<bool> failed{false};  // set from CUPTI's threads and the application's
};
Tracer& tracer() {
    static Tracer instance;
    return instance;
}

bool cupti_ok(CUptiResult result, const char* call) {
    if (result == CUPTI_SUCCESS) return true;
    const char* text = nullptr;
    cuptiGetResultString(result, &text);
    std::fprintf(stderr, "kernel_trace: %s failed: %s; no trace will be written\n", call, text ? text : "?");
    tracer().failed = true;
    return false;
}

constexpr size_t kBufferBytes = 8 << 20;
constexpr size_t kBufferAlign = 8;  // CUPTI requires activity buffers aligned to 8 bytes

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
    *buffer = static_cast<uint8_t*>(std::aligned_alloc(kBufferAlign, kBufferBytes));
    *size = *buffer ? kBufferBytes : 0;
    *max_records = 0;  // as many as fit
}

std::string demangled(const std::string& name) {
    int status = 0;
    char* text = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
    std::string result = status == 0 && text ? text : name;
    std::free(text);
    return result;
}

// One record's entry in the trace, if it started inside the window (and is of a kind traced).
std::optional<Record> record_of(const CUpti_Activity* record, uint64_t window_start_ns) {
    std::optional<Record> entry;
    switch (record->kind) {
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
        const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
        entry = Record{"kernel", k->start, k->end, k->streamId, k->name ? k->name : "?"};  // demangled when written
        break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
        const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
        entry = Record{"memcpy", m->start, m->end, m->streamId, std::to_string(m->bytes) + " bytes"};
        break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
        const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
        entry = Record{"memset", m->start, m->end, m->streamId, std::to_string(m->bytes) + " bytes"};
        break;
    }
    default:
        break;
    }
    if (entry && entry->start_ns < window_start_ns) entry.reset();
    return entry;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid_bytes) {
    Tracer& t = tracer();
    CUpti_Activity* record = nullptr;
    {
        std::lock_guard<std::mutex> lock(t.mutex);
        while (cuptiActivityGetNextRecord(buffer, valid_bytes, &record) == CUPTI_SUCCESS)
            if (std::optional<Record> entry = record_of(record, t.window_start_ns))
                t.records.push_back(std::move(*entry));
        size_t dropped = 0;
        if (cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped) == CUPTI_SUCCESS && dropped > 0) {
            std::fprintf(stderr, "kernel_trace: CUPTI dropped %zu records; no trace will be written\n", dropped);
            t.failed = true;
        }
    }
    std::free(buffer);
}

const CUpti_ActivityKind kTracedKinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                           CUPTI_ACTIVITY_KIND_MEMSET};

// The records before the window (earlier steps) are flushed and dropped; the window opens now.
void open_window() {
    Tracer& t = tracer();
    cupti_ok(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "cuptiActivityFlushAll");
    uint64_t now = 0;
    if (!cupti_ok(cuptiGetTimestamp(&now), "cuptiGetTimestamp")) return;
    std::lock_guard<std::mutex> lock(t.mutex);
    t.records.clear();
    t.window_start_ns = now;
}

// Written to a temporary name and renamed, so that a trace file is always whole.
void stop_and_write() {
    Tracer& t = tracer();
    for (CUpti_ActivityKind kind : kTracedKinds) cupti_ok(cuptiActivityDisable(kind), "cuptiActivityDisable");
    cupti_ok(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "cuptiActivityFlushAll");
    std::lock_guard<std::mutex> lock(t.mutex);
    if (t.failed) return;
    const std::string partial = t.path + ".partial";
    FILE* file = std::fopen(partial.c_str(), "w");
    if (!file) {
        std::fprintf(stderr, "kernel_trace: cannot write %s: %s\n", partial.c_str(), std::strerror(errno));
        return;
    }
    std::fprintf(file, "kind,start_ns,end_ns,stream,name\n");
    for (const Record& r : t.records) {
        std::string name = std::strcmp(r.kind, "kernel") == 0 ? demangled(r.name) : r.name;
        // CSV: quotes doubled inside a quoted field
        for (size_t at = name.find('"'); at != std::string::npos; at = name.find('"', at + 2)) name.insert(at, "\"");
        std::fprintf(file, "%s,%llu,%llu,%u,\"%s\"\n", r.kind, (unsigned long long)r.start_ns,
                     (unsigned long long)r.end_ns, r.stream, name.c_str());
    }
    const bool written = std::fclose(file) == 0 && std::rename(partial.c_str(), t.path.c_str()) == 0;
    if (!written) std::fprintf(stderr, "kernel_trace: writing %s failed: %s\n", t.path.c_str(), std::strerror(errno));
    else std::fprintf(stderr, "kernel_trace: %zu records -> %s\n", t.records.size(), t.path.c_str());
}

void CUPTIAPI on_runtime_call(void*, CUpti_CallbackDomain, CUpti_CallbackId id, const void* data) {
    const auto* info = static_cast<const CUpti_CallbackData*>(data);
    if (id == CUPTI_RUNTIME_TRACE_CBID_cudaProfilerStart_v4000 && info->callbackSite == CUPTI_API_EXIT)
        open_window();
    if (id == CUPTI_RUNTIME_TRACE_CBID_cudaProfilerStop_v4000 && info->callbackSite == CUPTI_API_ENTER)
        stop_and_write();
}

}  // namespace

extern "C" int InitializeInjection() {
    Tracer& t = tracer();
    const char* path = std::getenv("KERNEL_TRACE_FILE");
    if (!path || !*path) {
        std::fprintf(stderr, "kernel_trace: set KERNEL_TRACE_FILE to the CSV to write; tracing nothing\n");
        return 1;
    }
    t.path = path;
    CUpti_SubscriberHandle subscriber;
    if (!cupti_ok(cuptiSubscribe(&subscriber, on_runtime_call, nullptr), "cuptiSubscribe")) return 1;
    for (CUpti_CallbackId id : {CUPTI_RUNTIME_TRACE_CBID_cudaProfilerStart_v4000,
                                CUPTI_RUNTIME_TRACE_CBID_cudaProfilerStop_v4000})
        if (!cupti_ok(cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API, id), "cuptiEnableCallback"))
            return 1;
    if (!cupti_ok(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "cuptiActivityRegisterCallbacks"))
        return 1;
    for (CUpti_ActivityKind kind : kTracedKinds)
        if (!cupti_ok(cuptiActivityEnable(kind), "cuptiActivityEnable")) return 1;
    return 1;
}
