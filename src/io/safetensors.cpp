#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "util/common.h"
#include "util/json_text.h"

namespace multiref {

namespace {

// Element sizes of every dtype the format defines, so any valid file validates; only some convert.
int dtype_size(const std::string& d) {
  static const std::map<std::string, int> sizes = {{"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
                                                   {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U8", 1},      {"U16", 2},
                                                   {"U32", 4}, {"U64", 8}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

torch::ScalarType to_torch(const std::string& d, const std::string& file, const std::string& name) {
  if (d == "F32") return torch::kFloat32;
  if (d == "BF16") return torch::kBFloat16;
  if (d == "F16") return torch::kFloat16;
  if (d == "F64") return torch::kFloat64;
  fail(file, ": tensor '", name, "' has dtype ", d,
       "; multiref reads F32, BF16, F16 and F64 weights only (convert the checkpoint, e.g. with "
       "torch_dtype=bfloat16, and save it again)");
}

const char* from_torch(torch::ScalarType t, const std::string& name) {
  switch (t) {
    case torch::kFloat32:
      return "F32";
    case torch::kBFloat16:
      return "BF16";
    case torch::kFloat16:
      return "F16";
    case torch::kFloat64:
      return "F64";
    default:
      fail("cannot save tensor '", name, "' of dtype ", c10::toString(t), ": only F32, BF16, F16, F64");
  }
}

}  // namespace

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, ": cannot open safetensors file (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, ": cannot stat");
  }
  size_t size = (size_t)st.st_size;
  if (size < 8) {
    ::close(fd);
    fail(path, ": file is ", size, " bytes, too short for a safetensors header (truncated download?)");
  }
  // MAP_PRIVATE + PROT_WRITE: copy-on-write, so a tensor view written to by mistake never touches the file.
  void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail(path, ": mmap failed (", std::strerror(errno), ")");
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->self_ = f;
  f->path_ = path;
  f->map_ = m;
  f->map_size_ = size;
  const uint8_t* bytes = (const uint8_t*)m;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > size - 8)
    fail(path, ": header length ", n, " exceeds the file size ", size, " (truncated or not a safetensors file)");
  if (n > 100 * 1024 * 1024) fail(path, ": header length ", n, " is implausibly large (corrupt file)");
  std::string header((const char*)bytes + 8, n);
  nlohmann::json j = parse_json(header, path + " (header)");
  if (!j.is_object()) fail(path, ": header must be a JSON object");
  f->data_ = bytes + 8 + n;
  uint64_t data_size = size - 8 - n;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it.value().is_object()) fail(path, ": __metadata__ must be an object of strings");
      f->metadata_ = it.value();
      continue;
    }
    const auto& v = it.value();
    auto where = cat(path, ": tensor '", name, "'");
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail(where, ": entry needs dtype, shape and data_offsets");
    SafetensorsEntry e;
    e.name = name;
    if (!v["dtype"].is_string()) fail(where, ": dtype must be a string");
    e.dtype = v["dtype"].get<std::string>();
    int esize = dtype_size(e.dtype);
    if (esize == 0) fail(where, ": unknown dtype '", e.dtype, "'");
    if (!v["shape"].is_array()) fail(where, ": shape must be an array");
    uint64_t numel = 1;
    for (auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) fail(where, ": shape entries must be integers >= 0");
      e.shape.push_back(d.get<int64_t>());
      uint64_t dim = (uint64_t)e.shape.back();
      if (dim != 0 && numel > UINT64_MAX / dim) fail(where, ": shape overflows");
      numel *= dim;
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(where, ": data_offsets must be two non-negative integers");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.begin > e.end) fail(where, ": data_offsets begin ", e.begin, " > end ", e.end);
    if (e.end > data_size)
      fail(where, ": data_offsets end ", e.end, " lies outside the data section (", data_size,
           " bytes; file truncated?)");
    if (numel > UINT64_MAX / (uint64_t)esize || numel * (uint64_t)esize != e.end - e.begin)
      fail(where, ": shape x dtype size = ", numel * (uint64_t)esize, " bytes but data_offsets span ", e.end - e.begin,
           " bytes");
    f->entries_.push_back(std::move(e));
  }
  // Offsets must tile the data section exactly: no overlaps, no holes, nothing trailing.
  std::vector<const SafetensorsEntry*> sorted;
  for (auto& e : f->entries_) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](auto* a, auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  uint64_t pos = 0;
  for (auto* e : sorted) {
    if (e->begin < pos) fail(path, ": tensor '", e->name, "' overlaps the previous tensor's bytes");
    if (e->begin > pos) fail(path, ": gap of ", e->begin - pos, " bytes before tensor '", e->name, "'");
    pos = e->end;
  }
  if (pos != data_size) fail(path, ": data section has ", data_size - pos, " trailing bytes not owned by any tensor");
  for (size_t i = 0; i < f->entries_.size(); ++i) f->index_[f->entries_[i].name] = i;
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) fail(path_, ": no tensor named '", name, "'");
  auto dtype = to_torch(e->dtype, path_, name);
  auto opts = torch::TensorOptions().dtype(dtype).device(torch::kCPU);
  void* ptr = (void*)(data_ + e->begin);
  if (e->begin == e->end) return torch::empty(e->shape, opts);
  if ((uintptr_t)ptr % (uintptr_t)dtype_size(e->dtype) != 0) {
    // Misaligned element data (legal in the format): copy instead of viewing.
    auto t = torch::empty(e->shape, opts);
    std::memcpy(t.data_ptr(), ptr, e->end - e->begin);
    return t;
  }
  auto keep = self_.lock();
  return torch::from_blob(
      ptr, e->shape, [keep](void*) {}, opts);
}

