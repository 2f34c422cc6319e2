// The host side of `./train_gpt2cu --generate` (train/generate_run.cuh runs the GPU side): where
// the prompts come from, how token-id prompts are read, the check that each prompt leaves room
// for the new tokens, and the JSON line each completion becomes (--generate-out). Pure C++.
#pragma once

#include <string>
#include <vector>

// The prompts of a run, in order: each --generate value, then each line of --prompt-file
// (empty lines skipped, a Windows "\r" dropped). Throws std::runtime_error naming the file if it
// cannot be read.
std::vector<std::string> collect_prompts(const std::vector<std::string>& given, const std::string& prompt_file);

// A prompt given as token ids (--prompt-format tokens): whitespace-separated decimal ids, as
// `./data_prep/tokenize encode` prints them, each in [0, vocab_size). Throws
// std::runtime_error naming `where` (e.g. "prompt 3") and the offending text.
std::vector<int> parse_prompt_tokens(const std::string& text, int vocab_size, const std::string& where);

// Throws std::runtime_error for the first prompt (1-based in the message) whose tokens plus
// max_new_tokens exceed the model's max_seq_len positions, saying what to shorten.
void check_prompt_lengths(const std::vector<std::vector<int>>& prompts, int max_new_tokens, int max_seq_len);

// One --generate-out line (JSON, no newline): {"prompt": index, "prompt_tokens": [...],
// "tokens": [...], "finish": "end_of_text" | "length", "text": ...}; "text" (the new tokens
// decoded, <|endoftext|> left out) only where `text` is given. Invalid UTF-8 in it (a token may
// split a character) becomes U+FFFD.
std::string completion_json(int index, const std::vector<int>& prompt_tokens, const std::vector<int>& tokens,
                            bool stopped_at_end_of_text, const std::string* text);
