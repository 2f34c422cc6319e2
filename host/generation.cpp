// Prompts in, completions out (host/generation.h).

#include "host/generation.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

std::vector<std::string> collect_prompts(const std::vector<std::string>& given, const std::string& prompt_file) {
    std::vector<std::string> prompts = given;
    if (prompt_file.empty()) return prompts;
    std::ifstream in(prompt_file, std::ios::binary);
    if (!in)
        throw std::runtime_error("--prompt-file " + prompt_file + ": cannot open it (" + std::strerror(errno) + ")");
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) prompts.push_back(line);
    }
    if (in.bad()) throw std::runtime_error("--prompt-file " + prompt_file + ": read error");
    return prompts;
}

std::vector<int> parse_prompt_tokens(const std::string& text, int vocab_size, const std::string& where) {
    std::vector<int> ids;
    std::istringstream words(text);
    std::string word;
    while (words >> word) {
        char* end = nullptr;
        errno = 0;
        const long id = std::strtol(word.c_str(), &end, 10);
        const bool whole_number = !word.empty() && word[0] != '-' && word[0] != '+' && *end == '\0' && errno == 0;
        if (!whole_number || id < 0 || id >= vocab_size)
            throw std::runtime_error(where + ": \"" + word + "\" is not a token id in [0, " + std::to_string(vocab_size) +
                                     ") (--prompt-format tokens reads ids separated by spaces, as ./data_prep/tokenize "
                                     "encode prints them)");
        ids.push_back(static_cast<int>(id));
    }
    return ids;
}

void check_prompt_lengths(const std::vector<std::vector<int>>& prompts, int max_new_tokens, int max_seq_len) {
    for (size_t i = 0; i < prompts.size(); ++i) {
        const size_t needed = prompts[i].size() + static_cast<size_t>(max_new_tokens);
        if (needed > static_cast<size_t>(max_seq_len))
            throw std::runtime_error("prompt " + std::to_string(i + 1) + " has " + std::to_string(prompts[i].size()) +
                                     " tokens; with --max-new-tokens " + std::to_string(max_new_tokens) + " it needs " +
                                     std::to_string(needed) + " positions, more than the model's max_seq_len " +
                                     std::to_string(max_seq_len) + ": shorten the prompt to at most " +
                                     std::to_string(max_seq_len - max_new_tokens) +
                                     " tokens or lower --max-new-tokens");
    }
}

std::string completion_json(int index, const std::vector<int>& prompt_tokens, const std::vector<int>& tokens,
                            bool stopped_at_end_of_text, const std::string* text) {
    nlohmann::ordered_json line;
    line["prompt"] = index;
    line["prompt_tokens"] = prompt_tokens;
    line["tokens"] = tokens;
    line["finish"] = stopped_at_end_of_text ? "end_of_text" : "length";
    if (text) line["text"] = *text;
    return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}
