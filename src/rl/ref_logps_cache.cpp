#include "rl/ref_logps_cache.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "util/common.h"
#include "util/json_text.h"

namespace multiref {

uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

namespace {

uint64_t hash_string(const std::string& s, uint64_t h) {
  uint64_t n = s.size();
  h = fnv1a(&n, sizeof n, h);
  return fnv1a(s.data(), s.size(), h);
}

uint64_t file_fingerprint(const std::string& path, uint64_t h) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open");
  uint64_t size = std::filesystem::file_size(path);
  h = fnv1a(&size, sizeof size, h);
  constexpr uint64_t kBlock = 4096, kSamples = 64;
  std::vector<char> buf(kBlock);
  auto sample = [&](uint64_t off) {
    in.clear();
    in.seekg((std::streamoff)off);
    in.read(buf.data(), (std::streamsize)std::min<uint64_t>(kBlock, size - off));
    h = fnv1a(buf.data(), (size_t)in.gcount(), h);
  };
  // The header (names, shapes, offsets) in full, then samples across the data.
  uint64_t header = 0;
  in.read(reinterpret_cast<char*>(&header), 8);
  if (in.gcount() == 8 && header < size) {
    std::string hdr((size_t)std::min<uint64_t>(header, 100 << 20), '\0');
    in.read(hdr.data(), (std::streamsize)hdr.size());
    h = hash_string(hdr, h);
  }
  if (size > 0)
    for (uint64_t i = 0; i < kSamples; ++i) sample(size <= kBlock ? 0 : (size - kBlock) * i / (kSamples - 1));
  return h;
}

}  // namespace

uint64_t model_fingerprint(const std::string& dir) {
  uint64_t h = hash_string(read_file(join_path(dir, "config.json")), 1469598103934665603ULL);
  std::vector<std::string> files;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    auto name = e.path().filename().string();
    if (name.size() > 12 && name.substr(name.size() - 12) == ".safetensors") files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) fail(dir, ": no .safetensors weight files");
  for (auto& f : files) h = file_fingerprint(join_path(dir, f), hash_string(f, h));
  return h;
}

uint64_t pairs_fingerprint(const std::vector<PairTokens>& pairs) {
  uint64_t h = 1469598103934665603ULL;
  for (auto& p : pairs)
    for (auto* v : {&p.prompt, &p.chosen, &p.rejected}) {
      uint64_t n = v->size();
      h = fnv1a(&n, sizeof n, h);
      h = fnv1a(v->data(), v->size() * sizeof(int64_t), h);
    }
  return h;
}

std::string RefLogpsCache::path(uint64_t key) const {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)key);
  return join_path(join_path(dir_, "ref_logps"), std::string(hex) + ".json");
}

std::optional<PairLogps> RefLogpsCache::load(uint64_t key, size_t n) const {
  if (dir_.empty() || !file_exists(path(key))) return std::nullopt;
  try {
    auto j = parse_json(read_file(path(key)), path(key));
    PairLogps v{j.at("chosen").get<std::vector<double>>(), j.at("rejected").get<std::vector<double>>()};
    if (v.chosen.size() == n && v.rejected.size() == n) return v;
  } catch (const std::exception& e) {
    std::cerr << "warning: " << path(key) << ": unreadable cache entry (" << e.what() << "); recomputing\n";
  }
  return std::nullopt;
}

void RefLogpsCache::store(uint64_t key, const PairLogps& v, const std::string& description) const {
  if (dir_.empty()) return;
  make_dirs(join_path(dir_, "ref_logps"));
  nlohmann::json j = {{"description", description}, {"chosen", v.chosen}, {"rejected", v.rejected}};
  write_file_atomic(path(key), j.dump() + "\n");
}

}  // namespace multiref
