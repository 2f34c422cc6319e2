// Workbench for kernels/attention_decode.cuh: the KV cache (a prompt's keys and values stored,
// one new token's appended) and decode attention (one query per sequence and head over its
// cached keys, split over 256-key blocks and merged).
//
//   build/dev/cuda/attention_decode          validate, then benchmark
//   build/dev/cuda/attention_decode --quick  validation only, small shapes (what `make test-gpu` runs)
//
// Validation per shape and precision: random prompts of different lengths per sequence stored
// with kv_cache_store_prompt, one new token per sequence appended with kv_cache_append at its
// own position, then attention_decode against a CPU reference in double on the same rounded
// inputs. The cache starts poisoned (NaN): a store that misses an element, or an attention that
// reads a position past a sequence's last, shows up as a non-finite output. The stored keys and
// values must equal the inputs bit for bit, and a launch sized for the whole cache (as the
// generator's CUDA graph records it) must give the output's bits again. Shapes cover every head size, positions inside one
// 256-key block, on its boundary and across several (the split and its merge), a sequence
// whose only key is the new token's, and sequences of unequal lengths in one batch.
//
// Benchmark: one call's time and the GB/s of the keys and values it must read, against the
// device's copy bandwidth, at batch 1 (where the split spreads one sequence over the SMs) and
// at a batch of prompts, for heads of 64 (gpt2s: 12 heads, gpt2xl: 25) and 128.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "dev/cuda/workbench.cuh"
#include "kernels/attention_decode.cuh"

