// CRC-32C (Castagnoli): the checksum of the model and state files (host/checkpoint.h) and of
// TensorBoard's record framing (host/tensorboard_writer.h).
//
// Chosen over a cryptographic hash because it is only there to catch damage (a flipped bit on
// disk or in a copy: every single-bit error is detected, any other damage with probability
// 1 - 2^-32), and because x86-64 computes it in hardware (SSE4.2's crc32 instruction), so a
// multi-GB checkpoint costs about a second. Elsewhere a slicing-by-8 table version gives the
// same values.
#pragma once

#include <cstddef>
#include <cstdint>

// The CRC-32C of `bytes` bytes at `data` continuing a CRC of the bytes before them: start with
// 0, and crc32c_extend(crc32c_extend(0, a, n), b, m) is the CRC of a followed by b.
// crc32c_extend(0, "123456789", 9) == 0xe3069283.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t bytes);

namespace crc32c_detail {
// The table version, which crc32c_extend uses where the CPU has no crc32 instruction (exposed
// for the test that compares both).
uint32_t extend_portable(uint32_t crc, const void* data, size_t bytes);
// Whether crc32c_extend runs on the CPU's crc32 instruction.
bool hardware_available();
}  // namespace crc32c_detail
