#include "data_prep/src/download.h"

#include <curl/curl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

#include "data_prep/src/progress.h"
#include "data_prep/src/sha256.h"

namespace data_prep {

namespace {

void ensure_curl_initialized() {
    static const CURLcode status = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (status != CURLE_OK) throw DownloadError(std::string("cannot initialize libcurl: ") + curl_easy_strerror(status));
}

int64_t file_size_or_zero(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

// State of one HTTP request, shared with libcurl's callbacks.
struct Transfer {
    CURL* curl = nullptr;
    std::FILE* file = nullptr;
    int64_t offset = 0;  // bytes of the .part file this request continues from
    Progress* progress = nullptr;
    bool status_checked = false;
    bool discard_body = false;  // an error status: its body is not file content
    int write_errno = 0;
    int64_t range_total = -1;  // the file's size from a Content-Range header, if any
};

// Keeps the total of "Content-Range: bytes A-B/TOTAL" (or "bytes */TOTAL" on a 416).
size_t read_response_header(char* data, size_t size, size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    const std::string line(data, size * count);
    const std::string name = "content-range:";
    std::string lower = line.substr(0, name.size());
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    const size_t slash = line.find('/');
    if (lower == name && slash != std::string::npos) transfer->range_total = std::atoll(line.c_str() + slash + 1);
    return size * count;
}

size_t write_body(char* data, size_t size, size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    const size_t bytes = size * count;
    if (!transfer->status_checked) {
        transfer->status_checked = true;
        long status = 0;
        curl_easy_getinfo(transfer->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 300) {
            transfer->discard_body = true;
        } else if (status == 200 && transfer->offset > 0) {
            // The server ignored our Range header and sends the whole file: start it over.
            if (ftruncate(fileno(transfer->file), 0) != 0) {
                transfer->write_errno = errno;
                return 0;
            }
            transfer->offset = 0;
        }
    }
    if (transfer->discard_body) return bytes;
    if (std::fwrite(data, 1, bytes, transfer->file) != bytes) {
        transfer->write_errno = errno;
        return 0;  // makes libcurl stop with CURLE_WRITE_ERROR
    }
    return bytes;
}

int report_progress(void* user, curl_off_t download_total, curl_off_t downloaded, curl_off_t, curl_off_t) {
    auto* transfer = static_cast<Transfer*>(user);
    if (transfer->discard_body) return 0;
    transfer->progress->set_total_bytes(download_total > 0 ? transfer->offset + download_total : -1);
    transfer->progress->update({transfer->offset + downloaded});
    return 0;
}

struct AttemptResult {
    bool complete = false;
    bool retryable = false;
    std::string reason;
};

// One HTTP request for the rest of the .part file.
AttemptResult attempt_download(const std::string& url, const std::string& part_path, const DownloadOptions& options,
                               Progress& progress) {
    std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) throw DownloadError("cannot create a libcurl handle");
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(part_path.c_str(), "ab"), std::fclose);
    if (!file) throw DownloadError(part_path + ": cannot write the download: " + std::strerror(errno));

    Transfer transfer;
    transfer.curl = curl.get();
    transfer.file = file.get();
    transfer.offset = file_size_or_zero(part_path);
    transfer.progress = &progress;
    char error_text[CURL_ERROR_SIZE] = "";
    const std::string range = std::to_string(transfer.offset) + "-";

    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "train_gpt2cu-data_prep/1");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, options.connect_timeout_s);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, options.stall_timeout_s);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_text);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &transfer);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, read_response_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &transfer);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, report_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &transfer);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    // A plain Range header rather than CURLOPT_RESUME_FROM: libcurl would fail outright on a
    // server without range support, where write_body simply starts the file over.
    if (transfer.offset > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());

    const CURLcode code = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t body_length = -1;
    curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &body_length);
    if (std::fclose(file.release()) != 0 && transfer.write_errno == 0) transfer.write_errno = errno;

    AttemptResult result;
    if (transfer.write_errno != 0) {
        throw DownloadError(part_path + ": cannot write the download: " + std::strerror(transfer.write_errno));
    }
    if (code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_RESOLVE_PROXY) {
        result.reason = std::string("cannot resolve the host (no network?): ") + error_text;
        return result;
    }
    if (status == 416) {
        // Nothing left to send: the .part file is complete when its size is the file's (a run
        // stopped during the checksum), else it is not a prefix of this file; start over.
        if (transfer.range_total == transfer.offset) {
            result.complete = true;
            return result;
        }
        std::remove(part_path.c_str());
        result.retryable = true;
        result.reason = "HTTP 416 (range not satisfiable): the partial download was discarded";
        return result;
    }
    if (status >= 400) {
        result.retryable = status >= 500 || status == 429;
        result.reason = "HTTP status " + std::to_string(status);
        return result;
    }
    if (code != CURLE_OK) {
        result.retryable = true;
        result.reason = std::string(curl_easy_strerror(code)) + (error_text[0] ? std::string(": ") + error_text : "");
        return result;
    }
    const int64_t have = file_size_or_zero(part_path);
    if (body_length >= 0 && have != transfer.offset + body_length) {
        result.retryable = true;
        result.reason = "the transfer ended after " + std::to_string(have) + " of " +
                        std::to_string(transfer.offset + body_length) + " bytes";
        return result;
    }
    result.complete = true;
    return result;
}

}  // namespace

