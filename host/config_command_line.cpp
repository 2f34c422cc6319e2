// The trainer's command line: parse_args (-e EXPERIMENT, then --flag VALUE overrides left to
// right, --print-config, --help), the environment it reads ($DATA_DIR, the launcher's fixed run
// time) and help_text, which walks the option table so that --help lists exactly the flags the
// parser takes.

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <set>
#include <sstream>
#include <utility>

#include "host/config_internal.h"

namespace fs = std::filesystem;
using config_internal::check_checkpoint_shape;
using config_internal::display;
using config_internal::find_option;
using config_internal::join_path;
using config_internal::Option;
using config_internal::options;
using config_internal::unknown_flag;

namespace {

std::string timestamp(std::time_t now) {
    std::tm local{};
    localtime_r(&now, &local);
    char text[32];
    std::strftime(text, sizeof(text), "%Y%m%d-%H%M%S", &local);
    return text;
}

std::string experiment_label(const TrainConfig& config) {
    return config.init_from.empty() ? config.experiment : fs::path(config.init_from).stem().string();
}

}  // namespace

ParseContext parse_context_from_environment() {
    ParseContext context;
    if (const char* data_dir = std::getenv("DATA_DIR")) context.data_dir_env = data_dir;
    // One run, one directory: the --nproc launcher fixes the start time for all its ranks.
    const char* run_time = std::getenv("GPT_RUN_TIMESTAMP");
    char* end = nullptr;
    const long long fixed = run_time ? std::strtoll(run_time, &end, 10) : 0;
    context.now = run_time && *run_time && *end == '\0' && fixed > 0 ? static_cast<std::time_t>(fixed) : std::time(nullptr);
    return context;
}

ParsedArgs parse_args(int argc, char** argv) {
    std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    return parse_args(args, parse_context_from_environment());
}

ParsedArgs parse_args(const std::vector<std::string>& args, const ParseContext& context) {
    ParsedArgs parsed;
    for (const std::string& arg : args) {
        if (arg == "--help" || arg == "-h") {
            parsed.show_help = true;
            return parsed;
        }
    }

    std::string experiment = "d12";
    bool experiment_given = false;
    std::vector<std::pair<const Option*, std::string>> overrides;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg == "-e") {
            if (i + 1 >= args.size())
                throw ConfigError("-e needs a value: a preset (e.g. gpt2s), dN, or a model checkpoint file");
            if (experiment_given) throw ConfigError("-e given twice (" + experiment + ", " + args[i + 1] + ")");
            experiment = args[++i];
            experiment_given = true;
            continue;
        }
        if (arg == "--print-config") {
            parsed.print_config = true;
            continue;
        }
        if (arg.rfind("--", 0) != 0)
            throw ConfigError("unexpected argument '" + arg + "': options are -e NAME and --flag VALUE (see --help)");
        const size_t equals = arg.find('=');
        const std::string flag = arg.substr(0, equals);
        const Option* option = find_option(flag);
        if (!option) throw unknown_flag(flag);
        std::string value;
        if (equals != std::string::npos) {
            value = arg.substr(equals + 1);
        } else {
            if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0)
                throw ConfigError(flag + " needs a value (" +
                                  (option->valid.empty() ? option->value_name : option->valid) + ")");
            value = args[++i];
        }
        overrides.emplace_back(option, value);
    }

    parsed.config = experiment_config(experiment, context);
    TrainConfig& config = parsed.config;
    std::set<std::string> given;
    for (const auto& [option, value] : overrides) {
        option->set(config, value);
        given.insert(option->key);
    }
    // The default sample length must not be an error for a model with short positions; an
    // explicit --sample-tokens beyond --max-seq-len still is (resolve()).
    if (!given.count("sample_tokens")) config.sample_tokens = std::min(config.sample_tokens, config.max_seq_len);
    // Likewise the default generation length leaves the prompt at least one position.
    if (!given.count("max_new_tokens"))
        config.max_new_tokens = std::max(1, std::min(config.max_new_tokens, config.max_seq_len - 1));
    // The presets keep the residual stream in fp32, a pre-norm feature (the seed's blocks assert
    // it): --post-norm 1 on a preset drops it, while --post-norm 1 --fp32-residual 1 stays an
    // error (resolve()).
    if (config.post_norm && given.count("post_norm") && !given.count("fp32_residual")) config.fp32_residual = false;

    if (config.out_dir.empty()) {
        if (config.resume == "auto")
            throw ConfigError("--resume auto continues the newest checkpoint in --out-dir: give the run's directory, "
                              "e.g. --out-dir runs/" + experiment_label(config) + "-" + timestamp(context.now));
        config.out_dir = join_path("runs", experiment_label(config) + "-" + timestamp(context.now));
    }
    config.resolve(config.nproc);
    if (!config.init_from.empty()) check_checkpoint_shape(config);
    return parsed;
}

std::string help_text() {
    constexpr size_t kHelpColumn = 38;
    std::ostringstream out;
    out << "usage: train_gpt2cu [-e EXPERIMENT] [--flag VALUE | --flag=VALUE ...]\n"
           "       train_gpt2cu -e EXPERIMENT --print-config   print every resolved setting as JSON, then exit\n"
           "\n"
           "The experiment sets every field; flags then override fields one by one.\n"
           "\n"
        << config_internal::experiments_help();

    const TrainConfig defaults = experiment_config("d12", ParseContext{});
    std::string section;
    for (const Option& option : options()) {
        if (option.section != section) {
            section = option.section;
            out << "\n" << section << ":\n";
        }
        std::string usage = option.flag + " " + option.value_name;
        usage.resize(std::max<size_t>(usage.size(), kHelpColumn), ' ');
        const std::string default_value = option.default_note.empty() ? display(option.get(defaults))
                                                                       : option.default_note;
        out << "  " << usage << " " << option.help << "\n"
            << "  " << std::string(kHelpColumn, ' ') << " " << (option.valid.empty() ? "" : option.valid + "; ")
            << "default " << (default_value.empty() ? "none" : default_value) << "\n";
    }
    std::string print_config = "--print-config", help = "--help, -h";
    print_config.resize(kHelpColumn, ' ');
    help.resize(kHelpColumn, ' ');
    out << "\nother:\n"
        << "  " << print_config << " print the resolved configuration as JSON and exit\n"
        << "  " << help << " this text\n";
    return out.str();
}
