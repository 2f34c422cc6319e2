// Workbench for kernels/matmul.cuh: cuBLASLt matmul + bias (+ GELU), forward and backward, each
// shape's epilogue path and algorithm chosen by timing (autotune) or the heuristic's first.
//
//   build/dev/cuda/matmul [--quick] [--no-torch]
//
// Validation (always): every layer of two small models (odd row counts, partial column tiles),
// bf16 and fp16, through four contexts: fused epilogues with the heuristic's first algorithm
// (the trainer's choice without tuning), unfused GEMM + kernel pairs, our own simple GEMM
// (MatmulEngine::simple, what make sanitize runs the model on), and autotuned; in the
// autotuned one every candidate algorithm of every path of every GEMM, each checked against the
// same CPU reference (dev/cuda/matmul_problem.cuh: what is checked, tolerances): a wrong
// algorithm fails here. Then the tuning record: replayed from its text it gives the same choices
// without timing anything; a record of another GPU is refused; a choice that cannot run here is
// timed again.
// Benchmark (without --quick): the layer shapes of GPT-2 small (M = B*T = 32768), GPT-2 large
// (M = 16384) and GPT-3 XL (M = 16384, T = 2048), forward and both backward GEMMs, in TFLOP/s: the
// plain GEMM (no epilogue) with the heuristic's first algorithm and autotuned; the trainer's path
// before tuning (the fused epilogue, the heuristic's first); the unfused pair; the autotuned
// choice; PyTorch eager and torch.compile (dev/cuda/matmul.py, same GPU, same run). Each shape is
// validated (autotuned path, then every candidate) on sampled rows and columns, and each GEMM's
// candidates are listed with their autotune medians.
#include <map>
#include <random>
#include <sstream>

#include "dev/cuda/matmul_problem.cuh"

