#include <fstream>

#include "io/safetensors.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

// Writes a raw safetensors file: little-endian u64 header length, header text, data bytes.
void write_raw(const std::string& path, const std::string& header, const std::string& data, int64_t fake_len = -1) {
  std::ofstream out(path, std::ios::binary);
  uint64_t n = fake_len >= 0 ? (uint64_t)fake_len : header.size();
  for (int i = 0; i < 8; ++i) out.put((char)((n >> (8 * i)) & 0xff));
  out << header << data;
}

std::string zeros(size_t n) {
  return std::string(n, '\0');
}

}  // namespace

TEST(Safetensors, RoundTripAllDtypes) {
  TempDir tmp;
  torch::manual_seed(0);
  std::vector<std::pair<std::string, torch::Tensor>> in = {
      {"b.f32", torch::randn({3, 5})},
      {"a.bf16", torch::randn({7}).to(torch::kBFloat16)},
      {"c.f16", torch::randn({2, 2, 3}).to(torch::kFloat16)},
      {"d.empty", torch::zeros({0, 4})},
      {"e.scalar", torch::tensor(3.5f).reshape({})},
      {"f.noncontig", torch::randn({4, 6}).t()},
  };
  save_safetensors(tmp / "m.safetensors", in, {{"note", "hi"}});
  auto f = SafetensorsFile::open(tmp / "m.safetensors");
  EXPECT_EQ(f->entries().size(), in.size());
  EXPECT_EQ(f->metadata()["format"], "pt");
  EXPECT_EQ(f->metadata()["note"], "hi");
  for (auto& [name, t] : in) {
    auto got = f->tensor(name);
    EXPECT_EQ(got.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(got, t.contiguous())) << name;
  }
  // Header length is a multiple of 8, so the data section is aligned.
  std::string raw = read_file(tmp / "m.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | (uint8_t)raw[i];
  EXPECT_EQ(n % 8, 0u);
  // Keys appear sorted in the data section (b.f32 after a.bf16).
  EXPECT_LT(f->find("a.bf16")->begin, f->find("b.f32")->begin);
}

TEST(Safetensors, ViewsAreCopyOnWrite) {
  TempDir tmp;
  save_safetensors(tmp / "m.safetensors", {{"w", torch::ones({4})}});
  std::string before = read_file(tmp / "m.safetensors");
  {
    auto t = load_safetensors(tmp / "m.safetensors")["w"];
    t.fill_(7.0f);  // must not reach the file
    EXPECT_EQ(t[0].item<float>(), 7.0f);
  }
  EXPECT_EQ(read_file(tmp / "m.safetensors"), before);
}

TEST(Safetensors, PythonReaderAcceptsOurFiles) {
  if (!have_debian_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not installed (scripts/setup.sh installs it)";
  TempDir tmp;
  torch::manual_seed(1);
  auto a = torch::randn({5, 3});
  auto b = torch::randn({11}).to(torch::kBFloat16);
  save_safetensors(tmp / "m.safetensors", {{"a", a}, {"b", b}});
  auto r =
      run_command("/usr/bin/python3 " + source_dir() + "/tests/python/check_safetensors.py " + (tmp / "m.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["tensors"]["a"]["dtype"], "F32");
  EXPECT_EQ(j["tensors"]["a"]["shape"], nlohmann::json({5, 3}));
  EXPECT_NEAR(j["tensors"]["a"]["sum"].get<double>(), a.to(torch::kFloat64).sum().item<double>(), 1e-9);
  EXPECT_EQ(j["tensors"]["b"]["dtype"], "BF16");
  EXPECT_NEAR(j["tensors"]["b"]["sum"].get<double>(), b.to(torch::kFloat64).sum().item<double>(), 1e-9);
}

TEST(Safetensors, CorruptFilesFailWithFileAndTensorNamed) {
  TempDir tmp;
  std::string p = tmp / "bad.safetensors";
  auto check = [&](const std::string& header, const std::string& data, std::initializer_list<std::string> frags,
                   int64_t fake_len = -1) {
    write_raw(p, header, data, fake_len);
    std::vector<std::string> all(frags);
    all.push_back(p);
    try {
      SafetensorsFile::open(p);
      ADD_FAILURE() << "accepted: " << header;
    } catch (const Error& e) {
      std::string msg = e.what();
      for (auto& f : all) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
    }
  };
  std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  {
    std::ofstream(p, std::ios::binary) << "abc";
    expect_error([&] { SafetensorsFile::open(p); }, {p, "too short"});
  }
  check("{" + ok_entry + "}", zeros(8), {"header length", "exceeds the file size"}, 1 << 20);
  check("{not json", zeros(8), {"not valid JSON"});
  check("[1,2]", "", {"JSON object"});
  check(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", zeros(8), {"'w'", "unknown dtype 'Q4'"});
  check(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", zeros(8), {"'w'", "12 bytes", "span 8"});
  check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", zeros(4), {"'w'", "outside the data section"});
  check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", zeros(8), {"'w'", "begin 8 > end 0"});
  check(
      R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
      zeros(12), {"overlaps"});
  check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", zeros(12), {"gap of 4 bytes", "'w'"});
  check("{" + ok_entry + "}", zeros(12), {"4 trailing bytes"});
  check(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", zeros(8), {"'w'", "shape"});
  check(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", zeros(8), {"'w'", "needs dtype, shape and data_offsets"});
  check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", zeros(8), {"'w'", "data_offsets"});
  // A dtype the format knows but multiref does not compute with: an error when the tensor is used.
  write_raw(p, R"({"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", zeros(8));
  auto f = SafetensorsFile::open(p);
  expect_error([&] { f->tensor("i"); }, {p, "'i'", "I64", "F32, BF16, F16 and F64"});
  expect_error([&] { f->tensor("nope"); }, {p, "no tensor named 'nope'"});
}

TEST(Safetensors, ShardedCheckpoint) {
  TempDir tmp;
  save_safetensors(tmp / "model-00001-of-00002.safetensors", {{"a", torch::ones({2})}});
  save_safetensors(tmp / "model-00002-of-00002.safetensors", {{"b", torch::full({3}, 2.0f)}});
  nlohmann::json idx = {
      {"metadata", {{"total_size", 20}}},
      {"weight_map", {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}}}};
  std::ofstream(tmp / "model.safetensors.index.json") << idx.dump();
  auto t = load_checkpoint_tensors(tmp.path);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t["b"].sum().item<float>(), 6.0f);

  idx["weight_map"]["c"] = "model-00002-of-00002.safetensors";
  std::ofstream(tmp / "model.safetensors.index.json") << idx.dump();
  expect_error([&] { load_checkpoint_tensors(tmp.path); }, {"index.json", "'c'", "does not contain it"});

  idx["weight_map"].erase("c");
  idx["weight_map"]["b"] = "model-00003-of-00002.safetensors";
  std::ofstream(tmp / "model.safetensors.index.json") << idx.dump();
  expect_error([&] { load_checkpoint_tensors(tmp.path); }, {"model-00003-of-00002.safetensors", "missing"});

  // A shard holding a tensor the index does not list is an inconsistent checkpoint.
  idx["weight_map"]["b"] = "model-00002-of-00002.safetensors";
  save_safetensors(tmp / "model-00002-of-00002.safetensors", {{"b", torch::ones({3})}, {"stray", torch::ones({1})}});
  std::ofstream(tmp / "model.safetensors.index.json") << idx.dump();
  expect_error([&] { load_checkpoint_tensors(tmp.path); },
               {"model-00002-of-00002.safetensors", "'stray'", "not listed"});
}

TEST(Safetensors, MissingCheckpointExplains) {
  TempDir tmp;
  expect_error([&] { load_checkpoint_tensors(tmp.path); }, {tmp.path, "no model.safetensors"});
  std::ofstream(tmp / "pytorch_model.bin") << "x";
  expect_error([&] { load_checkpoint_tensors(tmp.path); }, {"pytorch_model.bin", "safe_serialization=True"});
}

TEST(Safetensors, FailedWriteLeavesOldFile) {
  TempDir tmp;
  save_safetensors(tmp / "m.safetensors", {{"w", torch::ones({2})}});
  std::string before = read_file(tmp / "m.safetensors");
  // An int tensor cannot be saved: the error must leave the previous file untouched.
  expect_error([&] { save_safetensors(tmp / "m.safetensors", {{"w", torch::ones({2}, torch::kLong)}}); }, {"'w'"});
  EXPECT_EQ(read_file(tmp / "m.safetensors"), before);
}
