#include "data_prep/src/archive_sources.h"

#include <cerrno>
#include <new>
#include <stdexcept>
#include <utility>

namespace data_prep {

namespace {

constexpr size_t kSignatureBytes = 6;  // the longest compression signature we name (xz)

constexpr std::string_view kGzipSignature = "1f 8b", kXzSignature = "fd 37 7a 58 5a 00", kZstdSignature = "28 b5 2f fd",
                           kBzip2Signature = "42 5a 68 (\"BZh\")",
                           kLzmaSignature = "a valid .lzma header (most often 5d 00 00)";
constexpr CompressionSuffix kCompressionSuffixes[] = {
    {".gz", "", "gzip", ARCHIVE_FILTER_GZIP, kGzipSignature},
    {".xz", "", "xz", ARCHIVE_FILTER_XZ, kXzSignature},
    {".zst", "", "zstd", ARCHIVE_FILTER_ZSTD, kZstdSignature},
    {".bz2", "", "bzip2", ARCHIVE_FILTER_BZIP2, kBzip2Signature},
    {".lzma", "", "lzma", ARCHIVE_FILTER_LZMA, kLzmaSignature},
    {".tgz", ".tar", "gzip", ARCHIVE_FILTER_GZIP, kGzipSignature},
    {".txz", ".tar", "xz", ARCHIVE_FILTER_XZ, kXzSignature},
    {".tzst", ".tar", "zstd", ARCHIVE_FILTER_ZSTD, kZstdSignature},
    {".tbz2", ".tar", "bzip2", ARCHIVE_FILTER_BZIP2, kBzip2Signature},
};

}  // namespace

const CompressionSuffix* compression_suffix(std::string_view name) {
    for (const CompressionSuffix& entry : kCompressionSuffixes) {
        if (ends_with(name, entry.suffix)) return &entry;
    }
    return nullptr;
}

std::string inner_name(const std::string& name, const CompressionSuffix& entry) {
    return name.substr(0, name.size() - entry.suffix.size()) + std::string(entry.inner_suffix);
}

bool is_container(std::string_view name) { return compression_suffix(name) || ends_with(name, ".tar"); }

ArchivePtr new_reader(int filter, bool tar) {
    ArchivePtr a(archive_read_new());
    if (!a) throw std::bad_alloc();
    if (filter != ARCHIVE_FILTER_NONE && archive_read_support_filter_by_code(a.get(), filter) != ARCHIVE_OK)
        throw std::logic_error(std::string("libarchive lacks a filter: ") + archive_error_string(a.get()));
    if (tar) archive_read_support_format_tar(a.get());
    archive_read_support_format_raw(a.get());
    return a;
}

la_ssize_t read_from_source(archive* a, void* client_data, const void** block) {
    auto* client = static_cast<ArchiveClient*>(client_data);
    try {
        const std::string_view data = client->source->next_block();
        if (client->first_bytes.size() < kSignatureBytes)
            client->first_bytes.append(data.substr(0, kSignatureBytes - client->first_bytes.size()));
        *block = data.data();
        return static_cast<la_ssize_t>(data.size());
    } catch (...) {
        client->error = std::current_exception();
        archive_set_error(a, EIO, "error in the input stream");
        return ARCHIVE_FATAL;
    }
}

[[noreturn]] void throw_archive_error(archive* a, const std::string& location, const char* what) {
    const char* reason = archive_error_string(a);
    throw std::runtime_error(location + ": " + what + ": " + (reason ? reason : "unknown libarchive error") +
                             " (the file is truncated or corrupt: download or create it again)");
}

[[noreturn]] void throw_archive_error(archive* a, const ArchiveClient& client, const std::string& location,
                                      const char* what) {
    if (client.error) std::rethrow_exception(client.error);
    throw_archive_error(a, location, what);
}

MemberSource::MemberSource(archive* a, const ArchiveClient& client, std::string location)
    : archive_(a), client_(client), location_(std::move(location)), buffer_(kReadBlockBytes) {}

std::string_view MemberSource::next_block() {
    const la_ssize_t n = archive_read_data(archive_, buffer_.data(), buffer_.size());
    if (n < 0) throw_archive_error(archive_, client_, location_, "cannot read");
    return {buffer_.data(), static_cast<size_t>(n)};
}

FilterSource::FilterSource(ByteSource& compressed, const std::string& location, const CompressionSuffix& compression)
    : client_{&compressed, nullptr, {}},
      reader_(new_reader(compression.libarchive_filter, false)),
      location_(location),
      buffer_(kReadBlockBytes) {
    archive* a = reader_.get();
    if (archive_read_open(a, &client_, nullptr, read_from_source, nullptr) != ARCHIVE_OK)
        throw_archive_error(a, client_, location, "cannot open input");
    // Without its codec's signature libarchive would pass the stream through: refuse instead.
    if (archive_filter_code(a, 0) != compression.libarchive_filter)
        throw not_in_named_format(location, compression.format, compression.suffix, client_.first_bytes,
                                  compression.signature);
    archive_entry* entry = nullptr;
    const int status = archive_read_next_header(a, &entry);
    if (status == ARCHIVE_EOF) ended_ = true;
    else if (status < ARCHIVE_WARN) throw_archive_error(a, client_, location, "cannot read");
}

std::string_view FilterSource::next_block() {
    if (ended_) return {};
    const la_ssize_t n = archive_read_data(reader_.get(), buffer_.data(), buffer_.size());
    if (n < 0) throw_archive_error(reader_.get(), client_, location_, "cannot read");
    ended_ = n == 0;
    return {buffer_.data(), static_cast<size_t>(n)};
}

}  // namespace data_prep