void download_file(const std::string& url, const std::string& dest, const std::string& sha256,
                   const DownloadOptions& options) {
    if (access(dest.c_str(), F_OK) == 0) return;
    ensure_curl_initialized();
    const std::string part_path = dest + ".part";
    const std::string name = dest.substr(dest.find_last_of('/') + 1);
    double delay_s = options.retry_delay_s;
    for (int attempt = 0;; attempt++) {
        const int64_t resume_from = file_size_or_zero(part_path);
        if (resume_from > 0) {
            std::fprintf(stderr, "resuming %s at %s\n", name.c_str(), format_bytes(double(resume_from)).c_str());
        }
        Progress progress("download " + name, -1, resume_from);
        const AttemptResult result = attempt_download(url, part_path, options, progress);
        if (result.complete) {
            progress.finish({file_size_or_zero(part_path)});
            break;
        }
        progress.finish({file_size_or_zero(part_path)});
        if (!result.retryable || attempt >= options.retries) {
            throw DownloadError("cannot download " + url + " to " + dest + ": " + result.reason +
                                (result.retryable ? " (gave up after " + std::to_string(attempt + 1) + " attempts)" : ""));
        }
        std::fprintf(stderr, "download of %s interrupted: %s; retrying in %g s (attempt %d of %d)\n", name.c_str(),
                     result.reason.c_str(), delay_s, attempt + 2, options.retries + 1);
        std::this_thread::sleep_for(std::chrono::duration<double>(delay_s));
        delay_s = std::min(delay_s * 2.0, 60.0);
    }
    if (!sha256.empty()) {
        const std::string actual = sha256_file(part_path);
        if (actual != sha256) {
            std::remove(part_path.c_str());
            throw DownloadError(dest + ": SHA-256 mismatch after download from " + url + ": got " + actual + ", expected " +
                                sha256 + "; the download was deleted (check the URL and the checksum list)");
        }
    }
    if (std::rename(part_path.c_str(), dest.c_str()) != 0) {
        throw DownloadError(dest + ": cannot rename the finished download: " + std::strerror(errno));
    }
}

std::map<std::string, std::string> read_checksum_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("checksum list " + path + ": cannot open: " + std::strerror(errno));
    std::map<std::string, std::string> digests;
    std::string line;
    for (int number = 1; std::getline(in, line); number++) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        const size_t space = line.find_first_of(" \t");
        std::string digest = line.substr(0, space);
        std::transform(digest.begin(), digest.end(), digest.begin(), [](unsigned char c) { return std::tolower(c); });
        const bool hex = digest.size() == 64 && digest.find_first_not_of("0123456789abcdef") == std::string::npos;
        const size_t name_start = space == std::string::npos ? std::string::npos : line.find_first_not_of(" \t*", space);
        if (!hex || name_start == std::string::npos) {
            throw std::runtime_error("checksum list " + path + ":" + std::to_string(number) +
                                     ": expected \"<64 hex digits>  <file name>\" (sha256sum's format)");
        }
        std::string name = line.substr(name_start);
        if (name.rfind("./", 0) == 0) name.erase(0, 2);
        digests[name] = digest;
    }
    return digests;
}

}  // namespace data_prep
