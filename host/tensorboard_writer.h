// TensorBoard event files written without TensorFlow: scalar summaries that TensorBoard shows
// (and wandb can sync) beside the run's log.jsonl.
//
// A file `events.out.tfevents.<unix seconds>.<hostname>` in the run directory (".1", ".2", ... is
// appended when a file of that name exists) is a sequence of TFRecords:
//   uint64 length, uint32 masked CRC32C of those 8 bytes, `length` bytes of data,
//   uint32 masked CRC32C of the data         (all little-endian)
// where masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 and CRC32C is the Castagnoli CRC.
// Each record's data is a serialized tensorflow.Event protocol buffer, encoded here by hand:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; }
// The first record holds file_version "brain.Event:2"; each scalar() adds one Event.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

class TensorBoardWriter {
  public:
    // Creates `dir` if needed and a new event file in it with its file_version event. Throws
    // std::runtime_error naming the file when it cannot be written.
    explicit TensorBoardWriter(const std::string& dir);
    ~TensorBoardWriter();
    TensorBoardWriter(const TensorBoardWriter&) = delete;
    TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

    // One scalar at `step`, stamped with the current wall time; stored as float32, as TensorBoard's
    // simple_value is (non-finite values are written as they are).
    void scalar(const std::string& tag, int64_t step, double value);
    // Pushes what was written to the operating system, so TensorBoard sees it while the run goes on.
    void flush();
    const std::string& path() const { return path_; }

  private:
    void write_record(const std::string& data);
    std::string path_;
    std::FILE* file_ = nullptr;
};

namespace tensorboard {
// The masked CRC-32C of the framing (host/crc32c.h computes the CRC).
uint32_t masked_crc32c(const void* data, size_t bytes);
// One TFRecord around `data` (the framing described above).
std::string record(const std::string& data);
// Serialized Event messages.
std::string file_version_event(double wall_time);
std::string scalar_event(double wall_time, int64_t step, const std::string& tag, float value);
}  // namespace tensorboard