namespace {

using workbench::DeviceArray;
using workbench::Tally;

struct DecodeShape {
    int NH, HD, max_seq;
    std::vector<int> positions;  // per sequence: the new token's position = its prompt's length
    int B() const { return static_cast<int>(positions.size()); }
};

// Each output is a softmax-weighted mean of rounded values, rounded once: about u RMS relative
// error (bf16 2^-8, fp16 2^-11) plus fp32 accumulation; the limits are 4u, as the attention
// workbench's, so a wrong key, scale or merge (O(1) errors) cannot pass.
template <typename T> double tolerance() { return std::is_same<T, __half>::value ? 2e-3 : 1.6e-2; }

// (t, 3, NH, HD) rows: q, k, v of t tokens.
size_t qkv_index(const DecodeShape& s, int row, int part, int h, int d) {
    return ((static_cast<size_t>(row) * 3 + part) * s.NH + h) * s.HD + d;
}

template <typename T> void validate(const DecodeShape& s, std::mt19937_64& rng, Tally& tally) {
    const int B = s.B(), NH = s.NH, HD = s.HD;
    const size_t cache_elements = static_cast<size_t>(B) * NH * s.max_seq * HD;
    DeviceArray<T> keys(cache_elements), values(cache_elements), out(static_cast<size_t>(B) * NH * HD);
    DeviceArray<T> new_qkv(static_cast<size_t>(B) * 3 * NH * HD);
    DeviceArray<int> positions(B);
    DeviceArray<float> scratch(attention_decode_scratch_floats(B, NH, HD, s.max_seq));
    workbench::poison(keys.ptr, cache_elements);
    workbench::poison(values.ptr, cache_elements);
    workbench::poison(out.ptr, static_cast<size_t>(B) * NH * HD);

    std::vector<std::vector<float>> prompts(B);  // (P_b, 3, NH, HD) as rounded to T
    for (int b = 0; b < B; ++b) {
        const int length = s.positions[b];
        if (length == 0) continue;
        DeviceArray<T> qkv(static_cast<size_t>(length) * 3 * NH * HD);
        prompts[b] = workbench::upload_rounded(qkv.ptr, workbench::random_vector(static_cast<size_t>(length) * 3 * NH * HD, rng));
        kv_cache_store_prompt(keys.ptr, values.ptr, qkv.ptr, b, length, NH, HD, s.max_seq, nullptr);
        CUDA_CHECK(cudaDeviceSynchronize());  // before the prompt's buffer goes
    }
    const std::vector<float> fresh = workbench::upload_rounded(new_qkv.ptr, workbench::random_vector(static_cast<size_t>(B) * 3 * NH * HD, rng));
    CUDA_CHECK(cudaMemcpy(positions.ptr, s.positions.data(), B * sizeof(int), cudaMemcpyHostToDevice));
    kv_cache_append(keys.ptr, values.ptr, new_qkv.ptr, positions.ptr, B, NH, HD, s.max_seq, nullptr);
    int max_position = 0;
    for (int p : s.positions) max_position = std::max(max_position, p);
    const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
    attention_decode(out.ptr, scratch.ptr, new_qkv.ptr, keys.ptr, values.ptr, positions.ptr, B, NH, HD, s.max_seq,
                     max_position, scale, nullptr);
    // A launch sized for the whole cache (the generator's CUDA graph) must give the same bits.
    DeviceArray<T> out_whole_cache(static_cast<size_t>(B) * NH * HD);
    attention_decode(out_whole_cache.ptr, scratch.ptr, new_qkv.ptr, keys.ptr, values.ptr, positions.ptr, B, NH, HD,
                     s.max_seq, s.max_seq - 1, scale, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<T> sized(static_cast<size_t>(B) * NH * HD), whole(sized.size());
    CUDA_CHECK(cudaMemcpy(sized.data(), out.ptr, sized.size() * sizeof(T), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(whole.data(), out_whole_cache.ptr, whole.size() * sizeof(T), cudaMemcpyDeviceToHost));
    const bool same_bits = std::memcmp(sized.data(), whole.data(), sized.size() * sizeof(T)) == 0;

    // Key or value (part 1 or 2) of sequence b, head h, position t, dim d as the cache must hold it.
    auto expected = [&](int b, int part, int h, int t, int d) {
        return t < s.positions[b] ? prompts[b][qkv_index(s, t, part, h, d)] : fresh[qkv_index(s, b, part, h, d)];
    };
    std::vector<double> reference(static_cast<size_t>(B) * NH * HD);
    const std::vector<float> cached_keys = workbench::download(keys.ptr, cache_elements);
    const std::vector<float> cached_values = workbench::download(values.ptr, cache_elements);
    bool stored_exactly = true;
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < NH; ++h) {
            const int keys_seen = s.positions[b] + 1;
            std::vector<double> scores(keys_seen);
            double largest = -INFINITY;
            for (int t = 0; t < keys_seen; ++t) {
                double dot = 0.0;
                for (int d = 0; d < HD; ++d) dot += static_cast<double>(fresh[qkv_index(s, b, 0, h, d)]) * expected(b, 1, h, t, d);
                scores[t] = dot * scale;
                largest = std::max(largest, scores[t]);
            }
            double total = 0.0;
            for (double& score : scores) total += (score = std::exp(score - largest));
            for (int d = 0; d < HD; ++d) {
                double o = 0.0;
                for (int t = 0; t < keys_seen; ++t) o += scores[t] / total * expected(b, 2, h, t, d);
                reference[(static_cast<size_t>(b) * NH + h) * HD + d] = o;
            }
            for (int t = 0; t < keys_seen; ++t)
                for (int d = 0; d < HD; ++d) {
                    const size_t at = ((static_cast<size_t>(b) * NH + h) * s.max_seq + t) * HD + d;
                    stored_exactly &= cached_keys[at] == expected(b, 1, h, t, d) && cached_values[at] == expected(b, 2, h, t, d);
                }
        }
    char label[96];
    std::snprintf(label, sizeof label, "%s NH=%d HD=%d B=%d up to %d", precision_name<T>(), NH, HD, B, max_position);
    const bool ok = workbench::report_check(label, workbench::compare(workbench::download(out.ptr, reference.size()), reference),
                                            tolerance<T>());
    std::printf("  %-28s cache holds the keys and values bit for bit  %s\n", "", stored_exactly ? "ok" : "FAIL");
    std::printf("  %-28s a launch for the whole cache gives the same bits  %s\n", "", same_bits ? "ok" : "FAIL");
    tally.add(ok);
    tally.add(stored_exactly);
    tally.add(same_bits);
}

void benchmark() {
    const workbench::DeviceInfo device = workbench::device_info();
    const double copy_gbs = workbench::measured_copy_bandwidth_gbs();
    std::printf("\nBenchmark on %s (%d SMs), bf16; measured copy bandwidth %.0f GB/s. GB/s counts the keys and values "
                "read (B x NH x (position + 1) x HD x 2 x 2 bytes).\n", device.name.c_str(), device.sm_count, copy_gbs);
    std::printf("  %5s %4s %4s %6s %7s %10s %8s %7s\n", "B", "NH", "HD", "keys", "splits", "us", "GB/s", "%copy");
    using T = __nv_bfloat16;
    struct Row { int B, NH, HD, keys; };
    for (const Row& r : {Row{1, 12, 64, 128}, Row{1, 12, 64, 1024}, Row{1, 25, 64, 1024}, Row{1, 16, 128, 4096},
                         Row{32, 12, 64, 1024}, Row{32, 25, 64, 1024}, Row{64, 12, 64, 512}, Row{8, 16, 128, 4096}}) {
        const size_t cache_elements = static_cast<size_t>(r.B) * r.NH * r.keys * r.HD;
        DeviceArray<T> keys(cache_elements), values(cache_elements), out(static_cast<size_t>(r.B) * r.NH * r.HD);
        DeviceArray<T> qkv(static_cast<size_t>(r.B) * 3 * r.NH * r.HD);
        DeviceArray<int> positions(r.B);
        DeviceArray<float> scratch(attention_decode_scratch_floats(r.B, r.NH, r.HD, r.keys));
        workbench::fill_uniform(keys.ptr, cache_elements, 1);
        workbench::fill_uniform(values.ptr, cache_elements, 2);
        workbench::fill_uniform(qkv.ptr, static_cast<size_t>(r.B) * 3 * r.NH * r.HD, 3);
        const std::vector<int> last(r.B, r.keys - 1);
        CUDA_CHECK(cudaMemcpy(positions.ptr, last.data(), r.B * sizeof(int), cudaMemcpyHostToDevice));
        const float ms = workbench::median_ms([&] {
            attention_decode(out.ptr, scratch.ptr, qkv.ptr, keys.ptr, values.ptr, positions.ptr, r.B, r.NH, r.HD, r.keys,
                             r.keys - 1, 0.125f, nullptr);
        });
        const double gbs = 2.0 * cache_elements * sizeof(T) / (ms * 1e-3) / 1e9;
        std::printf("  %5d %4d %4d %6d %7d %10.1f %8.0f %6.1f%%\n", r.B, r.NH, r.HD, r.keys,
                    attention_decode_detail::splits_for(r.keys - 1), ms * 1e3, gbs, 100.0 * gbs / copy_gbs);
    }
}

}  // namespace

int main(int argc, char** argv) {
    const workbench::Options options = workbench::parse_options(argc, argv, /*accepts_no_torch=*/false);
    std::mt19937_64 rng(20261207);
    Tally tally;
    const std::vector<DecodeShape> shapes = {
        {2, 64, 600, {10}},             // one sequence, one block (of a cache of three)
        {3, 80, 301, {0, 255, 300}},    // only the new key; exactly one full block; two blocks
        {2, 96, 520, {513, 7}},         // three blocks beside one, unequal lengths
        {1, 128, 1024, {1000, 1, 256}}, // four blocks; a block boundary plus one
    };
    std::printf("Validation (relative L2 error of the attention output; exact cache contents)\n");
    for (const DecodeShape& s : shapes) {
        validate<__nv_bfloat16>(s, rng, tally);
        validate<__half>(s, rng, tally);
    }
    if (!options.quick) benchmark();
    const bool ok = tally.failed == 0;
    std::printf("\n%s: attention_decode %d checks passed, %d failed\n", ok ? "PASS" : "FAIL", tally.passed, tally.failed);
    return ok ? 0 : 1;
}
