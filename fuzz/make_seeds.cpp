// Writes the seed corpora of the fuzz targets into DIR/<target>/: the text, JSON, compressed and
// tar inputs of tests/fixtures (run from the repository root), and small valid files of every
// binary format written by the current writers (so the seeds follow the formats' versions).
//   build/fuzz/make_seeds DIR
#include <archive.h>
#include <archive_entry.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "fuzz/seed_shapes.h"
#include "host/checkpoint.h"
#include "host/shard.h"
#include "host/matmul_tuning_record.h"
#include "host/tensor_bundle.h"

namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const fs::path& path, const std::string& content) {
    std::ofstream out(path, std::ios::binary);
    out << content;
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

// `content` as one stream of libarchive's `filter` ("gzip", "xz", ...); a tar of it when
// `tar_member` names one.
std::string compress(const std::string& filter, const std::string& content, const std::string& tar_member = "") {
    archive* a = archive_write_new();
    std::vector<char> buffer(1 << 20);
    size_t used = 0;
    if (archive_write_add_filter_by_name(a, filter.c_str()) != ARCHIVE_OK ||
        (tar_member.empty() ? archive_write_set_format_raw(a) : archive_write_set_format_pax_restricted(a)) != ARCHIVE_OK ||
        archive_write_open_memory(a, buffer.data(), buffer.size(), &used) != ARCHIVE_OK)
        throw std::runtime_error(std::string("libarchive: ") + archive_error_string(a));
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, tar_member.empty() ? "data" : tar_member.c_str());
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_perm(entry, 0644);
    archive_entry_set_size(entry, static_cast<la_int64_t>(content.size()));
    archive_write_header(a, entry);
    archive_write_data(a, content.data(), content.size());
    archive_entry_free(entry);
    archive_write_close(a);
    archive_write_free(a);
    return std::string(buffer.data(), used);
}

size_t document_suffix_index(const std::string& name) {
    size_t best = 0, best_length = 0;
    for (size_t i = 0; i < fuzz::kDocumentSuffixCount; ++i) {
        const std::string_view suffix = fuzz::kDocumentSuffixes[i];
        if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
            suffix.size() > best_length) {
            best = i;
            best_length = suffix.size();
        }
    }
    return best;
}

void document_seed(const fs::path& dir, const std::string& name, const std::string& content) {
    const char prefix[2] = {static_cast<char>(document_suffix_index(name)), 0};
    write_file(dir / name, std::string(prefix, 2) + content);
}

void tokenizer_seeds(const fs::path& dir, const std::vector<fs::path>& texts) {
    for (const fs::path& text : texts) {
        const std::string content = read_file(text);
        write_file(dir / ("encode_" + text.filename().string()), std::string("\0\x07", 2) + content);
        write_file(dir / ("special_" + text.filename().string()), "\x01\x10" + content + "<|endoftext|>");
    }
    write_file(dir / "decode", std::string("\x02\x00", 2) + std::string("\x48\x00\x65\x00\x6c\x00\xff\xc4", 8));
}

// The version-1 form of a version-2 file (version 1 had zeros where the checksums are), which
// the readers still accept without a checksum: mutations of it reach the parsing behind the
// checks.
void write_version_1(const fs::path& from, const fs::path& to, std::initializer_list<size_t> checksum_offsets) {
    std::string bytes = read_file(from);
    bytes[4] = 1;
    for (size_t offset : checksum_offsets) bytes.replace(offset, 4, 4, '\0');
    write_file(to, bytes);
}

