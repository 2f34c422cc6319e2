// Hugging Face export and import (host/hf_interop.h): transformers' names and layouts on a
// hand-built case, export -> import round trips for every exportable shape, and the refusals.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "host/checkpoint.h"
#include "host/hf_interop.h"
#include "host/safetensors.h"
#include "tests/test_support.h"

namespace {

using test_support::error_of;
using test_support::read_bytes;
using test_support::ScratchDir;
using Json = nlohmann::json;

ModelShape small_shape() {
    ModelShape s;
    s.n_layer = 3;  // layer 2's 1/3 is inexact in float: folding must round, not keep the value
    s.n_embd = 32;
    s.n_head = 4;
    s.max_seq_len = 16;
    s.vocab_size = 100;
    s.padded_vocab_size = 128;
    return s;
}

ModelShape rotary_shape(bool interleaved) {
    ModelShape s = small_shape();
    s.learned_pos_emb = false;
    s.rotary_dim = 4;  // of head_dim 8
    s.rotary_interleaved = interleaved;
    return s;
}

// Every weight random, padded vocabulary rows included (the trainer leaves them at their init).
std::vector<float> random_weights(const ModelShape& s, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.5f);
    std::vector<float> values(static_cast<size_t>(ParamLayout(s, 0.0).total()));
    for (float& v : values) v = normal(rng);
    return values;
}

