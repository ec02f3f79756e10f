// safetensors reader (memory-mapped, zero-copy where possible, strictly validated) and writer.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the data section; offsets are relative to the data section.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace multiref {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // as in the file: "F32", "BF16", "F16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range inside the data section
};

class SafetensorsFile {
 public:
  // Maps and validates the whole header; throws Error naming the file (and tensor) on any violation.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const SafetensorsEntry* find(const std::string& name) const;
  const nlohmann::json& metadata() const { return metadata_; }

  // A CPU tensor viewing the mapped bytes (copy-on-write mapping, so the file is never modified). It keeps
  // the mapping alive. Only F32, BF16 and F16 are supported; other dtypes throw an Error.
  torch::Tensor tensor(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  nlohmann::json metadata_;
  std::weak_ptr<SafetensorsFile> self_;
};

// All tensors of one .safetensors file.
std::map<std::string, torch::Tensor> load_safetensors(const std::string& path);

// All tensors of a checkpoint directory: model.safetensors, or the shards listed by
// model.safetensors.index.json. Errors name the directory and the missing file or tensor.
std::map<std::string, torch::Tensor> load_checkpoint_tensors(const std::string& dir);

// Writes tensors (any device; F32/BF16/F16) atomically to `path`, keys sorted, with an 8-byte-aligned
// header and __metadata__ {"format": "pt"} plus `extra_metadata`, loadable by Python safetensors.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& extra_metadata = {});

}  // namespace multiref
