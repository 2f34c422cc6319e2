#include "data_prep/src/hellaswag_recipe.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "data_prep/src/source_fetcher.h"

namespace data_prep {
namespace {
const char* const kJsonlName = "hellaswag_val.jsonl";
const char* const kItemsName = "hellaswag_val.bin";
}  // namespace

std::vector<hellaswag::Item> parse_hellaswag_jsonl(const std::string& path, const Gpt2Tokenizer& tokenizer) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::vector<hellaswag::Item> items;
    std::string line;
    for (int number = 1; std::getline(in, line); number++) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        const std::string where = path + ":" + std::to_string(number);
        try {
            const nlohmann::json example = nlohmann::json::parse(line);
            const nlohmann::json& endings = example.at("endings");
            if (!endings.is_array() || endings.size() != hellaswag::kEndings)
                throw std::runtime_error("\"endings\" is not a list of 4 strings");
            hellaswag::Item item;
            item.index = example.value("ind", static_cast<int32_t>(items.size()));
            item.label = example.at("label").get<int32_t>();
            if (item.label < 0 || item.label >= hellaswag::kEndings)
                throw std::runtime_error("\"label\" " + std::to_string(item.label) + " is not 0..3");
            for (int token : tokenizer.encode(example.at("ctx").get<std::string>())) item.context.push_back(token);
            if (item.context.empty()) throw std::runtime_error("\"ctx\" is empty");
            for (int e = 0; e < hellaswag::kEndings; e++)
                for (int token : tokenizer.encode(" " + endings[e].get<std::string>())) item.endings[e].push_back(token);
            items.push_back(std::move(item));
        } catch (const std::exception& e) {
            throw std::runtime_error(where + ": not a HellaSwag item (" + e.what() + ")");
        }
    }
    if (items.empty()) throw std::runtime_error(path + " holds no HellaSwag items");
    return items;
}

PrepareSummary prepare_hellaswag(const PrepareOptions& options) {
    const std::string output_dir = options.data_dir + "/hellaswag";
    const std::string items_path = output_dir + "/" + kItemsName;
    PrepareSummary summary;
    summary.output_dir = output_dir;
    if (std::filesystem::exists(items_path) && !options.force) {
        const std::vector<hellaswag::Item> items = hellaswag::read_items(items_path);
        summary.already_complete = true;
        summary.splits.push_back({"val", static_cast<int64_t>(items.size()), 0, 0});
        std::printf("hellaswag is already complete in %s: %zu items (pass --force to rebuild it)\n", items_path.c_str(),
                    items.size());
        return summary;
    }
    std::error_code error;
    std::filesystem::create_directories(output_dir, error);
    if (error)
        throw std::runtime_error("cannot create the output directory " + output_dir + ": " + error.message() +
                                 "; pass a writable --data-dir (or set DATA_DIR)");
    SourceFetcher fetcher(options, options.source_dir.empty() ? output_dir + "/downloads" : options.source_dir);
    const std::string jsonl = fetcher.fetch(kJsonlName, options.url.empty() ? default_url("hellaswag") : options.url);
    const Gpt2Tokenizer tokenizer =
        Gpt2Tokenizer::load(options.vocab_dir.empty() ? Gpt2Tokenizer::default_vocab_dir() : options.vocab_dir);
    const std::vector<hellaswag::Item> items = parse_hellaswag_jsonl(jsonl, tokenizer);
    hellaswag::write_items(items_path, items, Gpt2Tokenizer::kVocabSize);
    int64_t tokens = 0;
    for (const hellaswag::Item& item : items) {
        tokens += static_cast<int64_t>(item.context.size());
        for (const auto& ending : item.endings) tokens += static_cast<int64_t>(ending.size());
    }
    summary.splits.push_back({"val", static_cast<int64_t>(items.size()), tokens, 0});
    std::printf("hellaswag written to %s: %zu items, %lld tokens, longest context + ending %d tokens\n",
                items_path.c_str(), items.size(), static_cast<long long>(tokens), hellaswag::longest_row(items));
    std::fflush(stdout);
    return summary;
}

}  // namespace data_prep