namespace {

using namespace matmul_workbench;

// A context the validation runs every layer through.
struct ValidatedMode {
    const char* name;
    MatmulTuning tuning;
    MatmulEngine engine;
};

std::string path_label(const GemmKey& key, bool fused_path) {
    return key.bias || key.gelu ? (fused_path ? "fused" : "unfused") : "gemm";
}

// Forces each timed candidate of the layer's three GEMMs in turn (through a replayed record) and
// checks that GEMM's outputs against the layer's reference; one line per candidate, the chosen
// one marked. The context returns to its tuned choices afterwards.
template <typename T>
bool validate_candidates(MatmulContext& ctx, LayerBuffers<T>& b, const LayerShape& s, const LayerReference& ref) {
    const TuningRecord tuned = ctx.tuning_record();
    const std::pair<GemmKey, Checked> gemms[] = {{b.forward_key(), Checked::kForward},
                                                 {b.input_gradient_key(), Checked::kInputGradient},
                                                 {b.weight_gradient_key(), Checked::kWeightGradient}};
    bool ok = true;
    for (const auto& [key, checked] : gemms) {
        const auto chosen = tuned.choices.find(key);
        REQUIRE(chosen != tuned.choices.end(), "%s was not tuned", describe_gemm(key).c_str());
        const GemmChoice& choice = chosen->second;
        std::printf("  %s: %s #%d of %d, %.4f ms (heuristic's first, fused: %.4f ms, %.2fx)\n",
                    describe_gemm(key).c_str(), path_label(key, choice.fused).c_str(), choice.index,
                    choice.candidates, choice.ms, choice.heuristic_ms, choice.heuristic_ms / choice.ms);
        const std::vector<TimedCandidate> candidates = ctx.timed_candidates(key);
        for (const TimedCandidate& candidate : candidates) {
            TuningRecord forced = tuned;
            GemmChoice& force = forced.choices[key];
            force.fused = candidate.fused_path;
            force.algo = algo_bytes(candidate.algo);
            force.index = candidate.index;
            force.candidates = (int)std::count_if(candidates.begin(), candidates.end(), [&](const TimedCandidate& c) {
                return c.fused_path == candidate.fused_path;
            });
            REQUIRE(ctx.replay(forced).empty(), "a record of this context must replay");
            const LayerCheck check = check_layer(ctx, b, s, ref, checked, /*print=*/false);
            const bool is_choice = candidate.fused_path == choice.fused && candidate.index == choice.index;
            std::printf("    %-7s #%d %8.4f ms %5.2fx  %-62s err/tol %.2f %s%s\n",
                        path_label(key, candidate.fused_path).c_str(), candidate.index, candidate.ms,
                        choice.heuristic_ms / candidate.ms, describe_algo(candidate.algo).c_str(), check.worst,
                        check.ok ? "ok" : "FAIL", is_choice ? "  <- chosen" : "");
            ok &= check.ok;
        }
    }
    REQUIRE(ctx.replay(tuned).empty(), "a record of this context must replay");
    return ok;
}

template <typename T> void run_layers(MatmulContext& ctx, const std::vector<ModelShape>& models) {
    for (const ModelShape& model : models)
        for (const LayerShape& layer : model_layers(model.C, model.Vp)) {
            LayerBuffers<T> b(model.M, layer);
            forward(ctx, b);
            backward(ctx, b);
        }
    CUDA_CHECK(cudaDeviceSynchronize());
}

bool same_choices(const TuningRecord& a, const TuningRecord& b) {
    if (a.choices.size() != b.choices.size()) return false;
    for (const auto& [key, choice] : a.choices) {
        const auto other = b.choices.find(key);
        if (other == b.choices.end() || other->second.fused != choice.fused || other->second.algo != choice.algo)
            return false;
    }
    return true;
}

// The tuning record as the trainer uses it: through its text into a fresh context, which must then
// make the same choices without timing anything; refused when made on another GPU; a choice that
// cannot run here (the unfused path of a GEMM with nothing to fuse) is timed again.
template <typename T> bool validate_tuning_replay(const MatmulContext& tuned, const std::vector<ModelShape>& models) {
    const TuningRecord record = tuned.tuning_record();
    MatmulContext replayed(MatmulTuning::kAutotune);
    const std::string refused = replayed.replay(parse_tuning_record(format_tuning_record(record), "the record"));
    run_layers<T>(replayed, models);
    bool nothing_timed = true;
    for (const auto& [key, choice] : record.choices) nothing_timed &= replayed.timed_candidates(key).empty();
    const bool replay_ok = refused.empty() && nothing_timed && same_choices(replayed.tuning_record(), record);
    std::printf("%s tuning record replayed from its text: %s\n", precision_name<T>(),
                replay_ok ? "the same paths and algorithms, nothing timed  ok" : "FAIL");
    if (!replay_ok) std::printf("%s\ntuned:\n%sreplayed:\n%s", refused.c_str(), format_tuning_record(record).c_str(),
                                format_tuning_record(replayed.tuning_record()).c_str());

    TuningRecord other_gpu = record;
    other_gpu.device += " (another)";
    MatmulContext refusing(MatmulTuning::kAutotune);
    const std::string why = refusing.replay(other_gpu);
    std::printf("%s a record of another GPU is refused: %s  %s\n", precision_name<T>(), why.c_str(),
                why.empty() ? "FAIL" : "ok");

    const ModelShape& model = models.front();
    const LayerShape qkv = model_layers(model.C, model.Vp).front();
    LayerBuffers<T> b(model.M, qkv);
    TuningRecord unrunnable = record;
    unrunnable.choices.at(b.weight_gradient_key()).fused = false;  // a weight gradient has no unfused path
    MatmulContext retuning(MatmulTuning::kAutotune);
    std::printf("%s a recorded choice that cannot run here (expect a note):\n", precision_name<T>());
    const bool replayed_rest = retuning.replay(unrunnable).empty();
    backward(retuning, b);
    CUDA_CHECK(cudaDeviceSynchronize());
    const bool retimed = replayed_rest && !retuning.timed_candidates(b.weight_gradient_key()).empty() &&
                         retuning.tuning_record().choices.at(b.weight_gradient_key()).fused;
    std::printf("%s ... is timed again: %s\n", precision_name<T>(), retimed ? "ok" : "FAIL");
    return replay_ok && !why.empty() && retimed;
}

template <typename T> bool validate_small_models(std::mt19937_64& rng) {
    const std::vector<ModelShape> models = {{"small-a", 64, 200, 512}, {"small-b", 96, 333, 384}};
    bool ok = true;
    const ValidatedMode modes[] = {
        {"fused", MatmulTuning::kAlwaysFused, MatmulEngine::cublaslt},
        {"unfused", MatmulTuning::kAlwaysUnfused, MatmulEngine::cublaslt},
        {"autotuned", MatmulTuning::kAutotune, MatmulEngine::cublaslt},
        {"simple-engine", MatmulTuning::kAlwaysFused, MatmulEngine::simple},  // our own GEMM (make sanitize's)
    };
    for (const ValidatedMode& mode : modes) {
        MatmulContext ctx(mode.tuning, mode.engine);
        const bool autotuned = mode.tuning == MatmulTuning::kAutotune;
        for (const ModelShape& model : models)
            for (const LayerShape& layer : model_layers(model.C, model.Vp)) {
                std::printf("%s %s %s %s (M=%d N=%d K=%d)\n", precision_name<T>(), mode.name, model.name, layer.name,
                            model.M, layer.N, layer.K);
                LayerBuffers<T> buffers(model.M, layer);
                const LayerReference ref = prepare_layer(buffers, layer, rng);
                ok &= check_layer(ctx, buffers, layer, ref, Checked::kWholeLayer, /*print=*/true).ok;
                if (autotuned) ok &= validate_candidates(ctx, buffers, layer, ref);
            }
        if (autotuned) ok &= validate_tuning_replay<T>(ctx, models);
    }
    return ok;
}

// ---------------------------------------------------------------------------------------------
// Benchmark

double tflops(double M, double N, double K, double ms) { return 2.0 * M * N * K / (ms * 1e-3) / 1e12; }

struct Contexts {
    MatmulContext first{MatmulTuning::kAlwaysFused};  // the trainer before tuning
    MatmulContext unfused{MatmulTuning::kAlwaysUnfused};
    MatmulContext tuned{MatmulTuning::kAutotune};
};

std::string cell(double value, const char* format = "%11.1f") {  // 0 = not applicable
    char text[24];
    if (value > 0) std::snprintf(text, sizeof text, format, value);
    else std::snprintf(text, sizeof text, "%11s", "-");
    return text;
}

struct Row {
    const char* pass;
    double plain_first, plain_tuned, before, unfused, tuned;  // ms; unfused 0 without a fusion
};

// The five timings of each GEMM of one layer. "before" and "tuned" are the trainer's whole call
// (for bwd_input of fc_proj with fc's bias gradient, for bwd_weight of qkv with its bias column
// sum); "plain" the GEMM alone, without epilogue or column sums.
template <typename T> std::vector<Row> time_layer(Contexts& ctx, LayerBuffers<T>& b, const LayerShape& s) {
    const int M = b.M, N = b.N, K = b.K;
    auto time = [](auto&& launch) { return double(workbench::median_ms(launch)); };
    auto plain_forward = [&](MatmulContext& c) {
        return time(
            [&] { matmul_forward(c, b.out, (T*)nullptr, b.inp, b.weight, (const T*)nullptr, M, N, K, nullptr); });
    };
    auto plain_input_gradient = [&](MatmulContext& c) {
        return time([&] {
            matmul_backward(c, b.dinp, (float*)nullptr, (float*)nullptr, (float*)nullptr, b.dout, (const T*)nullptr,
                            b.weight, (const T*)nullptr, M, N, K, GradWrite::add, nullptr);
        });
    };
    auto weight_gradient = [&](MatmulContext& c, float* dbias) {
        return time([&] {
            matmul_backward(c, (T*)nullptr, (float*)nullptr, b.dweight, dbias, b.dout, b.inp, (const T*)nullptr,
                            (const T*)nullptr, M, N, K, GradWrite::add, nullptr);
        });
    };
    auto fwd = [&](MatmulContext& c) { return time([&] { forward(c, b); }); };
    auto input_gradient = [&](MatmulContext& c) {
        return time([&] {
            matmul_backward(c, b.dinp, b.dbias_of_dinp, (float*)nullptr, (float*)nullptr, b.dout, (const T*)nullptr,
                            b.weight, b.inp_pre_gelu, M, N, K, GradWrite::add, nullptr);
        });
    };
    const bool forward_fuses = s.bias || s.gelu_out;
    return {{"fwd", plain_forward(ctx.first), plain_forward(ctx.tuned), fwd(ctx.first),
             forward_fuses ? fwd(ctx.unfused) : 0.0, fwd(ctx.tuned)},
            {"bwd_input", plain_input_gradient(ctx.first), plain_input_gradient(ctx.tuned), input_gradient(ctx.first),
             s.gelu_in ? input_gradient(ctx.unfused) : 0.0, input_gradient(ctx.tuned)},
            {"bwd_weight", weight_gradient(ctx.first, nullptr), weight_gradient(ctx.tuned, nullptr),
             weight_gradient(ctx.first, b.dbias), 0.0, weight_gradient(ctx.tuned, b.dbias)}};
}

// Validates every layer of `model` at full size (tuned path and every candidate), then appends
// its table rows to `table`.
template <typename T>
bool benchmark_model(Contexts& ctx, const ModelShape& model, const std::map<std::string, double>& torch_ms,
                     std::mt19937_64& rng, std::vector<std::string>& table) {
    bool ok = true;
    const int M = model.M;
    for (const LayerShape& s : model_layers(model.C, model.Vp)) {
        LayerBuffers<T> b(M, s);
        std::printf("validate %s %s %s (M=%d N=%d K=%d), autotuned path, then every candidate, sampled rows:\n",
                    precision_name<T>(), model.name, s.name, M, s.N, s.K);
        const LayerReference ref = prepare_layer(b, s, rng);
        ok &= check_layer(ctx.tuned, b, s, ref, Checked::kWholeLayer, /*print=*/true).ok;
        ok &= validate_candidates(ctx.tuned, b, s, ref);
        for (const Row& row : time_layer(ctx, b, s)) {
            const std::string key = std::string(model.name) + "." + s.name + "." + row.pass + "." + precision_name<T>();
            auto torch = [&](const char* mode) {
                const auto found = torch_ms.find(key + "." + mode);
                return found == torch_ms.end() ? 0.0 : tflops(M, s.N, s.K, found->second);
            };
            auto rate = [&](double ms) { return ms > 0 ? tflops(M, s.N, s.K, ms) : 0.0; };
            char line[320];
            std::snprintf(line, sizeof line, "| %-6s %-5s %-9s %-10s %6d %6d %5d |%s |%s |%s |%s |%s |%s |%s |%s |",
                          model.name, precision_name<T>(), s.name, row.pass, M, s.N, s.K,
                          cell(rate(row.plain_first)).c_str(), cell(rate(row.plain_tuned)).c_str(),
                          cell(rate(row.before)).c_str(), cell(rate(row.unfused)).c_str(),
                          cell(rate(row.tuned)).c_str(), cell(row.before / row.tuned, "%10.2fx").c_str(),
                          cell(torch("eager")).c_str(), cell(torch("compiled")).c_str());
            table.push_back(line);
        }
    }
    return ok;
}

}  // namespace

