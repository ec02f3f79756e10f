// `multiref score --ref`: reference log-probs, token mixtures and exact KLs against direct formulas.
#include <fstream>

#include "io/hf_model.h"
#include "objectives/objectives.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

TEST(ScoreWithReferences, MixturesAndKLsAgainstDirectFormulas) {
  TempDir tmp;
  std::string bin = multiref_binary();
  for (auto [arch, seed, name] :
       {std::tuple{"qwen2", 1, "pol"}, std::tuple{"qwen2", 2, "ra"}, std::tuple{"llama", 3, "rb"}}) {
    auto r = run_command(bin + " init --arch " + arch + " --preset tiny --seed " + std::to_string(seed) +
                         " --output_dir " + (tmp / name));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::vector<std::vector<int64_t>> seqs = {{5, 17, 300, 42, 7, 99}, {8, 1, 2}};
  {
    std::ofstream in(tmp / "in.jsonl");
    in << nlohmann::json({{"input_ids", seqs[0]}, {"completion_start", 2}}).dump() << "\n"
       << nlohmann::json({{"input_ids", seqs[1]}}).dump() << "\n";
  }
  auto pol = load_model(tmp / "pol", torch::kFloat32, torch::kCPU);
  auto ra = load_model(tmp / "ra", torch::kFloat32, torch::kCPU);
  auto rb = load_model(tmp / "rb", torch::kFloat32, torch::kCPU);
  torch::NoGradGuard ng;
  for (std::string kl_type : {"rkl", "fkl"}) {
    auto r = run_command(bin + " score --model " + (tmp / "pol") + " --ref " + (tmp / "ra") + " --ref " + (tmp / "rb") +
                         " --ref_weights 0.25,0.75 --kl_type " + kl_type + " --input " + (tmp / "in.jsonl") +
                         " --output " + (tmp / "out.jsonl"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto out = read_json_lines(tmp / "out.jsonl");
    ASSERT_EQ(out.size(), 2u);
    for (size_t s = 0; s < seqs.size(); ++s) {
      auto ids = torch::tensor(seqs[s], torch::kLong).unsqueeze(0);
      auto ones = torch::ones_like(ids);
      // Direct formulas on full fp64 distributions (the naive oracle path of the model).
      auto lp = torch::log_softmax(pol.model->forward(ids, ones).to(torch::kFloat64)[0], -1);
      auto la = torch::log_softmax(ra.model->forward(ids, ones).to(torch::kFloat64)[0], -1);
      auto lb = torch::log_softmax(rb.model->forward(ids, ones).to(torch::kFloat64)[0], -1);
      size_t start = s == 0 ? 2 : 1;
      auto kl = out[s]["token_kl"].get<std::vector<double>>();
      auto mix = out[s]["mixture_token_logprobs"].get<std::vector<double>>();
      auto refs = out[s]["ref_token_logprobs"].get<std::vector<std::vector<double>>>();
      ASSERT_EQ(kl.size(), seqs[s].size() - start);
      ASSERT_EQ(refs.size(), 2u);
      for (size_t t = start; t < seqs[s].size(); ++t) {
        auto p = lp[(int64_t)t - 1], a = la[(int64_t)t - 1], b = lb[(int64_t)t - 1];
        int64_t y = seqs[s][t];
        double want_kl, want_mix;
        if (kl_type == "rkl") {
          want_kl = (p.exp() * (p - a)).sum().item<double>() * 0.25 + (p.exp() * (p - b)).sum().item<double>() * 0.75;
          auto geo = 0.25 * a + 0.75 * b;
          want_mix = (geo[y] - torch::logsumexp(geo, 0)).item<double>();
        } else {
          want_kl = (a.exp() * (a - p)).sum().item<double>() * 0.25 + (b.exp() * (b - p)).sum().item<double>() * 0.75;
          want_mix = std::log(0.25 * a[y].exp().item<double>() + 0.75 * b[y].exp().item<double>());
        }
        EXPECT_NEAR(kl[t - start], want_kl, 1e-5) << kl_type << " seq " << s << " t " << t;
        EXPECT_NEAR(mix[t - start], want_mix, 1e-5) << kl_type << " seq " << s << " t " << t;
        EXPECT_NEAR(refs[1][t - start], b[y].item<double>(), 1e-5);
      }
    }
  }
  // All weight on the policy's own checkpoint: KL 0 and the mixture is that model.
  auto r = run_command(bin + " score --model " + (tmp / "pol") + " --ref " + (tmp / "pol") + "," + (tmp / "ra") +
                       " --ref_weights 1,0 --input " + (tmp / "in.jsonl") + " --output " + (tmp / "self.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (auto& j : read_json_lines(tmp / "self.jsonl")) {
    auto lp = j["token_logprobs"].get<std::vector<double>>(),
         mix = j["mixture_token_logprobs"].get<std::vector<double>>();
    for (size_t t = 0; t < lp.size(); ++t) {
      EXPECT_NEAR(j["token_kl"][t].get<double>(), 0.0, 1e-5);
      EXPECT_NEAR(mix[t], lp[t], 1e-5);
    }
  }
  // Bad flags.
  r = run_command(bin + " score --model " + (tmp / "pol") + " --ref " + (tmp / "ra") +
                  " --ref_weights 0.5,0.5 --input " + (tmp / "in.jsonl") + " --output " + (tmp / "bad.jsonl"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--ref_weights"), std::string::npos) << r.output;
  r = run_command(bin + " score --model " + (tmp / "pol") + " --ref " + golden_dir("qwen2_tied") + " --input " +
                  (tmp / "in.jsonl") + " --output " + (tmp / "bad.jsonl"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("shared vocabulary"), std::string::npos) << r.output;
  EXPECT_FALSE(file_exists(tmp / "bad.jsonl"));
}

// --bf16_matmul reaches the kernels: each forced path says so in the log and scores a bf16 model like float32
// arithmetic on the same (bf16-valued) weights does, within bf16 rounding.
TEST(ScoreBf16Matmul, BothPathsForcedByTheFlagAgreeWithFloat32) {
  TempDir tmp;
  std::string bin = multiref_binary();
  run_ok(bin + " init --arch qwen2 --preset tiny --seed 4 --dtype bfloat16 --output_dir " + (tmp / "m"));
  std::vector<int64_t> ids;
  for (int i = 0; i < 48; ++i) ids.push_back((i * 37 + 11) % 500);  // 48 rows: past the few-rows kernel
  {
    std::ofstream in(tmp / "in.jsonl");
    in << nlohmann::json({{"input_ids", ids}}).dump() << "\n" << nlohmann::json({{"input_ids", ids}}).dump() << "\n";
  }
  auto score = [&](const std::string& flags, const std::string& out) {
    auto r = run_command(bin + " score --model " + (tmp / "m") + " --input " + (tmp / "in.jsonl") + " --output " +
                         (tmp / out) + " " + flags);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return std::make_pair(r.output, read_json_lines(tmp / out)[0]["token_logprobs"].get<std::vector<double>>());
  };
  auto [log32, want] = score("--dtype float32", "f32.jsonl");
  EXPECT_EQ(log32.find("bf16 matrix products"), std::string::npos) << "float32 models never ask";
  for (std::string path : {"native", "upcast"}) {
    auto [log, got] = score("--dtype bfloat16 --bf16_matmul " + path, path + ".jsonl");
    EXPECT_NE(log.find("bf16 matrix products run " + path + " (--bf16_matmul)"), std::string::npos) << log;
    ASSERT_EQ(got.size(), want.size());
    double worst = 0;
    for (size_t t = 0; t < got.size(); ++t) worst = std::max(worst, std::abs(got[t] - want[t]));
    EXPECT_LT(worst, 0.15) << path;  // bf16 activations: ~3 significant digits per layer
  }
}