std::vector<float> read_all(const std::string& path, const ModelShape& s) {
    std::vector<float> values(static_cast<size_t>(ParamLayout(s, 0.0).total()));
    read_model_params(path, s, values.data(), 0, static_cast<int64_t>(values.size()));
    return values;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

std::vector<float> read_tensor(const safetensors::Reader& reader, const std::string& name) {
    const safetensors::TensorInfo& info = reader.get(name);
    std::vector<float> values(static_cast<size_t>(info.numel()));
    reader.read_as_float32(info, values.data());
    return values;
}

Json read_json(const std::string& path) {
    std::ifstream in(path);
    return Json::parse(in);
}

void write_json(const std::string& path, const Json& value) { std::ofstream(path) << value.dump(2); }

hf::ExportOptions no_tokenizer() {
    hf::ExportOptions options;
    options.tokenizer = false;
    return options;
}

// What import must give back for `original` exported: the same weights except the padded
// vocabulary rows (zero), and, when the export transformed them, the q/k rows of qkv.
struct RoundTrip {
    ModelShape shape;
    std::vector<float> original;
    ModelShape imported_shape;
    std::vector<float> imported;
    std::vector<uint8_t> first_export, second_export;  // model.safetensors, byte for byte
};

RoundTrip round_trip(const ModelShape& shape, hf::LayerScaling scaling) {
    ScratchDir dir("test_hf_interop");
    RoundTrip result;
    result.shape = shape;
    result.original = random_weights(shape, 7);
    std::filesystem::create_directories(dir.file("a"));
    std::filesystem::create_directories(dir.file("b"));
    write_model_file(dir.file("a/model.bin"), shape, 0, result.original.data());
    hf::ExportOptions options = no_tokenizer();
    options.layer_scaling = scaling;
    hf::export_checkpoint(dir.file("a/model.bin"), dir.file("hf1"), options);
    const hf::Summary imported = hf::import_directory(dir.file("hf1"), dir.file("b/model.bin"), {});
    result.imported_shape = imported.shape;
    result.imported = read_all(dir.file("b/model.bin"), imported.shape);
    hf::export_checkpoint(dir.file("b/model.bin"), dir.file("hf2"), options);
    const std::vector<char> first = read_bytes(dir.file("hf1/model.safetensors"));
    const std::vector<char> second = read_bytes(dir.file("hf2/model.safetensors"));
    result.first_export.assign(first.begin(), first.end());
    result.second_export.assign(second.begin(), second.end());
    return result;
}

// `expected` with the padded wte rows zeroed, compared bit for bit with `actual`.
void expect_same_weights(const ModelShape& s, std::vector<float> expected, const std::vector<float>& actual) {
    const int64_t real = int64_t{s.vocab_size} * s.n_embd, padded = int64_t{s.padded_vocab_size} * s.n_embd;
    std::fill(expected.begin() + real, expected.begin() + padded, 0.0f);
    ASSERT_EQ(expected.size(), actual.size());
    const ParamLayout layout(s, 0.0);
    for (const ParamTensor& tensor : layout.tensors()) {
        int64_t differing = 0;
        for (int64_t i = tensor.offset; i < tensor.offset + tensor.numel; i++)
            differing += !same_bits(expected[i], actual[i]);
        EXPECT_EQ(differing, 0) << tensor.name;
    }
}

TEST(HfInterop, Gpt2RoundTripIsBitExact) {
    const RoundTrip trip = round_trip(small_shape(), hf::LayerScaling::fold);
    EXPECT_EQ(trip.imported_shape, trip.shape);
    expect_same_weights(trip.shape, trip.original, trip.imported);
    EXPECT_EQ(trip.first_export, trip.second_export);
}

TEST(HfInterop, Gpt2LayerScalingFlagRoundTripIsBitExact) {
    ModelShape s = small_shape();
    s.scale_attn_by_inverse_layer_idx = true;
    const RoundTrip trip = round_trip(s, hf::LayerScaling::flag);
    EXPECT_EQ(trip.imported_shape, s);
    expect_same_weights(s, trip.original, trip.imported);
    EXPECT_EQ(trip.first_export, trip.second_export);
}

// Folding: the import is the plain model whose query rows are fl(q / (layer + 1)).
TEST(HfInterop, FoldedLayerScalingComesBackFoldedAndExportsIdentically) {
    for (const ModelShape& base : {small_shape(), rotary_shape(false)}) {
        ModelShape s = base;
        s.scale_attn_by_inverse_layer_idx = true;
        const RoundTrip trip = round_trip(s, hf::LayerScaling::fold);
        ModelShape plain = s;
        plain.scale_attn_by_inverse_layer_idx = false;
        EXPECT_EQ(trip.imported_shape, plain);
        std::vector<float> expected = trip.original;
        const ParamLayout layout(s, 0.0);
        int64_t inexact = 0;
        for (int l = 0; l < s.n_layer; l++) {
            float* w = expected.data() + layout.layer_offset(layout.get("qkv_w"), l);
            float* b = expected.data() + layout.layer_offset(layout.get("qkv_b"), l);
            for (int64_t i = 0; i < int64_t{s.n_embd} * s.n_embd; i++) {
                const float folded = w[i] / static_cast<float>(l + 1);
                inexact += static_cast<double>(folded) * (l + 1) != static_cast<double>(w[i]);
                w[i] = folded;
            }
            for (int64_t i = 0; i < s.n_embd; i++) b[i] /= static_cast<float>(l + 1);
        }
        EXPECT_GT(inexact, 0) << "the test should cover a divisor that rounds";
        expect_same_weights(s, expected, trip.imported);
        EXPECT_EQ(trip.first_export, trip.second_export);
    }
}

TEST(HfInterop, RotaryRoundTripIsBitExact) {
    const RoundTrip trip = round_trip(rotary_shape(false), hf::LayerScaling::fold);
    EXPECT_EQ(trip.imported_shape, trip.shape);
    expect_same_weights(trip.shape, trip.original, trip.imported);
    EXPECT_EQ(trip.first_export, trip.second_export);
}

// Interleaved rotary comes back as rotate-half with the first rotary_dim rows of every q and k
// head in the order (0, 2, ..., r-2, 1, 3, ..., r-1).
TEST(HfInterop, InterleavedRotaryComesBackAsRotateHalfWithPermutedQueryKeyDims) {
    const ModelShape s = rotary_shape(true);
    const RoundTrip trip = round_trip(s, hf::LayerScaling::fold);
    ModelShape rotate_half = s;
    rotate_half.rotary_interleaved = false;
    EXPECT_EQ(trip.imported_shape, rotate_half);
    std::vector<float> expected = trip.original;
    const ParamLayout layout(s, 0.0);
    const int C = s.n_embd, hd = C / s.n_head;
    const int order[] = {0, 2, 1, 3};  // rotary_dim 4
    for (int l = 0; l < s.n_layer; l++)
        for (const char* name : {"qkv_w", "qkv_b"}) {
            const int64_t cols = std::string(name) == "qkv_w" ? C : 1;
            const float* source = trip.original.data() + layout.layer_offset(layout.get(name), l);
            float* target = expected.data() + layout.layer_offset(layout.get(name), l);
            for (int part = 0; part < 2; part++)
                for (int h = 0; h < s.n_head; h++)
                    for (int d = 0; d < s.rotary_dim; d++) {
                        const int64_t head_row = int64_t{part} * C + int64_t{h} * hd;
                        std::memcpy(target + (head_row + d) * cols, source + (head_row + order[d]) * cols,
                                    cols * sizeof(float));
                    }
        }
    expect_same_weights(s, expected, trip.imported);
    EXPECT_EQ(trip.first_export, trip.second_export);
}

// One layer, C = 4, 2 heads: every weight tells where it came from, so each transformers tensor
// can be checked element by element against the layout written out by hand.
TEST(HfInterop, Gpt2NamesAndConv1dTransposesOnAHandBuiltModel) {
    ScratchDir dir("test_hf_interop");
    ModelShape s;
    s.n_layer = 1;
    s.n_embd = 4;
    s.n_head = 2;
    s.max_seq_len = 3;
    s.vocab_size = 5;
    s.padded_vocab_size = 8;
    const ParamLayout layout(s, 0.0);
    std::vector<float> weights(static_cast<size_t>(layout.total()));
    for (size_t i = 0; i < weights.size(); i++) weights[i] = static_cast<float>(i);
    write_model_file(dir.file("model.bin"), s, 0, weights.data());
    hf::export_checkpoint(dir.file("model.bin"), dir.file("hf"), no_tokenizer());
    const safetensors::Reader reader(dir.file("hf/model.safetensors"));

    std::set<std::string> names;
    for (const safetensors::TensorInfo& info : reader.tensors()) names.insert(info.name);
    const std::set<std::string> expected_names = {
        "transformer.wte.weight", "transformer.wpe.weight",
        "transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.bias",
        "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias",
        "transformer.h.0.attn.c_proj.weight", "transformer.h.0.attn.c_proj.bias",
        "transformer.h.0.ln_2.weight", "transformer.h.0.ln_2.bias",
        "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_fc.bias",
        "transformer.h.0.mlp.c_proj.weight", "transformer.h.0.mlp.c_proj.bias",
        "transformer.ln_f.weight", "transformer.ln_f.bias"};
    EXPECT_EQ(names, expected_names);
    EXPECT_EQ(reader.metadata().at("format"), "pt");

    // wte: the 5 real rows of 4 (elements 0..19); the 3 padded rows are gone.
    const std::vector<float> wte = read_tensor(reader, "transformer.wte.weight");
    EXPECT_EQ(reader.get("transformer.wte.weight").shape, std::vector<int64_t>({5, 4}));
    for (int i = 0; i < 20; i++) EXPECT_EQ(wte[i], i);
    // wpe follows the padded wte (8 x 4 = 32 elements).
    EXPECT_EQ(read_tensor(reader, "transformer.wpe.weight")[0], 32.0f);
    // c_attn.weight is (in 4, out 12): element [k][r] is our qkv_w[r][k].
    const float qkv0 = static_cast<float>(layout.get("qkv_w").offset);
    const std::vector<float> c_attn = read_tensor(reader, "transformer.h.0.attn.c_attn.weight");
    EXPECT_EQ(reader.get("transformer.h.0.attn.c_attn.weight").shape, std::vector<int64_t>({4, 12}));
    for (int k = 0; k < 4; k++)
        for (int r = 0; r < 12; r++) EXPECT_EQ(c_attn[k * 12 + r], qkv0 + r * 4 + k) << k << "," << r;
    // mlp.c_proj.weight is (in 16, out 4): element [k][r] is our fc_proj_w[r][k] (our (4, 16)).
    const float proj0 = static_cast<float>(layout.get("fc_proj_w").offset);
    const std::vector<float> c_proj = read_tensor(reader, "transformer.h.0.mlp.c_proj.weight");
    EXPECT_EQ(reader.get("transformer.h.0.mlp.c_proj.weight").shape, std::vector<int64_t>({16, 4}));
    EXPECT_EQ(c_proj[1 * 4 + 2], proj0 + 2 * 16 + 1);
    EXPECT_EQ(c_proj[15 * 4 + 3], proj0 + 3 * 16 + 15);
    EXPECT_EQ(read_tensor(reader, "transformer.h.0.attn.c_attn.bias")[11],
              static_cast<float>(layout.get("qkv_b").offset + 11));

    const Json config = read_json(dir.file("hf/config.json"));
    EXPECT_EQ(config["architectures"][0], "GPT2LMHeadModel");
    EXPECT_EQ(config["n_positions"], 3);
    EXPECT_EQ(config["vocab_size"], 5);
    EXPECT_EQ(config["activation_function"], "gelu_new");
    EXPECT_EQ(config["scale_attn_by_inverse_layer_idx"], false);
    EXPECT_FALSE(config.contains("bos_token_id")) << "not GPT-2's vocabulary";
}

// GPT-NeoX: query_key_value's row (head, part, d) is our row (part, head, d).
TEST(HfInterop, NeoxFusedQkvLayoutOnAHandBuiltModel) {
    ScratchDir dir("test_hf_interop");
    ModelShape s;
    s.n_layer = 1;
    s.n_embd = 4;
    s.n_head = 2;
    s.max_seq_len = 3;
    s.vocab_size = 5;
    s.padded_vocab_size = 5;
    s.learned_pos_emb = false;
    s.rotary_dim = 2;
    const ParamLayout layout(s, 0.0);
    std::vector<float> weights(static_cast<size_t>(layout.total()));
    for (size_t i = 0; i < weights.size(); i++) weights[i] = static_cast<float>(i);
    write_model_file(dir.file("model.bin"), s, 0, weights.data());
    hf::export_checkpoint(dir.file("model.bin"), dir.file("hf"), no_tokenizer());
    const safetensors::Reader reader(dir.file("hf/model.safetensors"));
    EXPECT_EQ(reader.find("embed_out.weight"), nullptr) << "tied: not stored";
    const float b0 = static_cast<float>(layout.get("qkv_b").offset);
    const std::vector<float> bias = read_tensor(reader, "gpt_neox.layers.0.attention.query_key_value.bias");
    // hf rows: h0 (q0 q1 k0 k1 v0 v1), h1 (q2 q3 k2 k3 v2 v3); ours: q0..q3 k0..k3 v0..v3.
    const int ours_of_hf[] = {0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11};
    for (int i = 0; i < 12; i++) EXPECT_EQ(bias[i], b0 + ours_of_hf[i]) << i;
    const float w0 = static_cast<float>(layout.get("qkv_w").offset);
    const std::vector<float> w = read_tensor(reader, "gpt_neox.layers.0.attention.query_key_value.weight");
    EXPECT_EQ(w[6 * 4 + 3], w0 + 2 * 4 + 3);  // hf row 6 (head 1, q, d 0) = our row 2, not transposed
    const std::vector<float> dense = read_tensor(reader, "gpt_neox.layers.0.attention.dense.weight");
    EXPECT_EQ(dense[1], static_cast<float>(layout.get("attn_proj_w").offset + 1));
    const Json config = read_json(dir.file("hf/config.json"));
    EXPECT_EQ(config["architectures"][0], "GPTNeoXForCausalLM");
    EXPECT_EQ(config["use_parallel_residual"], false);
    EXPECT_EQ(config["tie_word_embeddings"], true);
    EXPECT_EQ(config["rotary_pct"], 1.0);
    EXPECT_EQ(config["rotary_emb_base"], 10000);
}

TEST(HfInterop, TokenizerFilesForGpt2Vocabulary) {
    ScratchDir dir("test_hf_interop");
    ModelShape s = small_shape();
    s.vocab_size = 50257;
    s.padded_vocab_size = 50304;
    s.n_layer = 1;
    const std::vector<float> weights(static_cast<size_t>(ParamLayout(s, 0.0).total()), 0.25f);
    write_model_file(dir.file("model.bin"), s, 0, weights.data());
    std::filesystem::create_directories(dir.file("vocab"));
    std::ofstream(dir.file("vocab/encoder.json")) << "{\"!\": 0}";
    std::ofstream(dir.file("vocab/vocab.bpe")) << "\xC4\xA0 t\n";  // no version line: export adds it
    hf::ExportOptions options;
    options.vocab_dir = dir.file("vocab");
    hf::export_checkpoint(dir.file("model.bin"), dir.file("hf"), options);
    const std::vector<char> vocab = read_bytes(dir.file("hf/vocab.json"));
    EXPECT_EQ(std::string(vocab.begin(), vocab.end()), "{\"!\": 0}");
    const std::vector<char> merges = read_bytes(dir.file("hf/merges.txt"));
    EXPECT_EQ(std::string(merges.begin(), merges.end()), "#version: 0.2\n\xC4\xA0 t\n");
    EXPECT_EQ(read_json(dir.file("hf/tokenizer_config.json"))["tokenizer_class"], "GPT2Tokenizer");
    EXPECT_EQ(read_json(dir.file("hf/config.json"))["eos_token_id"], 50256);
    EXPECT_EQ(read_json(dir.file("hf/generation_config.json"))["bos_token_id"], 50256);
    EXPECT_NE(error_of([&] {
                  options.vocab_dir = dir.file("nowhere");
                  hf::export_checkpoint(dir.file("model.bin"), dir.file("hf"), options);
              }).find("--vocab DIR"),
              std::string::npos);
}

TEST(HfInterop, ExportRefusesModelsNoArchitectureExpresses) {
    ScratchDir dir("test_hf_interop");
    auto export_error = [&](const ModelShape& s) {
        const std::vector<float> weights(static_cast<size_t>(ParamLayout(s, 0.0).total()), 0.0f);
        write_model_file(dir.file("m.bin"), s, 0, weights.data());
        return error_of([&] { hf::export_checkpoint(dir.file("m.bin"), dir.file("out"), no_tokenizer()); });
    };
    ModelShape post_norm = small_shape();
    post_norm.post_norm = true;
    EXPECT_NE(export_error(post_norm).find("post-norm model (LayerNorm after each residual add, no final LayerNorm): "
                                           "no Hugging Face architecture computes that exactly"),
              std::string::npos);
    ModelShape both = small_shape();
    both.rotary_dim = 4;
    EXPECT_NE(export_error(both).find("both learned position embeddings and rotary"), std::string::npos);
    ModelShape neither = rotary_shape(false);
    neither.rotary_dim = 0;
    EXPECT_NE(export_error(neither).find("no position information"), std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(dir.file("out/model.safetensors")));
}

// An exported GPT-2 directory, then edited to be wrong in one way at a time.
class HfImportRejects : public ::testing::Test {
  protected:
    void SetUp() override {
        const ModelShape s = small_shape();
        const std::vector<float> weights = random_weights(s, 3);
        write_model_file(dir_.file("model.bin"), s, 0, weights.data());
        hf::export_checkpoint(dir_.file("model.bin"), hf_dir(), no_tokenizer());
    }
    std::string hf_dir() const { return dir_.file("hf"); }
    std::string import_error() {
        return error_of([&] { hf::import_directory(hf_dir(), dir_.file("imported.bin"), {}); });
    }
    void edit_config(const std::function<void(Json&)>& edit) {
        Json config = read_json(hf_dir() + "/config.json");
        edit(config);
        write_json(hf_dir() + "/config.json", config);
    }
    // Rewrites model.safetensors through `edit` of its (name, shape, values) list.
    struct Entry {
        std::string name;
        std::vector<int64_t> shape;
        std::vector<float> values;
    };
    void edit_tensors(const std::function<void(std::vector<Entry>&)>& edit) {
        std::vector<Entry> entries;
        {
            const safetensors::Reader reader(hf_dir() + "/model.safetensors");
            for (const safetensors::TensorInfo& info : reader.tensors())
                entries.push_back({info.name, info.shape, read_tensor(reader, info.name)});
        }
        edit(entries);
        std::vector<safetensors::TensorToWrite> tensors;
        for (const Entry& e : entries)
            tensors.push_back({e.name, safetensors::DType::F32, e.shape, [&e](void* dst) {
                                   std::memcpy(dst, e.values.data(), e.values.size() * sizeof(float));
                               }});
        safetensors::write_file(hf_dir() + "/model.safetensors", {{"format", "pt"}}, tensors);
    }
    ScratchDir dir_{"test_hf_interop"};
};

TEST_F(HfImportRejects, AnotherArchitecture) {
    edit_config([](Json& c) { c["model_type"] = "llama"; });
    EXPECT_NE(import_error().find("\"model_type\" is \"llama\": import reads GPT-2"), std::string::npos);
}

TEST_F(HfImportRejects, ShapeThatDisagreesWithConfig) {
    edit_config([](Json& c) { c["n_positions"] = 32; });
    const std::string error = import_error();
    EXPECT_NE(error.find("tensor \"transformer.wpe.weight\" has the shape (16, 32), but config.json describes (32, 32)"),
              std::string::npos)
        << error;
    EXPECT_NE(error.find("model.safetensors"), std::string::npos);
}

TEST_F(HfImportRejects, MissingTensor) {
    edit_tensors([](std::vector<Entry>& e) {
        e.erase(std::remove_if(e.begin(), e.end(), [](const Entry& x) { return x.name == "transformer.h.1.ln_2.bias"; }),
                e.end());
    });
    EXPECT_NE(import_error().find("lacks the tensor \"transformer.h.1.ln_2.bias\""), std::string::npos);
}

TEST_F(HfImportRejects, UnexpectedTensorButNotTheCausalMaskBuffer) {
    edit_tensors([](std::vector<Entry>& e) { e.push_back({"transformer.h.0.attn.bias", {1, 1, 2, 2}, {1, 0, 1, 1}}); });
    EXPECT_EQ(import_error(), "(no error)");
    edit_tensors([](std::vector<Entry>& e) { e.push_back({"transformer.h.0.attn.q_attn.weight", {2}, {1, 2}}); });
    EXPECT_NE(import_error().find("1 tensor(s) a GPT2LMHeadModel of this config has no place for: "
                                  "transformer.h.0.attn.q_attn.weight"),
              std::string::npos);
}

TEST_F(HfImportRejects, UntiedLmHead) {
    edit_tensors([](std::vector<Entry>& e) {
        Entry head = e.front();  // transformer.wte.weight
        head.name = "lm_head.weight";
        head.values[5] += 1.0f;
        e.push_back(head);
    });
    EXPECT_NE(import_error().find("\"lm_head.weight\" differs from the token embedding"), std::string::npos);
}

TEST_F(HfImportRejects, SettingsOurModelCannotCompute) {
    edit_config([](Json& c) { c["activation_function"] = "gelu"; });
    EXPECT_NE(import_error().find("\"activation_function\" is \"gelu\": our model computes GELU's tanh approximation"),
              std::string::npos);
    edit_config([](Json& c) {
        c["activation_function"] = "gelu_new";
        c["layer_norm_epsilon"] = 1e-6;
    });
    EXPECT_NE(import_error().find("\"layer_norm_epsilon\""), std::string::npos);
    edit_config([](Json& c) {
        c["layer_norm_epsilon"] = 1e-5;
        c.erase("n_head");
    });
    EXPECT_NE(import_error().find("config.json: \"n_head\" is missing"), std::string::npos);
}

TEST_F(HfImportRejects, PickleOnlyDirectory) {
    std::filesystem::remove(hf_dir() + "/model.safetensors");
    std::ofstream(hf_dir() + "/pytorch_model.bin") << "x";
    EXPECT_NE(import_error().find("holds pytorch_model.bin (a pickle) but no model.safetensors"), std::string::npos);
}

TEST_F(HfImportRejects, NeoxWithParallelResidual) {
    const ModelShape s = rotary_shape(false);
    const std::vector<float> weights = random_weights(s, 5);
    write_model_file(dir_.file("rotary.bin"), s, 0, weights.data());
    hf::export_checkpoint(dir_.file("rotary.bin"), hf_dir(), no_tokenizer());
    EXPECT_EQ(import_error(), "(no error)");
    edit_config([](Json& c) { c.erase("use_parallel_residual"); });
    EXPECT_NE(import_error().find("\"use_parallel_residual\" is true (or absent, which means true)"), std::string::npos);
}

TEST(HfInterop, ImportPadsVocabularyAsTheTrainerDoes) {
    ScratchDir dir("test_hf_interop");
    const ModelShape s = small_shape();
    const std::vector<float> weights = random_weights(s, 11);
    write_model_file(dir.file("model.bin"), s, 0, weights.data());
    hf::export_checkpoint(dir.file("model.bin"), dir.file("hf"), no_tokenizer());
    hf::ImportOptions options;
    options.pad_vocab_to = 64;
    const hf::Summary summary = hf::import_directory(dir.file("hf"), dir.file("b.bin"), options);
    EXPECT_EQ(summary.shape.padded_vocab_size, 128);  // 100 rounded up to a multiple of 64
    options.pad_vocab_to = 1;
    EXPECT_EQ(hf::import_directory(dir.file("hf"), dir.file("c.bin"), options).shape.padded_vocab_size, 100);
    EXPECT_EQ(read_model_header(dir.file("c.bin")).shape.padded_vocab_size, 100);
}

}  // namespace
