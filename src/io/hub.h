// Model ids: a local directory, or a Hugging Face hub id resolved to its snapshot in the local cache.
#pragma once
#include <string>
#include <vector>

namespace multiref {

// The hub cache directories searched, in order: $HF_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub,
// ~/.cache/huggingface/hub (only those that are set).
std::vector<std::string> hub_cache_dirs();

// Returns a directory holding config.json. `id` is a path to a directory, or "org/name" found in a hub
// cache (snapshot named by refs/main, or the only snapshot). Throws an Error listing every place looked
// and how to fetch the model when nothing is found.
// `any_of` names the files of which the directory must hold at least one (config.json for models; tokenizer
// files for --tokenizer).
std::string resolve_model_dir(const std::string& id, const std::vector<std::string>& any_of = {"config.json"});
// A tokenizer directory: one holding tokenizer.json, vocab.json or tokenizer.model.
std::string resolve_tokenizer_dir(const std::string& id);
// Whether the local directory `dir` holds a tokenizer (tokenizer.json, vocab.json or tokenizer.model).
bool has_tokenizer(const std::string& dir);

}  // namespace multiref
