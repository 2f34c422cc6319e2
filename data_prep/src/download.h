// Downloads with resume and verification (libcurl).
//
// A file is fetched into "<dest>.part"; an interrupted transfer (dropped connection, stall,
// Ctrl-C) keeps the .part file, and the next attempt or the next run asks the server for the
// rest with an HTTP Range request. Only when the size matches the server's announced length and
// the SHA-256 matches the expected checksum (when one is known) is the .part file renamed to
// `dest`: a file under its final name is always complete and verified.
#pragma once

#include <map>
#include <stdexcept>
#include <string>

namespace data_prep {

struct DownloadOptions {
    int retries = 5;              // further attempts after a failed one; each resumes
    double retry_delay_s = 2.0;   // before the first retry, doubled after each (at most 60 s)
    long connect_timeout_s = 30;
    long stall_timeout_s = 120;   // a transfer that stalls (< 1 byte/s) this long is retried
};

// Thrown when a download fails for good; the message names the URL, the destination and the
// reason (HTTP status, network error, size or checksum mismatch).
struct DownloadError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Downloads `url` to `dest` as described above; nothing to do if `dest` exists. `sha256` is the
// expected lower-case hex digest, or empty when unknown. A checksum mismatch deletes the .part
// file and throws (the next run starts over). Shows a progress line on stderr.
void download_file(const std::string& url, const std::string& dest, const std::string& sha256,
                   const DownloadOptions& options);

// Reads a checksum list in sha256sum's format ("<64 hex digits>  <name>" per line, "*" before
// the name allowed, "./" prefixes ignored) into name -> digest. Throws naming the file and line
// for anything else.
std::map<std::string, std::string> read_checksum_file(const std::string& path);

}  // namespace data_prep
