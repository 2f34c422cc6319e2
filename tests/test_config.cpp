// Configuration, the presets: every experiment resolves to experiments.md's values (the seed's
// Hydra configs followed through their defaults), and a checkpoint file gives the model's shape.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "host/checkpoint.h"
#include "host/config.h"
#include "tests/config_test_support.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace config_test;

namespace {

// ---------------------------------------------------------------------------------------------
// Presets

TEST(ConfigPresetTest, EveryPresetAndVariantResolves) {
    for (const std::string& name : all_experiment_names()) {
        const ParsedArgs parsed = parse_args({"-e", name, "--print-config"}, kContext);
        EXPECT_TRUE(parsed.print_config);
        const Json json = Json::parse(parsed.config.to_json());
        EXPECT_EQ(json["experiment"], name);
        EXPECT_EQ(json["tokens_per_step"], json["global_batch_tokens"]) << name;  // divides exactly
        EXPECT_FALSE(parsed.config.to_table().empty());
    }
}

TEST(ConfigPresetTest, EverySeedPresetKeepsTheResidualStreamInFp32) {
    // residual_in_fp32: True in owt/gpt2s-flash.yaml and pile/gpt3s-flash.yaml, inherited by
    // every -flash experiment.
    for (const std::string& name : all_experiment_names()) {
        const Json json = Json::parse(parse({"-e", name, "--print-config"}).to_json());
        EXPECT_EQ(json["fp32_residual"], true) << name;
    }
    EXPECT_FALSE(parse({"-e", "d12"}).fp32_residual) << "dN is our quick recipe, not a seed experiment";
    // A pre-norm feature: --post-norm 1 on a preset drops it; asking for both is an error.
    const TrainConfig post = parse({"-e", "gpt2s", "--post-norm", "1"});
    EXPECT_TRUE(post.post_norm);
    EXPECT_FALSE(post.fp32_residual);
    EXPECT_NE(error_of({"-e", "gpt2s", "--post-norm", "1", "--fp32-residual", "1"}).find("needs pre-norm blocks"),
              std::string::npos);
    EXPECT_FALSE(parse({"-e", "gpt2s", "--fp32-residual", "0"}).fp32_residual);
}

TEST(ConfigPresetTest, ParameterCountsMatchExperimentsTable) {
    // experiments.md pads the vocabulary to a multiple of 8; its table rounds to 0.1M.
    const std::vector<std::pair<std::string, double>> millions = {
        {"gpt2s", 124.4}, {"gpt2m", 354.8}, {"gpt2l", 774.0}, {"gpt2xl", 1557.6}, {"gpt3s", 125.2},
        {"gpt3m", 355.9}, {"gpt3l", 760.3}, {"gpt3xl", 1315.7}, {"gpt3-2.7B", 2651.6}};
    for (const auto& [name, expected] : millions) {
        const TrainConfig config = parse({"-e", name, "--pad-vocab-to", "8"});
        EXPECT_EQ(config.padded_vocab_size, 50264);
        EXPECT_NEAR(config.num_params / 1e6, expected, 0.05) << name;
    }
}

TEST(ConfigPresetTest, Gpt2SmallIsTheSeedsOpenWebTextRun) {
    const TrainConfig c = parse({"-e", "gpt2s"});
    EXPECT_EQ(c.n_layer, 12);
    EXPECT_EQ(c.n_embd, 768);
    EXPECT_EQ(c.n_head, 12);
    EXPECT_EQ(c.seq_len, 1024);
    EXPECT_EQ(c.max_seq_len, 1024);
    EXPECT_EQ(c.global_batch_tokens, 524288);
    EXPECT_EQ(c.device_batch, kDeviceBatchAuto);  // the largest that fits the GPU (the seed's 64 on 80 GB)
    EXPECT_EQ(c.grad_accum, 0);                   // known once B is
    EXPECT_EQ(c.sequences_per_gpu, 512);
    EXPECT_EQ(c.tokens_per_step, 524288);
    EXPECT_EQ(c.lr, 6e-4);
    EXPECT_EQ(c.warmup_steps, 4000);
    EXPECT_EQ(c.warmup_init_lr, 0.0);
    EXPECT_EQ(c.schedule, LrScheduleKind::linear);
    EXPECT_EQ(c.decay_end_step, 400000);
    EXPECT_EQ(c.min_lr_ratio, 0.0);
    EXPECT_EQ(c.steps, 400000);
    EXPECT_EQ(c.precision, Precision::fp16);
    EXPECT_EQ(c.loss_scale_init, 65536.0);
    EXPECT_EQ(c.loss_scale_growth_interval, 2000);
    EXPECT_EQ(c.dropout_embd, 0.1);
    EXPECT_EQ(c.dropout_resid, 0.1);
    EXPECT_EQ(c.dropout_attn, 0.1);
    EXPECT_TRUE(c.scale_attn_by_inverse_layer_idx);
    EXPECT_TRUE(c.learned_pos_emb);
    EXPECT_FALSE(c.post_norm);
    EXPECT_EQ(c.rotary_dim, 0);
    EXPECT_EQ(c.init_scheme, InitScheme::gpt2);
    EXPECT_DOUBLE_EQ(c.base_init_std, 0.02);
    EXPECT_DOUBLE_EQ(c.residual_init_std, 0.02 / std::sqrt(24.0));
    EXPECT_EQ(c.beta1, 0.9);
    EXPECT_EQ(c.beta2, 0.999);
    EXPECT_EQ(c.adam_eps, 1e-8);
    EXPECT_EQ(c.weight_decay, 0.1);
    EXPECT_EQ(c.grad_clip, 1.0);
    EXPECT_EQ(c.layernorm_eps, 1e-5);
    EXPECT_EQ(c.seed, 1111u);
    EXPECT_EQ(c.val_every, 1000);
    EXPECT_EQ(c.val_tokens, 0);  // the whole 4.4M-token holdout, as the seed
    EXPECT_EQ(c.dataset, "openwebtext");
    EXPECT_EQ(c.train_pattern, "/datasets/openwebtext/*_train_*.bin");
    EXPECT_EQ(c.val_pattern, "/datasets/openwebtext/*_val_*.bin");
    EXPECT_EQ(c.vocab_size, 50257);
    EXPECT_EQ(c.padded_vocab_size, 50304);
}

TEST(ConfigPresetTest, LargerGpt2InheritGpt2MediumLearningRate) {
    for (const char* name : {"gpt2m", "gpt2l", "gpt2xl"}) EXPECT_EQ(parse({"-e", name}).lr, 1.5e-4) << name;
    EXPECT_NE(help_text().find("lr 1.5e-4 is inherited from gpt2m"), std::string::npos);
    const TrainConfig xl = parse({"-e", "gpt2xl"});
    EXPECT_EQ(xl.n_layer, 48);
    EXPECT_EQ(xl.n_embd, 1600);
    EXPECT_EQ(xl.n_head, 25);
    EXPECT_EQ(xl.device_batch, kDeviceBatchAuto);
    EXPECT_EQ(xl.sequences_per_gpu, 512);
}

TEST(ConfigPresetTest, PileRuns) {
    const TrainConfig s = parse({"-e", "gpt3s"});
    EXPECT_EQ(s.seq_len, 2048);
    EXPECT_EQ(s.global_batch_tokens, 256 * 2048);
    EXPECT_EQ(s.device_batch, kDeviceBatchAuto);
    EXPECT_EQ(s.sequences_per_gpu, 256);
    EXPECT_EQ(s.lr, 6e-4);
    EXPECT_EQ(s.warmup_steps, 8000);
    EXPECT_EQ(s.warmup_init_lr, 1e-6);
    EXPECT_EQ(s.schedule, LrScheduleKind::cosine);
    EXPECT_EQ(s.decay_end_step, 600000);
    EXPECT_EQ(s.min_lr_ratio, 0.1);
    EXPECT_EQ(s.steps, 800000);
    EXPECT_EQ(s.precision, Precision::bf16);
    EXPECT_EQ(s.val_every, 2000);
    EXPECT_EQ(s.dataset, "the_pile");
    EXPECT_EQ(s.val_tokens, 0);  // the whole split, as the seed (383M tokens; --val-tokens caps it)
    EXPECT_EQ(s.test_pattern, "/datasets/the_pile/*_test_*.bin");
    EXPECT_TRUE(s.test_at_end);
    EXPECT_EQ(parse({"-e", "gpt3m"}).lr, 3e-4);
    const TrainConfig l = parse({"-e", "gpt3l"});
    EXPECT_EQ(l.lr, 2.5e-4);
    EXPECT_EQ(l.n_embd, 1536);
    EXPECT_EQ(l.d_head, 96);

    const TrainConfig xl = parse({"-e", "gpt3xl"});
    EXPECT_EQ(xl.global_batch_tokens, 512 * 2048);
    EXPECT_EQ(xl.sequences_per_gpu, 512);
    EXPECT_EQ(xl.lr, 2e-4);
    EXPECT_EQ(xl.warmup_steps, 4000);
    EXPECT_EQ(xl.decay_end_step, 300000);
    EXPECT_EQ(xl.steps, 400000);
    EXPECT_EQ(xl.val_every, 1000);
    EXPECT_EQ(xl.d_head, 128);

    const TrainConfig big = parse({"-e", "gpt3-2.7B"});
    EXPECT_EQ(big.n_layer, 32);
    EXPECT_EQ(big.n_embd, 2560);
    EXPECT_EQ(big.n_head, 32);
    EXPECT_EQ(big.d_head, 80);
    EXPECT_EQ(big.lr, 1.6e-4);
    EXPECT_EQ(big.init_scheme, InitScheme::small_init);
    EXPECT_DOUBLE_EQ(big.base_init_std, std::sqrt(2.0 / (5.0 * 2560)));
    EXPECT_DOUBLE_EQ(big.residual_init_std, std::sqrt(2.0 / (5.0 * 2560)) / 8.0);
    EXPECT_EQ(parse({"-e", "gpt3-2.7B", "--n-head", "20"}).d_head, 128);
    EXPECT_EQ(parse({"-e", "GPT3-2.7b"}).experiment, "gpt3-2.7B");  // names are case-insensitive
}

TEST(ConfigPresetTest, RotaryAndLongContextVariants) {
    const TrainConfig rotary = parse({"-e", "gpt3s-rotary"});
    EXPECT_FALSE(rotary.learned_pos_emb);
    EXPECT_EQ(rotary.rotary_fraction, 0.5);
    EXPECT_EQ(rotary.rotary_dim, 32);
    EXPECT_EQ(rotary.rotary_base, 10000);
    EXPECT_FALSE(rotary.rotary_interleaved);
    EXPECT_EQ(parse({"-e", "gpt3-2.7B-rotary"}).rotary_dim, 40);
    EXPECT_EQ(parse({"-e", "gpt3xl-rotary"}).rotary_dim, 64);

    const TrainConfig long_s = parse({"-e", "gpt3s-8k"});
    EXPECT_EQ(long_s.seq_len, 8192);
    EXPECT_EQ(long_s.max_seq_len, 8192);
    EXPECT_EQ(long_s.global_batch_tokens / 8192, 64);
    EXPECT_EQ(long_s.sequences_per_gpu, 64);
    EXPECT_EQ(parse({"-e", "gpt3xl-8k"}).global_batch_tokens / 8192, 128);
    EXPECT_EQ(parse({"-e", "gpt3-2.7B-8k"}).global_batch_tokens / 8192, 128);
    EXPECT_EQ(parse({"-e", "gpt3-2.7B-8k"}).sequences_per_gpu, 128);
    EXPECT_EQ(parse({"-e", "gpt2s-8k"}).global_batch_tokens / 8192, 64);

    const TrainConfig both = parse({"-e", "gpt3m-rotary-8k"});
    EXPECT_EQ(both.experiment, "gpt3m-rotary-8k");
    EXPECT_EQ(both.rotary_dim, 32);
    EXPECT_EQ(both.seq_len, 8192);
    EXPECT_EQ(parse({"-e", "gpt3m-8k-rotary"}).experiment, "gpt3m-rotary-8k");
}

TEST(ConfigPresetTest, TheSeedsSixtyThousandStepRuns) {
    // pile/gpt3{s,m,l}-flash-rotary-30B and gpt3xl-flash-rotary-60B: the rotary run with
    // trainer.max_steps 60000 and t_initial ${trainer.max_steps}; warmup 0.01 * max_steps.
    for (const char* name : {"gpt3s-rotary-30B", "gpt3m-rotary-30B", "gpt3l-rotary-30B", "gpt3xl-rotary-60B"}) {
        const std::string rotary = std::string(name).substr(0, std::string(name).size() - 4);
        Json expected = Json::parse(
            parse({"-e", rotary, "--steps", "60000", "--decay-end-step", "60000", "--out-dir", "run"}).to_json());
        expected["experiment"] = name;
        const Json c = Json::parse(parse({"-e", name, "--out-dir", "run", "--print-config"}).to_json());
        EXPECT_EQ(c, expected) << name;
        EXPECT_EQ(c["steps"], 60000) << name;
        EXPECT_EQ(c["decay_end_step"], 60000) << name;
        EXPECT_EQ(c["warmup_steps"], 600) << name;
        EXPECT_EQ(c["schedule"], "cosine") << name;
        EXPECT_EQ(c["learned_pos_emb"], false) << name;
    }
    // 60,000 steps of 524,288 tokens is the seed's "30B", of 1,048,576 its "60B".
    EXPECT_EQ(parse({"-e", "GPT3S-30b-ROTARY"}).experiment, "gpt3s-rotary-30B");
    EXPECT_EQ(parse({"-e", "gpt3xl-60B"}).steps, 60000);
    EXPECT_NE(error_of({"-e", "gpt3s-rotary-60B"}).find("-60B (60,000 steps) is a variant of gpt3xl"),
              std::string::npos);
    EXPECT_NE(error_of({"-e", "gpt2s-30B"}).find("the seed has no gpt2s -30B run"), std::string::npos);
    EXPECT_NE(error_of({"-e", "gpt3s-30B-60B"}).find("unknown experiment"), std::string::npos);
}

TEST(ConfigPresetTest, Gpt3TwoPointSevenBWithHeadsOf128) {
    // pile/gpt3-2.7B-flash-hdim128(-rotary(-8k)): gpt3xl-flash's recipe with n_embd 2560,
    // n_head 20 ("Headdim 128 is faster than headdim 80"), n_layer 32, small init, lr 1.6e-4:
    // gpt3-2.7B in everything but the heads.
    for (const char* variant : {"", "-rotary", "-rotary-8k"}) {
        const std::string name = std::string("gpt3-2.7B-hdim128") + variant;
        Json expected = Json::parse(parse({"-e", std::string("gpt3-2.7B") + variant, "--n-head", "20",
                                           "--out-dir", "run"}).to_json());
        expected["experiment"] = name;
        const Json c = Json::parse(parse({"-e", name, "--out-dir", "run", "--print-config"}).to_json());
        EXPECT_EQ(c, expected) << name;
        EXPECT_EQ(c["d_head"], 128) << name;
        EXPECT_EQ(c["lr"], 1.6e-4) << name;
        EXPECT_EQ(c["init_scheme"], "small_init") << name;
    }
    EXPECT_EQ(parse({"-e", "gpt3-2.7B-hdim128-rotary"}).rotary_dim, 64);
    EXPECT_EQ(parse({"-e", "gpt3-2.7B-rotary-8k-hdim128"}).experiment, "gpt3-2.7B-hdim128-rotary-8k");
    EXPECT_NE(error_of({"-e", "gpt2s-hdim128"}).find("-hdim128 (heads of 128) is a variant of gpt3-2.7B only"),
              std::string::npos);
}

TEST(ConfigPresetTest, DepthPresets) {
    const std::vector<std::tuple<int, int, int>> expected = {
        {12, 768, 12}, {24, 1024, 16}, {36, 1280, 20}, {48, 1600, 25}, {6, 384, 6}, {30, 1152, 18}, {96, 3200, 50}};
    for (const auto& [layers, width, heads] : expected) {
        const TrainConfig c = parse({"-e", "d" + std::to_string(layers)});
        EXPECT_EQ(c.n_layer, layers);
        EXPECT_EQ(c.n_embd, width) << layers;
        EXPECT_EQ(c.n_head, heads) << layers;
        EXPECT_EQ(c.d_head, 64);
        EXPECT_EQ(c.dropout_resid, 0.0);
        EXPECT_EQ(c.precision, Precision::bf16);
        EXPECT_EQ(c.dataset, "tiny");
    }
    EXPECT_EQ(parse({}).experiment, "d12");  // the default experiment
    EXPECT_EQ(parse({"-e", "d12"}).num_params, 124475904);
    EXPECT_NE(error_of({"-e", "d0"}).find("dN takes N from 1 to"), std::string::npos);
}

TEST(ConfigPresetTest, CheckpointFileGivesTheModelShape) {
    const test_support::ScratchDir scratch("test_config");
    const std::string dir = scratch.path.string();
    TrainConfig source = parse({"-e", "d2", "--n-embd", "128", "--n-head", "2", "--max-seq-len", "64", "--seq-len",
                                "64", "--pad-vocab-to", "64", "--rotary-fraction", "0.25",
                                "--rotary-base", "500000", "--learned-pos-emb", "0", "--post-norm", "1"});
    const std::vector<float> params(static_cast<size_t>(source.num_params), 0.5f);
    const std::string file = model_file_path(dir, 300);
    write_model_file(file, source.model_shape(), 300, params.data());

    const TrainConfig loaded = parse({"-e", file});
    EXPECT_EQ(loaded.init_from, file);
    EXPECT_TRUE(loaded.model_shape() == source.model_shape());
    EXPECT_EQ(loaded.rotary_dim, 16);
    EXPECT_EQ(loaded.padded_vocab_size, 50304);
    EXPECT_EQ(loaded.seq_len, 64);
    EXPECT_EQ(loaded.sample_tokens, 64);  // the default 128 capped to the model's positions
    EXPECT_EQ(loaded.out_dir.rfind("runs/model_00000300-", 0), 0u) << loaded.out_dir;
    EXPECT_EQ(loaded.device_batch, kDeviceBatchAuto);
    EXPECT_TRUE(parse({"-e", file, "--eval-only", "1"}).eval_only);  // its weights are the checkpoint

    // Flags may change the training recipe, never the shape the weights have (--pad-vocab-to 128
    // pads 50257 to the same 50304 rows as the file's 64).
    EXPECT_EQ(parse({"-e", file, "--lr", "1e-4", "--steps", "5", "--pad-vocab-to", "128"}).lr, 1e-4);
    const std::vector<std::pair<std::vector<std::string>, std::string>> contradictions = {
        {{"--n-layer", "4"}, "has n_layer 2 but this run has 4 (--n-layer)"},
        {{"--n-head", "1", "--n-embd", "128"}, "has n_head 2 but this run has 1 (--n-head)"},
        {{"--post-norm", "0"}, "has post_norm on but this run has it off (--post-norm 0)"},
        {{"--rotary-fraction", "0.5"}, "has rotary_dim 16 but this run has 32"},
        {{"--max-seq-len", "128", "--seq-len", "128"}, "has max_seq_len 64 but this run has 128 (--max-seq-len)"},
        {{"--pad-vocab-to", "8"}, "has padded_vocab_size 50304 but this run has 50264"},
    };
    for (const auto& [flags, part] : contradictions) {
        std::vector<std::string> args = {"-e", file};
        args.insert(args.end(), flags.begin(), flags.end());
        const std::string message = error_of(args);
        EXPECT_NE(message.find("-e " + file + ": checkpoint " + file + " " + part), std::string::npos) << message;
        EXPECT_NE(message.find("a checkpoint's shape is fixed"), std::string::npos) << message;
    }

    // A header whose shape no writer produces (here 2^30 layers of width 2^20, whose size
    // overflows 64 bits), with a checksum that fits it, is rejected by its ranges, not described
    // with a wrapped-around size.
    const std::string huge = dir + "/model_00000002.bin";
    {
        std::vector<int32_t> header(256, 0);
        const int32_t fields[] = {kModelFileMagic, kModelFileVersion, 1 << 30, 1 << 20, 1 << 14, 1024, 50257, 50304,
                                  1, 0, 10000, 0, 2};
        std::copy(std::begin(fields), std::end(fields), header.begin());
        header[14] = static_cast<int32_t>(model_header_checksum(header.data()));
        std::ofstream(huge, std::ios::binary).write(reinterpret_cast<const char*>(header.data()), 1024);
    }
    const std::string corrupt = error_of({"-e", huge, "--print-config"});
    EXPECT_NE(corrupt.find("-e " + huge + ": " + huge + " has a corrupt model header: n_layer 1073741824 is out of "
                           "range [1, 1024]"),
              std::string::npos)
        << corrupt;
    EXPECT_EQ(corrupt.find(" -"), std::string::npos) << "no negative size: " << corrupt;

    const std::string truncated = dir + "/model_00000001.bin";
    fs::copy_file(file, truncated);
    fs::resize_file(truncated, 2000);
    const std::string message = error_of({"-e", truncated});
    EXPECT_NE(message.find("-e " + truncated + ": "), std::string::npos) << message;
    EXPECT_NE(message.find("truncated"), std::string::npos) << message;
}

}  // namespace