std::map<std::string, torch::Tensor> load_safetensors(const std::string& path) {
  auto f = SafetensorsFile::open(path);
  std::map<std::string, torch::Tensor> out;
  for (auto& e : f->entries()) out[e.name] = f->tensor(e.name);
  return out;
}

std::map<std::string, torch::Tensor> load_checkpoint_tensors(const std::string& dir) {
  std::string single = join_path(dir, "model.safetensors");
  std::string index = join_path(dir, "model.safetensors.index.json");
  if (file_exists(single)) return load_safetensors(single);
  if (!file_exists(index)) {
    if (file_exists(join_path(dir, "pytorch_model.bin")))
      fail(dir,
           ": has only pytorch_model.bin; multiref reads safetensors. Convert it with "
           "`model.save_pretrained(dir, safe_serialization=True)`");
    fail(dir, ": no model.safetensors or model.safetensors.index.json (is this a Hugging Face model directory?)");
  }
  nlohmann::json j = parse_json(read_file(index), index);
  if (!j.contains("weight_map") || !j["weight_map"].is_object()) fail(index, ": missing the \"weight_map\" object");
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
  std::map<std::string, torch::Tensor> out;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) fail(index, ": weight_map[\"", it.key(), "\"] must be a file name");
    std::string shard = it.value().get<std::string>();
    if (shard.find('/') != std::string::npos) fail(index, ": shard name '", shard, "' must be a plain file name");
    auto& f = shards[shard];
    if (!f) {
      std::string p = join_path(dir, shard);
      if (!file_exists(p)) fail(index, ": lists shard ", shard, " which is missing from ", dir);
      f = SafetensorsFile::open(p);
    }
    if (!f->find(it.key()))
      fail(index, ": maps tensor '", it.key(), "' to ", shard, " but that shard does not contain it");
    out[it.key()] = f->tensor(it.key());
  }
  for (auto& [name, f] : shards)
    for (auto& e : f->entries())
      if (!out.count(e.name))
        fail(join_path(dir, name), ": tensor '", e.name, "' is not listed in model.safetensors.index.json");
  return out;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& extra_metadata) {
  std::map<std::string, torch::Tensor> sorted;
  for (auto& [name, t] : tensors) {
    if (name == "__metadata__") fail("cannot save a tensor named __metadata__");
    if (!sorted.emplace(name, t).second) fail("cannot save two tensors named '", name, "'");
  }
  nlohmann::json header = nlohmann::json::object();
  nlohmann::json meta = {{"format", "pt"}};
  for (auto& [k, v] : extra_metadata) meta[k] = v;
  header["__metadata__"] = meta;
  std::vector<torch::Tensor> blobs;
  uint64_t pos = 0;
  for (auto& [name, t] : sorted) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    uint64_t nbytes = (uint64_t)c.numel() * c.element_size();
    header[name] = {{"dtype", from_torch(c.scalar_type(), name)},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {pos, pos + nbytes}}};
    pos += nbytes;
    blobs.push_back(c);
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h += ' ';  // keeps the data section 8-byte aligned
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) fail(path, ": cannot create (", std::strerror(errno), ")");
  int err = 0;  // the first failure's errno: "No space left on device" says more than "write failed"
  auto check = [&](bool ok) {
    if (!ok && err == 0) err = errno ? errno : EIO;
    return ok;
  };
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = (uint8_t)(((uint64_t)h.size() >> (8 * i)) & 0xff);
  check(std::fwrite(len, 1, 8, fp) == 8);
  if (!err) check(std::fwrite(h.data(), 1, h.size(), fp) == h.size());
  for (auto& c : blobs) {
    size_t nbytes = (size_t)c.numel() * c.element_size();
    if (!err && nbytes > 0) check(std::fwrite(c.data_ptr(), 1, nbytes, fp) == nbytes);
  }
  if (!err) check(std::fflush(fp) == 0);
  if (!err) check(::fsync(::fileno(fp)) == 0);
  check(std::fclose(fp) == 0);
  if (!err && std::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    std::remove(tmp.c_str());
    fail(path, ": write failed (", std::strerror(err), "; ", pos + 8 + h.size(), " bytes to write)");
  }
}

}  // namespace multiref
