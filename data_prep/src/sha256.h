// SHA-256 (FIPS 180-4), to verify downloads against published checksums.
// Hand-written (about 100 lines) so that the data tools need no crypto library.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace data_prep {

class Sha256 {
  public:
    Sha256();
    void update(const void* data, size_t bytes);
    // Lower-case hex of the digest; the object must not be updated afterwards.
    std::string hex_digest();

  private:
    void compress(const uint8_t* block);

    std::array<uint32_t, 8> state_;
    std::array<uint8_t, 64> buffer_{};
    size_t buffered_ = 0;
    uint64_t total_bytes_ = 0;
};

// Hex SHA-256 of a whole file; throws std::runtime_error naming the file on read errors.
std::string sha256_file(const std::string& path);

}  // namespace data_prep
