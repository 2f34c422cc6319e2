#include "host/crc32c.h"

#include <array>
#include <cstring>

namespace {

constexpr uint32_t kReflectedPolynomial = 0x82f63b78;  // 0x1edc6f41, bits reversed

using Tables = std::array<std::array<uint32_t, 256>, 8>;

// tables[k][b]: the CRC of byte b followed by k zero bytes, for slicing by 8.
constexpr Tables make_tables() {
    Tables tables{};
    for (uint32_t byte = 0; byte < 256; ++byte) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (kReflectedPolynomial & (0u - (crc & 1u)));
        tables[0][byte] = crc;
    }
    for (int k = 1; k < 8; ++k)
        for (int byte = 0; byte < 256; ++byte)
            tables[k][byte] = (tables[k - 1][byte] >> 8) ^ tables[0][tables[k - 1][byte] & 0xff];
    return tables;
}
constexpr Tables kTables = make_tables();

uint32_t extend_table(uint32_t crc, const unsigned char* bytes, size_t size) {
    crc = ~crc;
    for (; size >= 8; size -= 8, bytes += 8) {
        uint32_t low, high;
        std::memcpy(&low, bytes, 4);  // little-endian hosts only, as every file format here
        std::memcpy(&high, bytes + 4, 4);
        low ^= crc;
        crc = kTables[7][low & 0xff] ^ kTables[6][(low >> 8) & 0xff] ^ kTables[5][(low >> 16) & 0xff] ^
              kTables[4][low >> 24] ^ kTables[3][high & 0xff] ^ kTables[2][(high >> 8) & 0xff] ^
              kTables[1][(high >> 16) & 0xff] ^ kTables[0][high >> 24];
    }
    for (; size > 0; --size, ++bytes) crc = (crc >> 8) ^ kTables[0][(crc ^ *bytes) & 0xff];
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t extend_hardware(uint32_t crc, const unsigned char* bytes, size_t size) {
    uint64_t state = ~crc;
    for (; size >= 8; size -= 8, bytes += 8) {
        uint64_t word;
        std::memcpy(&word, bytes, 8);
        state = __builtin_ia32_crc32di(state, word);
    }
    uint32_t state32 = static_cast<uint32_t>(state);
    for (; size > 0; --size, ++bytes) state32 = __builtin_ia32_crc32qi(state32, *bytes);
    return ~state32;
}
#endif

}  // namespace

namespace crc32c_detail {

uint32_t extend_portable(uint32_t crc, const void* data, size_t bytes) {
    return extend_table(crc, static_cast<const unsigned char*>(data), bytes);
}

bool hardware_available() {
#if defined(__x86_64__)
    return __builtin_cpu_supports("sse4.2");
#else
    return false;
#endif
}

}  // namespace crc32c_detail

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t bytes) {
    const auto* input = static_cast<const unsigned char*>(data);
#if defined(__x86_64__)
    static const bool hardware = crc32c_detail::hardware_available();
    if (hardware) return extend_hardware(crc, input, bytes);
#endif
    return extend_table(crc, input, bytes);
}
