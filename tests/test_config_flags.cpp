// Configuration, the flags: they override the presets, derived values follow them, evaluation-only
// runs are checked, and every bad input is a ConfigError that names the flag and the valid values.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "host/checkpoint.h"
#include "host/config.h"
#include "tests/config_test_support.h"
#include "tests/test_support.h"

using Json = nlohmann::json;
using namespace config_test;

namespace {

// ---------------------------------------------------------------------------------------------
// Flags

TEST(ConfigFlagTest, FlagsOverrideThePreset) {
    const TrainConfig c = parse({"-e", "gpt2s", "--device-batch", "16", "--precision", "bf16", "--lr=1e-3",
                                 "--post-norm", "true", "--min-lr-ratio", "auto", "--schedule", "cosine"});
    EXPECT_EQ(c.device_batch, 16);
    EXPECT_EQ(c.global_batch_tokens, 524288);  // stays fixed: accumulation adapts
    EXPECT_EQ(c.grad_accum, 32);
    EXPECT_EQ(c.precision, Precision::bf16);
    EXPECT_EQ(c.lr, 1e-3);
    EXPECT_TRUE(c.post_norm);
    EXPECT_EQ(c.min_lr_ratio, 0.1);  // auto with cosine
    // Order does not matter: the experiment applies first, flags after it.
    EXPECT_EQ(parse({"--device-batch", "16", "-e", "gpt2s"}).device_batch, 16);
    // Later flags win.
    EXPECT_EQ(parse({"--steps", "10", "--steps", "20"}).steps, 20);
    // The gradient all-reduce overlaps the backward pass unless turned off (scaling comparisons).
    EXPECT_TRUE(parse({"-e", "gpt2s"}).overlap_grad_reduce);
    EXPECT_FALSE(parse({"-e", "gpt2s", "--overlap-grad-reduce", "0"}).overlap_grad_reduce);
    // cuBLASLt runs the GEMMs unless our simple kernel is asked for (compute-sanitizer runs).
    EXPECT_EQ(parse({"-e", "gpt2s"}).matmul_engine, MatmulEngine::cublaslt);
    EXPECT_EQ(parse({"-e", "gpt2s", "--matmul-engine", "SIMPLE"}).matmul_engine, MatmulEngine::simple);
    // The attention kernels follow the GPU unless a family is named.
    EXPECT_EQ(parse({"-e", "gpt2s"}).attention_kernel, AttentionKernelChoice::automatic);
    EXPECT_EQ(parse({"-e", "gpt2s", "--attention-kernel", "tensor-cores"}).attention_kernel,
              AttentionKernelChoice::tensor_cores);
    EXPECT_EQ(parse({"-e", "gpt2s", "--attention-kernel", "Hopper"}).attention_kernel, AttentionKernelChoice::hopper);
    EXPECT_EQ(parse({"-e", "gpt2s", "--attention-kernel", "cuda-cores", "--attention-kernel", "auto"}).attention_kernel,
              AttentionKernelChoice::automatic);
    EXPECT_EQ(parse({"-e", "gpt2s"}).timeline_step, 0);
    EXPECT_EQ(parse({"-e", "gpt2s", "--timeline-step", "12"}).timeline_step, 12);
    // CUDA graphs are off unless asked for (train/step_graph.cuh).
    EXPECT_FALSE(parse({"-e", "gpt2s"}).cuda_graphs);
    EXPECT_TRUE(parse({"-e", "gpt2s", "--cuda-graphs", "1"}).cuda_graphs);
    EXPECT_FALSE(parse({"-e", "gpt2s", "--cuda-graphs", "1", "--cuda-graphs", "off"}).cuda_graphs);
}

// How GEMM shapes get their cuBLASLt algorithms (train/matmul_tuning.cuh): the heuristic's first by
// default (off), timed (auto), or a record's path; the keywords in any case, a path as given; an empty value is an error.
TEST(ConfigFlagTest, MatmulTuning) {
    EXPECT_EQ(parse({"-e", "gpt2s"}).matmul_tuning, "off");
    EXPECT_EQ(parse({"--matmul-tuning", "Auto"}).matmul_tuning, "auto");
    EXPECT_EQ(parse({"--matmul-tuning", "OFF"}).matmul_tuning, "off");
    EXPECT_EQ(parse({"--matmul-tuning", "runs/A/matmul_tuning.txt"}).matmul_tuning, "runs/A/matmul_tuning.txt");
    const Json json = Json::parse(parse_args({"--print-config", "--matmul-tuning", "off"}, kContext).config.to_json());
    EXPECT_EQ(json["matmul_tuning"], "off");
    EXPECT_NE(error_of({"--matmul-tuning", ""}).find("--matmul-tuning: an empty value is not auto, off or the path"),
              std::string::npos)
        << error_of({"--matmul-tuning", ""});
}

// Issue 17, items 8 and 11: the device batch is auto unless given; validation covers the whole
// split; the test split is evaluated after training where the dataset has one; --eval-only
// evaluates a checkpoint. --print-config shows all of it.
TEST(ConfigFlagTest, EvaluationAndDeviceBatchDefaults) {
    const ParsedArgs parsed = parse_args({"--print-config"}, kContext);
    const TrainConfig& c = parsed.config;
    EXPECT_EQ(c.device_batch, kDeviceBatchAuto);
    EXPECT_EQ(c.val_tokens, 0);
    EXPECT_TRUE(c.test_at_end);
    EXPECT_FALSE(c.eval_only);
    EXPECT_EQ(c.test_pattern, "/datasets/tiny/*_test_*.bin");
    const Json json = Json::parse(c.to_json());
    EXPECT_EQ(json["device_batch"], "auto");
    EXPECT_EQ(json["grad_accum"], "auto");
    EXPECT_EQ(json["sequences_per_gpu"], 64);  // 65536 tokens of 1024
    EXPECT_EQ(json["tokens_per_step"], 65536);
    EXPECT_EQ(json["val_tokens"], 0);
    EXPECT_EQ(json["test_at_end"], true);
    EXPECT_EQ(json["eval_only"], false);
    EXPECT_EQ(json["test_glob"], "");
    EXPECT_EQ(json["test_pattern"], "/datasets/tiny/*_test_*.bin");
    const std::string table = c.to_table();
    EXPECT_NE(table.find("  device_batch "), std::string::npos) << table;
    EXPECT_NE(table.find("  test_pattern "), std::string::npos) << table;
    for (const std::string& name : all_experiment_names()) {
        const TrainConfig preset = parse({"-e", name});
        EXPECT_EQ(preset.device_batch, kDeviceBatchAuto) << name;
        EXPECT_EQ(preset.val_tokens, 0) << name;
    }

    // Given, B is what it says and accumulation follows; auto can be asked for by name too.
    EXPECT_EQ(parse({"--device-batch", "16"}).grad_accum, 4);
    EXPECT_EQ(parse({"--device-batch", "16", "--device-batch", "auto"}).device_batch, kDeviceBatchAuto);
    // The choice made on the GPU resolves like the flag.
    const TrainConfig chosen = parse({"-e", "gpt2s"}).with_device_batch(64);
    EXPECT_EQ(chosen.device_batch, 64);
    EXPECT_EQ(chosen.grad_accum, 8);
    EXPECT_EQ(chosen.tokens_per_step, 524288);
    EXPECT_EQ(chosen.to_json(), parse({"-e", "gpt2s", "--device-batch", "64"}).to_json());

    // The cap stays a flag; the test split can be named or turned off.
    EXPECT_EQ(parse({"--val-tokens", "1048576"}).val_tokens, 1048576);
    EXPECT_EQ(parse({"--test-glob", "/x/*_test_*.bin"}).test_pattern, "/x/*_test_*.bin");
    EXPECT_FALSE(parse({"--test-at-end", "0"}).test_at_end);
    EXPECT_EQ(parse({"--dataset", "", "--train-glob", "a", "--val-glob", "b"}).test_pattern, "");
    EXPECT_EQ(parse({"-e", "gpt2s"}).test_pattern, "/datasets/openwebtext/*_test_*.bin");  // none: val is its test

    // --eval-only takes its checkpoint from --resume (any of its forms) or -e FILE.
    const TrainConfig eval = parse({"--eval-only", "1", "--resume", "auto", "--out-dir", "runs/x"});
    EXPECT_TRUE(eval.eval_only);
    EXPECT_EQ(eval.resume, "auto");
    EXPECT_TRUE(parse({"--eval-only", "1", "--resume", "runs/x/model_00000100.bin"}).eval_only);
}

TEST(ConfigFlagTest, GradientAccumulationRoundsUp) {
    const TrainConfig c = parse({"--device-batch", "24", "--seq-len", "1000", "--global-batch-tokens", "100000"});
    EXPECT_EQ(c.grad_accum, 5);  // ceil(100000 / 24000)
    EXPECT_EQ(c.tokens_per_step, 120000);
    const TrainConfig ranks = parse({"-e", "gpt3xl", "--device-batch", "8", "--nproc", "8"});
    EXPECT_EQ(ranks.world_size, 8);
    EXPECT_EQ(ranks.grad_accum, 8);
    EXPECT_EQ(ranks.sequences_per_gpu, 64);
    TrainConfig again = ranks;
    again.resolve(16);
    EXPECT_EQ(again.grad_accum, 4);
    EXPECT_EQ(again.sequences_per_gpu, 32);
    again.resolve(16);  // idempotent
    EXPECT_EQ(again.to_json(), [&] { TrainConfig c = ranks; c.resolve(16); return c.to_json(); }());
}

TEST(ConfigFlagTest, ZeroOneByDefaultOnSeveralGpusWhereTheSeedShards) {
    // The seed trains gpt2l, gpt2xl, gpt3l, gpt3xl and gpt3-2.7B with DDPStrategyZero1.
    for (const char* name : {"gpt2l", "gpt2xl", "gpt3l", "gpt3xl", "gpt3-2.7B", "gpt3xl-rotary-60B",
                             "gpt3l-rotary-30B", "gpt3-2.7B-hdim128-rotary-8k", "gpt2l-8k"}) {
        EXPECT_EQ(Json::parse(parse({"-e", name, "--nproc", "8", "--print-config"}).to_json())["zero_stage"], 1)
            << name;
        EXPECT_EQ(parse({"-e", name}).zero_stage, 0) << name << " on one GPU";
    }
    for (const char* name : {"gpt2s", "gpt2m", "gpt3s", "gpt3m-rotary-30B", "d48"})
        EXPECT_EQ(parse({"-e", name, "--nproc", "8"}).zero_stage, 0) << name;
    // The world size known later (mpirun: --nproc 1 at parsing, 4 ranks at start-up) decides.
    TrainConfig mpi = parse({"-e", "gpt2xl"});
    mpi.resolve(4);
    EXPECT_EQ(mpi.zero_stage, 1);
    mpi.resolve(1);
    EXPECT_EQ(mpi.zero_stage, 0);
    // A given stage wins; auto asks for the default.
    EXPECT_EQ(parse({"-e", "gpt2l", "--nproc", "8", "--zero-stage", "0"}).zero_stage, 0);
    EXPECT_EQ(parse({"-e", "gpt2l", "--nproc", "8", "--zero-stage", "2"}).zero_stage, 2);
    EXPECT_EQ(parse({"-e", "gpt2s", "--nproc", "8", "--zero-stage", "1"}).zero_stage, 1);
    EXPECT_EQ(parse({"-e", "gpt2l", "--zero-stage", "2", "--zero-stage", "auto", "--nproc", "2"}).zero_stage, 1);
    EXPECT_NE(help_text().find("--zero-stage N|auto"), std::string::npos);
}

TEST(ConfigFlagTest, DecayEndDefaultsToTheLastStep) {
    EXPECT_EQ(parse({"-e", "gpt2s", "--steps", "20"}).decay_end_step, 20);
    EXPECT_EQ(parse({"-e", "gpt3s", "--steps", "20"}).decay_end_step, 600000);  // explicit in the preset
    const LrSchedule schedule = parse({"-e", "gpt3s"}).lr_schedule();
    EXPECT_EQ(schedule.kind, LrScheduleKind::cosine);
    EXPECT_EQ(schedule.lr_at(0), 1e-6);
    EXPECT_DOUBLE_EQ(schedule.lr_at(600000), 6e-5);
}

TEST(ConfigFlagTest, WarmupIsOnePercentOfTheStepsUnlessGiven) {
    // The seed: warmup_t / num_warmup_steps = 0.01 * trainer.max_steps in every experiment.
    const std::vector<std::pair<std::string, int64_t>> presets = {
        {"gpt2s", 4000}, {"gpt2xl", 4000}, {"gpt3s", 8000}, {"gpt3l", 8000}, {"gpt3xl", 4000}, {"gpt3-2.7B", 4000}};
    for (const auto& [name, warmup] : presets) EXPECT_EQ(parse({"-e", name}).warmup_steps, warmup) << name;
    // It follows --steps: gpt3xl trained for 60,000 steps (the seed's 60B-token run) warms up 600.
    const Json xl = Json::parse(parse({"-e", "gpt3xl", "--steps", "60000", "--print-config"}).to_json());
    EXPECT_EQ(xl["warmup_steps"], 600);
    EXPECT_EQ(xl["decay_end_step"], 300000) << "gpt3xl's cosine end (t_initial 300000) does not follow max_steps";
    const TrainConfig short_run = parse({"-e", "gpt2s", "--steps", "1000"});
    EXPECT_EQ(short_run.warmup_steps, 10);
    EXPECT_EQ(short_run.decay_end_step, 1000) << "OpenWebText's linear decay ends at the last step";
    EXPECT_EQ(parse({"-e", "gpt2s", "--steps", "150"}).warmup_steps, 2) << "1.5 rounds up";
    // A given --warmup-steps wins, in any position; `auto` asks for the preset's rule.
    EXPECT_EQ(parse({"-e", "gpt3xl", "--warmup-steps", "50", "--steps", "60000"}).warmup_steps, 50);
    EXPECT_EQ(parse({"-e", "d12", "--steps", "3000", "--warmup-steps", "auto"}).warmup_steps, 30);
    EXPECT_EQ(parse({"-e", "d12", "--steps", "3000"}).warmup_steps, 100) << "dN keeps its own recipe";
    const LrSchedule schedule = parse({"-e", "gpt3xl", "--steps", "60000"}).lr_schedule();
    EXPECT_DOUBLE_EQ(schedule.lr_at(300), 1e-6 + (2e-4 - 1e-6) * 0.5);
    EXPECT_NE(error_of({"--warmup-steps", "-2"}).find("valid is an integer in [0, 1099511627776] or auto"),
              std::string::npos);
}

TEST(ConfigFlagTest, DataLocation) {
    EXPECT_EQ(parse({}).train_pattern, "/datasets/tiny/*_train_*.bin");
    EXPECT_EQ(parse_args(std::vector<std::string>{}, ParseContext{"", 0}).config.data_dir, "data");
    const TrainConfig globs = parse({"--train-glob", "/x/a_*.bin", "--val-glob", "/x/b_*.bin", "--dataset", ""});
    EXPECT_EQ(globs.train_pattern, "/x/a_*.bin");
    EXPECT_EQ(globs.val_pattern, "/x/b_*.bin");
    EXPECT_NE(error_of({"--dataset", ""}).find("--dataset is empty"), std::string::npos);
}

TEST(ConfigFlagTest, OutDirAndResume) {
    const TrainConfig c = parse({"-e", "gpt2m"});
    EXPECT_EQ(c.out_dir.rfind("runs/gpt2m-", 0), 0u) << c.out_dir;
    EXPECT_EQ(c.out_dir.size(), std::string("runs/gpt2m-YYYYmmdd-HHMMSS").size()) << c.out_dir;
    EXPECT_EQ(parse({"--out-dir", "mine"}).out_dir, "mine");
    EXPECT_EQ(parse({"--out-dir", "mine", "--resume", "auto"}).resume, "auto");
    const std::string message = error_of({"--resume", "auto"});
    EXPECT_NE(message.find("--resume auto continues the newest checkpoint in --out-dir"), std::string::npos) << message;
}

TEST(ConfigFlagTest, HelpIsRequestedAnywhere) {
    EXPECT_TRUE(parse_args({"-e", "nonsense", "--bogus", "--help"}, kContext).show_help);
    EXPECT_TRUE(parse_args({"-h"}, kContext).show_help);
    EXPECT_FALSE(parse_args({}, kContext).show_help);
}

TEST(ConfigFlagTest, HelpListsEveryFlagAndTheLeadsNames) {
    const std::string help = help_text();
    const Json json = Json::parse(parse({}).to_json());
    const std::set<std::string> not_flags = {"experiment",     "init_from",     "world_size",        "padded_vocab_size",
                                             "d_head",         "rotary_dim",    "grad_accum",        "tokens_per_step",
                                             "base_init_std",  "residual_init_std", "num_params",    "flops_per_token",
                                             "train_pattern",  "val_pattern",   "test_pattern",      "sequences_per_gpu"};
    for (const auto& item : json.items()) {
        if (not_flags.count(item.key())) continue;
        std::string flag = "--" + item.key();
        std::replace(flag.begin(), flag.end(), '_', '-');
        EXPECT_NE(help.find("  " + flag + " "), std::string::npos) << flag;
    }
    for (const char* flag : {"--device-batch", "--seq-len", "--global-batch-tokens", "--steps", "--lr",
                             "--warmup-steps", "--val-every", "--val-tokens", "--sample-every", "--checkpoint-every",
                             "--dataset", "--data-dir", "--precision", "--zero-stage", "--out-dir", "--resume",
                             "--seed", "--bench-steps", "--nproc", "--rendezvous", "--nccl-timeout",
                             "--overlap-grad-reduce", "--print-config", "--eval-only", "--test-at-end", "--test-glob"})
        EXPECT_NE(help.find(flag), std::string::npos) << flag;
    for (const std::string& name : preset_names()) EXPECT_NE(help.find("  " + name + " "), std::string::npos) << name;
}

TEST(ConfigFlagTest, EveryPrintedValueParsesBackToTheSameConfig) {
    // The option table's getters and setters agree: feeding each printed value back as a flag
    // on top of a different experiment reproduces the configuration exactly.
    for (const std::string& name : {std::string("gpt3-2.7B-rotary-8k"), std::string("gpt2xl")}) {
        const TrainConfig original = parse({"-e", name});
        const Json json = Json::parse(original.to_json());
        std::vector<std::string> args = {"-e", "d3"};
        const std::set<std::string> not_flags = {"experiment", "init_from", "world_size", "padded_vocab_size",
                                                 "d_head", "rotary_dim", "grad_accum", "tokens_per_step",
                                                 "base_init_std", "residual_init_std", "num_params",
                                                 "flops_per_token", "train_pattern", "val_pattern",
                                                 "test_pattern", "sequences_per_gpu"};
        for (const auto& item : json.items()) {
            if (not_flags.count(item.key())) continue;
            std::string flag = "--" + item.key();
            std::replace(flag.begin(), flag.end(), '_', '-');
            if (item.value().is_array()) {  // a repeatable flag: one occurrence per value
                for (const Json& value : item.value()) args.insert(args.end(), {flag, value.get<std::string>()});
                continue;
            }
            args.push_back(flag);
            args.push_back(item.value().is_string() ? item.value().get<std::string>() : item.value().dump());
        }
        Json rebuilt = Json::parse(parse(args).to_json());
        EXPECT_EQ(rebuilt["experiment"], "d3");
        rebuilt["experiment"] = name;
        EXPECT_EQ(rebuilt, json) << name;
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input

TEST(ConfigErrorTest, BadInputsAreClearErrors) {
    const std::vector<BadInput> cases = {
        {{"--lrr", "1"}, "unknown flag --lrr; did you mean --lr?"},
        // Found by fuzz/options_fuzzer: a name that is not UTF-8 ended --print-config in std::terminate.
        {{"-e", "d4", "--val-glob", "a22\xa0)s"}, "--val-glob is not UTF-8 text: the configuration is printed and saved"},
        {{"--out-dir", "runs/\xff"}, "--out-dir is not UTF-8 text"},
        {{"--frobnicate", "1"}, "unknown flag --frobnicate (--help lists every flag)"},
        {{"--data", "tiny"}, "unknown flag --data; did you mean --data-dir or --dataset?"},
        {{"--batch-size", "8"}, "did you mean --vocab-size, --device-batch or --global-batch-tokens?"},
        {{"--n_layer", "8"}, "did you mean --n-layer?"},
        {{"--"}, "unknown flag -- (--help lists every flag)"},
        {{"--=3"}, "unknown flag -- (--help lists every flag)"},
        {{"--lr"}, "--lr needs a value (a number in (0.0, 10.0])"},
        {{"--lr", "--steps", "5"}, "--lr needs a value"},
        {{"--n-layer", "abc"}, "--n-layer: 'abc' is not an integer (valid: an integer in [1, 1024])"},
        {{"--n-layer", "0"}, "--n-layer 0 is out of range: valid is an integer in [1, 1024]"},
        {{"--n-layer", "12.5"}, "is not an integer"},
        {{"--steps", "99999999999999999999999"}, "is not an integer"},
        {{"--dropout-attn", "1"}, "--dropout-attn 1 is out of range: valid is a number in [0.0, 1.0)"},
        {{"--lr", "nan"}, "--lr: 'nan' is not a number"},
        {{"--lr", "0"}, "--lr 0 is out of range"},
        {{"--precision", "fp8"}, "--precision: 'fp8' is not one of bf16|fp16"},
        {{"--matmul-engine", "cublas"}, "--matmul-engine: 'cublas' is not one of cublaslt|simple"},
        {{"--attention-kernel", "flash"},
         "--attention-kernel: 'flash' is not one of auto|hopper|tensor-cores|cuda-cores"},
        {{"--post-norm", "maybe"}, "--post-norm: 'maybe' is not a boolean"},
        {{"--zero-stage", "3"}, "--zero-stage 3 is out of range: valid is an integer in [0, 2]"},
        {{"--n-embd", "776"}, "--n-embd 776 is not divisible by --n-head 12"},
        // Shapes the kernels do not run (issue 18): heads of 64, 80, 96 or 128 only; widths in
        // 16-byte vectors, up to the fused LayerNorm's 8192; a padded vocabulary of 16-byte rows.
        {{"--n-embd", "770", "--n-head", "10"}, "--n-embd 770 is not a multiple of 8"},
        {{"--n-embd", "616", "--n-head", "8"},
         "--n-embd 616 / --n-head 8 gives heads of 77; the attention kernels support 64, 80, 96, 128. Choose "
         "--n-embd as a multiple of one of them"},
        {{"--n-embd", "1024", "--n-head", "4"},
         "gives heads of 256; the attention kernels support 64, 80, 96, 128. For this width use --n-head 16 (heads of "
         "64), 8 (heads of 128)"},
        {{"-e", "gpt3-2.7B", "--n-head", "10"}, "For this width use --n-head 40 (heads of 64), 32 (heads of 80), 20"},
        {{"--n-embd", "16384", "--n-head", "128"}, "--n-embd 16384 is wider than the fused LayerNorm's 8192"},
        {{"--pad-vocab-to", "1"}, "--vocab-size 50257 padded to a multiple of --pad-vocab-to 1 is 50257, not a multiple"},
        {{"--global-batch-tokens", "1099511627776", "--device-batch", "1", "--seq-len", "1", "--max-seq-len", "1"},
         "--global-batch-tokens 1099511627776 takes 1099511627776 micro-steps of 1 x 1 tokens on 1 GPU(s), more than "
         "2147483647"},
        {{"--seq-len", "2048"}, "--seq-len 2048 exceeds the model's --max-seq-len 1024"},
        {{"--rotary-fraction", "0.3"}, "--rotary-fraction 0.3 gives rotary_dim 19.2 of d_head 64"},
        {{"--rotary-fraction", "0.015625"}, "whole, even, positive"},
        {{"--post-norm", "1", "--fp32-residual", "1"}, "--fp32-residual needs pre-norm blocks"},
        {{"--sample-tokens", "5000"}, "--sample-tokens 5000 exceeds the model's --max-seq-len 1024"},
        {{"-e", "gpt5"}, "-e gpt5: unknown experiment. Expected a preset (gpt2s, gpt2m"},
        {{"-e", "gpt2s-rotary-rotary"}, "unknown experiment"},
        {{"-e", "runs/x/model_00000100.bin"}, "no such checkpoint file"},
        {{"-e"}, "-e needs a value"},
        {{"-e", "gpt2s", "-e", "gpt2m"}, "-e given twice"},
        {{"gpt2s"}, "unexpected argument 'gpt2s'"},
        {{"-x", "1"}, "unexpected argument '-x'"},
        {{"--eval-only", "1"}, "--eval-only evaluates a checkpoint: name it with --resume auto|DIR|FILE"},
        {{"--eval-only", "1", "--resume", "auto"}, "--resume auto continues the newest checkpoint in --out-dir"},
        {{"--eval-only", "1", "--out-dir", "r", "--resume", "auto", "--bench-steps", "5"},
         "--eval-only and --bench-steps exclude each other"},
        {{"--device-batch", "many"}, "--device-batch: 'many' is not an integer (valid: an integer in [1, 65536] or auto)"},
        {{"--test-at-end", "sometimes"}, "--test-at-end: 'sometimes' is not a boolean"},
        {{"--cuda-graphs", "2"}, "--cuda-graphs: '2' is not a boolean"},
    };
    for (const BadInput& c : cases) {
        const std::string message = error_of(c.args);
        EXPECT_NE(message.find(c.message), std::string::npos)
            << "args: " << ::testing::PrintToString(c.args) << "\n  got: " << message;
    }
}

TEST(ConfigErrorTest, ACheckpointNameThatIsNotUtf8IsRefused) {
    const test_support::ScratchDir scratch("test_config");
    const TrainConfig source = parse({"-e", "d1", "--n-embd", "64", "--n-head", "1", "--max-seq-len", "32", "--seq-len", "32"});
    const std::vector<float> params(static_cast<size_t>(source.num_params), 0.5f);
    const std::string file = (scratch.path / "model\xc3.bin").string();
    write_model_file(file, source.model_shape(), 10, params.data());
    const std::string message = error_of({"-e", file});
    EXPECT_NE(message.find("-e FILE is not UTF-8 text"), std::string::npos) << message;
}

TEST(ConfigErrorTest, ResolveValidatesFieldsSetInCode) {
    TrainConfig c = parse({});
    c.dropout_attn = 1.5;
    try {
        c.resolve(1);
        FAIL() << "expected a ConfigError";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()), "--dropout-attn 1.5 is out of range: valid is a number in [0.0, 1.0)");
    }
    c = parse({});
    EXPECT_THROW(c.resolve(0), ConfigError);
}

TEST(ConfigEvaluationTest, CheckpointOnlyRunsNeedACheckpointAndOneGpu) {
    const test_support::ScratchDir scratch("test_config");
    const std::string file = small_checkpoint(scratch);

    const TrainConfig logits = parse({"-e", file, "--logits-in", "t.bin", "--logits-out", "l.bin"});
    EXPECT_EQ(logits.logits_in, "t.bin");
    EXPECT_EQ(logits.logits_out, "l.bin");
    EXPECT_TRUE(parse({"-e", file, "--hellaswag-only", "1"}).hellaswag_only);
    EXPECT_NE(error_of({"-e", file, "--logits-out", "l.bin"}).find("--logits-out needs --logits-in"), std::string::npos);
    EXPECT_NE(error_of({"-e", file, "--logits-in", "t.bin"}).find("--logits-in needs --logits-out"), std::string::npos);
    EXPECT_NE(error_of({"-e", "d2", "--logits-in", "t.bin", "--logits-out", "l.bin"})
                  .find("--logits-out evaluates a trained model: give its checkpoint with -e"),
              std::string::npos);
    EXPECT_NE(error_of({"-e", "d2", "--hellaswag-only", "1"}).find("--hellaswag-only evaluates a trained model"),
              std::string::npos);
    EXPECT_NE(error_of({"-e", file, "--hellaswag-only", "1", "--nproc", "2"}).find("runs on one GPU"), std::string::npos);
    EXPECT_NE(error_of({"-e", file, "--hellaswag-only", "1", "--eval-only", "1"})
                  .find("--hellaswag-only and --eval-only are two runs"),
              std::string::npos);
    EXPECT_NE(error_of({"-e", file, "--hellaswag-only", "1", "--logits-in", "t.bin", "--logits-out", "l.bin"})
                  .find("two runs"),
              std::string::npos);
}

TEST(ConfigEvaluationTest, HellaSwagFileDefaultsToTheRecipesOutput) {
    EXPECT_EQ(parse({"-e", "d2"}).hellaswag_path, "/datasets/hellaswag/hellaswag_val.bin");
    EXPECT_EQ(parse({"-e", "d2", "--data-dir", "/x"}).hellaswag_path, "/x/hellaswag/hellaswag_val.bin");
    EXPECT_EQ(parse({"-e", "d2", "--hellaswag-file", "h.bin"}).hellaswag_path, "h.bin");
    const TrainConfig defaults = parse({"-e", "d2"});
    EXPECT_EQ(defaults.hellaswag_every, 0);
    EXPECT_EQ(defaults.norm_monitor_every, 0);
    EXPECT_TRUE(defaults.tensorboard);
}

}  // namespace
