// Shared by the libFuzzer targets in this folder (see README.md here): a file in memory that
// readers open by path, and the input names the document-reader target chooses between.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fuzz {

// An anonymous in-memory file (memfd) reachable as /proc/self/fd/N: each input is written into
// it, so the readers under test open a real path without disk I/O.
class MemoryFile {
  public:
    MemoryFile() : fd_(memfd_create("fuzz_input", MFD_CLOEXEC)) {
        if (fd_ < 0) throw std::runtime_error("memfd_create failed");
        path_ = "/proc/self/fd/" + std::to_string(fd_);
    }
    ~MemoryFile() { ::close(fd_); }
    MemoryFile(const MemoryFile&) = delete;
    MemoryFile& operator=(const MemoryFile&) = delete;

    // Replaces the content; returns the path to open.
    const std::string& hold(const uint8_t* data, size_t size) {
        if (::ftruncate(fd_, 0) != 0) std::abort();
        for (size_t done = 0; done < size;) {
            const ssize_t n = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
            if (n <= 0) std::abort();
            done += static_cast<size_t>(n);
        }
        return path_;
    }
    const std::string& path() const { return path_; }

  private:
    int fd_;
    std::string path_;
};

// The documents target names its input after the first byte: these suffixes (the reader picks
// the codec, tar handling and document kind by name).
constexpr std::string_view kDocumentSuffixes[] = {
    ".txt", ".jsonl", ".json", ".tar", ".gz", ".xz", ".zst", ".bz2", ".lzma", ".tgz", ".jsonl.gz", ".jsonl.zst",
    ".txt.xz", ".tar.xz",
};
constexpr size_t kDocumentSuffixCount = sizeof(kDocumentSuffixes) / sizeof(kDocumentSuffixes[0]);

// A failed property (not a crash of the code under test): says what and stops the fuzzer.
[[noreturn]] inline void property_failed(const char* what) {
    std::fprintf(stderr, "property failed: %s\n", what);
    std::abort();
}

}  // namespace fuzz