void checkpoint_seeds(const fs::path& model_dir, const fs::path& state_dir) {
    ModelShape shape = fuzz::seed_model_shape();
    std::vector<float> params(static_cast<size_t>(ParamLayout(shape, 0.02).total()), 0.5f);
    write_model_file((model_dir / "pre_norm.bin").string(), shape, 7, params.data());
    shape.post_norm = true;
    shape.learned_pos_emb = false;
    shape.rotary_dim = 2;
    params.resize(static_cast<size_t>(ParamLayout(shape, 0.02).total()), 0.25f);
    write_model_file((model_dir / "post_norm_rotary.bin").string(), shape, 9, params.data());
    write_version_1(model_dir / "pre_norm.bin", model_dir / "pre_norm_version_1.bin", {13 * 4, 14 * 4});

    StateHeader header;
    header.identity = fuzz::seed_run_identity();
    header.step = 7;
    header.adam_step = 7;
    header.loss_scale = 65536.0;
    const std::vector<float> values(fuzz::kSeedStateFloats, 0.125f);
    write_state_file((state_dir / "state.bin").string(), header,
                     {{"master", values.data(), fuzz::kSeedStateFloats},
                      {"adam_m", values.data(), fuzz::kSeedStateFloats},
                      {"adam_v", values.data(), fuzz::kSeedStateFloats}});
    write_version_1(state_dir / "state.bin", state_dir / "state_version_1.bin", {56, 188});
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR (run from the repository root)\n", argv[0]);
        return 2;
    }
    const fs::path out = argv[1];
    try {
        for (const char* target : {"tokenizer_fuzzer", "shard_fuzzer", "model_file_fuzzer", "state_file_fuzzer",
                                   "tensor_bundle_fuzzer", "options_fuzzer", "documents_fuzzer",
                                   "matmul_tuning_record_fuzzer"})
            fs::create_directories(out / target);

        std::vector<fs::path> texts = {"tests/fixtures/text/plain.txt", "tests/fixtures/text/sentences.json"};
        for (const fs::directory_entry& entry : fs::directory_iterator("tests/tokenizer/fixtures")) texts.push_back(entry.path());
        tokenizer_seeds(out / "tokenizer_fuzzer", texts);

        for (const char* fixture_dir : {"tests/fixtures/text", "tests/fixtures/owt", "tests/fixtures/pile", "tests/fixtures/pile/train"})
            for (const fs::directory_entry& entry : fs::directory_iterator(fixture_dir))
                if (entry.is_regular_file() && entry.path().filename() != "SHA256SUMS")
                    document_seed(out / "documents_fuzzer", entry.path().filename().string(), read_file(entry.path()));
        const std::string text = read_file("tests/fixtures/text/plain.txt");
        for (const auto& [filter, name] : std::vector<std::pair<std::string, std::string>>{
                 {"gzip", "plain.gz"}, {"xz", "plain.xz"}, {"zstd", "plain.zst"}, {"bzip2", "plain.bz2"}, {"lzma", "plain.lzma"}})
            document_seed(out / "documents_fuzzer", name, compress(filter, text));
        document_seed(out / "documents_fuzzer", "docs.tgz", compress("gzip", text, "docs/plain.txt"));

        shard::write_shard((out / "shard_fuzzer/uint16.bin").string(), {1, 2, 3, 50256}, shard::kVersionUint16);
        shard::write_shard((out / "shard_fuzzer/uint32.bin").string(), {70000, 5, 50256}, shard::kVersionUint32);

        checkpoint_seeds(out / "model_file_fuzzer", out / "state_file_fuzzer");

        tensor_bundle::Bundle bundle;
        bundle.add<float>("logits", {2, 3}, {1, 2, 3, 4, 5, 6});
        bundle.add<int32_t>("tokens", {4}, {1, 2, 3, 50256});
        bundle.add<double>("loss", {}, {2.5});
        bundle.save((out / "tensor_bundle_fuzzer/bundle.bin").string());

        TuningRecord record;
        record.device = "NVIDIA H100 80GB HBM3";
        record.cublaslt_version = 130100;
        GemmChoice choice;
        choice.algo = {1, 2, 3, 4, 5, 6, 7, 0};
        choice.ms = 0.5;
        choice.heuristic_ms = 0.625;
        choice.index = 2;
        choice.candidates = 8;
        record.choices[{GemmSite::kForward, GemmDtype::kBf16, 32768, 3072, 768, true, true}] = choice;
        choice.fused = false;
        record.choices[{GemmSite::kBackwardInput, GemmDtype::kFp16, 32768, 768, 3072, false, true}] = choice;
        write_tuning_record_file((out / "matmul_tuning_record_fuzzer/record.txt").string(), record);

        const std::vector<std::vector<std::string>> command_lines = {
            {"-e", "gpt2s"},
            {"-e", "gpt3m-rotary", "--lr", "3e-4", "--print-config"},
            {"-e", "d12", "--device-batch", "4", "--zero-stage", "1", "--precision", "bf16"},
            {"-e", "gpt2l-8k", "--dropout-attn=0.0", "--seq-len", "4096"},
            {"--help"},
        };
        for (size_t i = 0; i < command_lines.size(); ++i) {
            std::string joined;  // the options target splits its input at NUL bytes
            for (const std::string& argument : command_lines[i]) joined += (joined.empty() ? "" : std::string(1, '\0')) + argument;
            write_file(out / "options_fuzzer" / ("command_line_" + std::to_string(i)), joined);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_seeds: %s\n", e.what());
        return 1;
    }
    return 0;
}
