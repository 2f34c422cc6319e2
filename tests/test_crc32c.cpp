// host/crc32c: known answers (RFC 3720), the hardware path against the table one, and
// continuation (a CRC extended piece by piece equals the CRC of the whole).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "host/crc32c.h"

namespace {

TEST(Crc32cTest, KnownValuesAndBothImplementationsAgree) {
    EXPECT_EQ(crc32c_extend(0, "123456789", 9), 0xe3069283u);
    EXPECT_EQ(crc32c_extend(0, "", 0), 0u);
    const std::vector<unsigned char> zeros(32, 0), ones(32, 0xff);
    std::vector<unsigned char> ascending(32);
    for (int i = 0; i < 32; ++i) ascending[i] = static_cast<unsigned char>(i);
    EXPECT_EQ(crc32c_extend(0, zeros.data(), 32), 0x8a9136aau);  // RFC 3720's test vectors
    EXPECT_EQ(crc32c_extend(0, ones.data(), 32), 0x62a8ab43u);
    EXPECT_EQ(crc32c_extend(0, ascending.data(), 32), 0x46dd794eu);
    std::mt19937 rng(5);
    std::vector<unsigned char> data(4099);
    for (unsigned char& byte : data) byte = static_cast<unsigned char>(rng());
    for (size_t start : {0, 1, 3, 7})
        for (size_t length : {0, 1, 7, 8, 9, 63, 4000}) {
            const uint32_t whole = crc32c_extend(0, data.data() + start, length);
            EXPECT_EQ(whole, crc32c_detail::extend_portable(0, data.data() + start, length)) << start << " " << length;
            const uint32_t split = crc32c_extend(crc32c_extend(0, data.data() + start, length / 3),
                                                 data.data() + start + length / 3, length - length / 3);
            EXPECT_EQ(whole, split) << start << " " << length;
        }
}

}  // namespace
