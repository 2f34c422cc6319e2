// The shared-file rendezvous; see rendezvous.h.
#include "host/rendezvous.h"

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include "host/launch.h"

namespace distributed {

namespace {

constexpr char kRendezvousMagic[8] = {'G', 'P', 'T', 'R', 'D', 'Z', 'V', '1'};
constexpr size_t kHeaderBytes = sizeof kRendezvousMagic + 2 * sizeof(int32_t);

std::vector<char> read_whole_file(const std::string& path, bool* exists) {
    std::vector<char> bytes;
    FILE* file = std::fopen(path.c_str(), "rb");
    *exists = file != nullptr;
    if (!file) return bytes;
    char buffer[4096];
    size_t got = 0;
    while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0) bytes.insert(bytes.end(), buffer, buffer + got);
    std::fclose(file);
    return bytes;
}

void publish(const std::string& path, int world_size, const std::vector<char>& payload) {
    struct stat existing;
    if (stat(path.c_str(), &existing) == 0)
        fatal("rank 0: rendezvous file %s already exists (left over from an earlier run?): delete it, or give each "
              "run its own path with --rendezvous / GPT_RENDEZVOUS",
              path.c_str());
    const std::string temporary = path + ".tmp." + std::to_string(getpid());
    FILE* file = std::fopen(temporary.c_str(), "wb");
    if (!file)
        fatal("rank 0: cannot create rendezvous file %s: %s (its directory must exist and be writable, on a "
              "filesystem every rank sees)",
              temporary.c_str(), std::strerror(errno));
    const int32_t sizes[2] = {world_size, static_cast<int32_t>(payload.size())};
    const bool written = std::fwrite(kRendezvousMagic, sizeof kRendezvousMagic, 1, file) == 1 &&
                         std::fwrite(sizes, sizeof sizes, 1, file) == 1 &&
                         (payload.empty() || std::fwrite(payload.data(), payload.size(), 1, file) == 1);
    if (std::fclose(file) != 0 || !written || std::rename(temporary.c_str(), path.c_str()) != 0) {
        const int error = errno;
        std::remove(temporary.c_str());
        fatal("rank 0: cannot write rendezvous file %s: %s", path.c_str(), std::strerror(error));
    }
}

}  // namespace

std::string rendezvous_path_from(const std::string& flag_value) {
    if (!flag_value.empty()) return flag_value;
    const char* env = std::getenv("GPT_RENDEZVOUS");
    return env ? env : "";
}

std::vector<char> rendezvous_broadcast(const std::string& path, int rank, int world_size,
                                       const std::vector<char>& payload, double timeout_s) {
    if (rank == 0) {
        publish(path, world_size, payload);
        return payload;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
        bool exists = false;
        const std::vector<char> bytes = read_whole_file(path, &exists);
        if (exists && bytes.size() >= kHeaderBytes) {
            if (std::memcmp(bytes.data(), kRendezvousMagic, sizeof kRendezvousMagic) != 0)
                fatal("rank %d: %s is not a rendezvous file written by this program: choose another --rendezvous path",
                      rank, path.c_str());
            int32_t sizes[2];
            std::memcpy(sizes, bytes.data() + sizeof kRendezvousMagic, sizeof sizes);
            if (sizes[0] != world_size)
                fatal("rank %d: rendezvous file %s was written by a run of %d processes, but this one has WORLD_SIZE=%d: "
                      "every rank must get the same world size (or delete the stale file)",
                      rank, path.c_str(), sizes[0], world_size);
            if (bytes.size() == kHeaderBytes + static_cast<size_t>(sizes[1]))
                return std::vector<char>(bytes.begin() + kHeaderBytes, bytes.end());
        }
        if (std::chrono::steady_clock::now() > deadline)
            fatal("rank %d: rank 0 did not publish the rendezvous file %s within %.0f s: check that rank 0 started, that "
                  "every rank was given the same path, and that the path is on a filesystem all nodes share "
                  "(--nccl-timeout sets the limit)",
                  rank, path.c_str(), timeout_s);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

}  // namespace distributed
