// The matmul tuning record reader (host/matmul_tuning_record.h) on arbitrary files: it may only
// accept a well-formed record or throw std::runtime_error naming the file; what it accepts must
// format without error, and formatting is a fixed point after one round (parse, format, parse,
// format gives the same text: the numbers are rounded once).
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fuzz/fuzz_support.h"
#include "host/matmul_tuning_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static fuzz::MemoryFile file;
    const std::string& path = file.hold(data, size);
    std::optional<TuningRecord> record;
    try {
        record = read_tuning_record_file(path);
    } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find(path) == std::string::npos) fuzz::property_failed("an error that does not name the file");
        return 0;
    }
    if (!record) fuzz::property_failed("an existing file read as missing");
    const std::string once = format_tuning_record(*record);
    const std::string twice = format_tuning_record(parse_tuning_record(once, "formatted"));
    if (once != twice) fuzz::property_failed("formatting an accepted record is not a fixed point");
    return 0;
}