int main(int argc, char** argv) {
    const workbench::Options options = workbench::parse_options(argc, argv, /*accepts_no_torch=*/true);
    const workbench::DeviceInfo device = workbench::device_info();
    std::printf("matmul workbench on %s (%d SMs), cuBLASLt %zu\n", device.name.c_str(), device.sm_count,
                cublasLtGetVersion());
    std::mt19937_64 rng(std::random_device{}());

    bool ok = validate_small_models<__nv_bfloat16>(rng);
    ok &= validate_small_models<__half>(rng);

    if (!options.quick) {
        const ModelShape models[] = {
            {"gpt2s", 768, 32768, 50304}, {"gpt2l", 1280, 16384, 50304}, {"gpt3xl", 2048, 16384, 50304}};
        std::printf("\nTFLOP/s on %s (2*M*N*K per call). plain 1st / plain tuned = the GEMM alone (no epilogue)\n"
                    "with cuBLASLt's first heuristic algorithm / autotuned over its %d first per path; before = the\n"
                    "trainer's path before autotuning (fused epilogue, the heuristic's first); unfused = GEMM + our\n"
                    "bias/GELU kernels (heuristic's first); tuned = the autotuned path and algorithm, what the trainer\n"
                    "runs now; gain = tuned over before. bwd_input of fc_proj includes fc's bias gradient, bwd_weight\n"
                    "of qkv (before, tuned) the column sum for its bias. torch = F.linear / matmul (+gelu, +sum) in\n"
                    "bf16, eager and torch.compile, computing the same gradients.\n",
                    device.name.c_str(), MatmulContext::kMaxCandidates);
        std::vector<std::string> records;
        // One model at a time, each table printed when done: compiling the PyTorch side takes
        // about a minute per model.
        for (const ModelShape& model : models) {
            std::map<std::string, double> torch_ms;
            if (options.with_torch) {
                std::printf("\nPyTorch baseline for %s (bf16; eager and torch.compile)...\n", model.name);
                const std::string spec =
                    std::string(model.name) + ":" + std::to_string(model.M) + ":" + std::to_string(model.C);
                for (const auto& t : workbench::run_torch_baseline("dev/cuda/matmul.py --dtype bf16 --vp " +
                                                                   std::to_string(model.Vp) + " --models " + spec))
                    torch_ms[t.name] = t.ms;
            }
            std::vector<std::string> table;
            Contexts bf16_contexts, fp16_contexts;
            ok &= benchmark_model<__nv_bfloat16>(bf16_contexts, model, torch_ms, rng, table);
            ok &= benchmark_model<__half>(fp16_contexts, model, torch_ms, rng, table);
            for (const auto& [dtype, contexts] : {std::pair{"bf16", &bf16_contexts}, std::pair{"fp16", &fp16_contexts}})
                records.push_back(std::string(model.name) + " " + dtype + ":\n" +
                                  format_tuning_record(contexts->tuned.tuning_record()));
            std::printf("| model  dtype layer     pass            M      N     K |   plain 1st | plain tuned |"
                        "      before |     unfused |       tuned |        gain |       torch |     compile |\n");
            for (const std::string& line : table) std::printf("%s\n", line.c_str());
        }
        std::printf("\nTuning records (host/matmul_tuning_record.h):\n");
        for (const std::string& record : records) std::printf("%s", record.c_str());
    }
    std::printf("matmul: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
