#include "host/device_batch.h"

#include <algorithm>
#include <vector>

#include "host/format.h"

DeviceBatchChoice choose_device_batch(int64_t sequences_per_gpu, size_t budget_bytes,
                                      const std::function<size_t(int)>& bytes_for_batch, int max_batch) {
    std::vector<int> divisors;  // largest first
    for (int64_t b = std::min<int64_t>(sequences_per_gpu, max_batch); b >= 1; --b)
        if (sequences_per_gpu % b == 0) divisors.push_back(static_cast<int>(b));
    const std::string budget = string_format("%.1f GB", budget_bytes / 1e9);
    std::string larger;  // the next larger divisor, which did not fit
    for (int b : divisors) {
        const size_t bytes = bytes_for_batch(b);
        if (bytes > budget_bytes) {
            larger = string_format("; %d would need %.1f GB", b, bytes / 1e9);
            continue;
        }
        DeviceBatchChoice choice;
        choice.batch = b;
        choice.fits = true;
        choice.reason = string_format(
            "device batch %d (auto): the largest divisor of the %lld sequences per GPU per step whose memory plan "
            "fits, %.1f GB of the %s available%s; gradient accumulation %lld",
            b, (long long)sequences_per_gpu, bytes / 1e9, budget.c_str(), larger.c_str(),
            (long long)(sequences_per_gpu / b));
        return choice;
    }
    DeviceBatchChoice none;
    none.reason = string_format("device batch auto: not even 1 sequence fits the %s available%s", budget.c_str(),
                                larger.c_str());
    return none;
}
