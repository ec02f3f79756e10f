// Exactness through the real trainer: `multiref grpo` on a one-prompt prompt_ids task (a tokenizer-less tiny policy
// of 4 ids, two tiny references that disagree, a reward program giving each of the 13 possible completions of at most
// 2 tokens a fixed reward) ends at the closed-form sequence-level optimum of the objective it was given, while the
// paper code's token-level estimator ends measurably farther. pi(y) of the trained policy and of the references come
// from `multiref score` over every completion; the optima are computed here, by hand:
//   RKL  pi*(y) ∝ prod_i pi_i(y)^alpha_i e^{r(y)/gamma};   FKL  pi*(y) = gamma pibar(y) / (lambda - r(y)).
#include <cmath>

#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

const std::vector<int64_t> kPrompt = {1, 0};

// The reward of a completion, the same formula as the program below.
double reward_of(const std::vector<int64_t>& ids) {
  int64_t h = 0;
  for (size_t i = 0; i < ids.size(); ++i) h += (ids[i] + 1) * (int64_t)std::pow(5, (double)i);
  return (double)(h % 7) / 6.0;
}
const char* kRewardProgram =
    "import json, sys\n"
    "for line in sys.stdin:\n"
    "    ids = json.loads(line)['completion_ids']\n"
    "    h = sum((t + 1) * 5 ** i for i, t in enumerate(ids))\n"
    "    print(json.dumps({'reward': (h % 7) / 6.0}), flush=True)\n";

struct World {
  TempDir tmp;
  int64_t eos = -1;
  std::vector<std::vector<int64_t>> ys;
  World() {
    for (auto [name, seed] : {std::pair<const char*, int>{"ra", 21}, {"rb", 22}})
      run_ok(mr("init --arch qwen2 --preset tiny --vocab_size 4 --initializer_range 0.1 --seed " +
                std::to_string(seed) + " --output_dir " + (tmp / name)));
    auto config = nlohmann::json::parse(read_file(tmp / "ra/config.json"));
    eos = config["eos_token_id"].get<int64_t>();
    tmp.write("p.jsonl", "{\"prompt_ids\": [1, 0]}\n");
    tmp.write("reward.py", kRewardProgram);
    // Every completion of at most 2 tokens: EOS-terminated ones, and 2 tokens without EOS.
    std::vector<std::vector<int64_t>> open = {{}};
    for (int len = 1; len <= 2; ++len) {
      std::vector<std::vector<int64_t>> next;
      for (auto& p : open) {
        auto done = p;
        done.push_back(eos);
        ys.push_back(done);
        for (int64_t v = 0; v < 4; ++v)
          if (v != eos) {
            auto q = p;
            q.push_back(v);
            next.push_back(q);
          }
      }
      open = next;
    }
    for (auto& q : open) ys.push_back(q);
    std::string rows;
    for (auto& y : ys) {
      auto ids = kPrompt;
      ids.insert(ids.end(), y.begin(), y.end());
      rows += nlohmann::json{{"input_ids", ids}, {"completion_start", 2}}.dump() + "\n";
    }
    tmp.write("all.jsonl", rows);
  }
  // pi(y) of `model` and of the two references over every completion.
  std::vector<std::vector<double>> distributions(const std::string& model) {
    run_ok(mr("score --model " + model + " --ref " + (tmp / "ra") + " --ref " + (tmp / "rb") + " --input " +
              (tmp / "all.jsonl") + " --output " + (tmp / "scores.jsonl") + " --dtype float64"));
    std::vector<std::vector<double>> p(3);
    for (auto& j : read_json_lines(tmp / "scores.jsonl")) {
      auto sum = [](const nlohmann::json& a) {
        double s = 0;
        for (auto& v : a) s += v.get<double>();
        return std::exp(s);
      };
      p[0].push_back(sum(j["token_logprobs"]));
      p[1].push_back(sum(j["ref_token_logprobs"][0]));
      p[2].push_back(sum(j["ref_token_logprobs"][1]));
    }
    return p;
  }
  CommandResult train(const std::string& out, const std::string& extra) {
    return run_command("timeout 600 " +
                       mr("grpo --dataset " + (tmp / "p.jsonl") + " --ref_a " + (tmp / "ra") + " --ref_b " +
                          (tmp / "rb") + " --model_out " + out + " --reward_program '/usr/bin/python3 " +
                          (tmp / "reward.py") +
                          "' --num_generations 64 --per_device_train_batch_size 64 --gradient_accumulation_steps 1"
                          " --max_completion_length 2 --loss_type dr_grpo --scale_rewards false --threads 1"
                          " --save_steps 0 --logging_steps 100 --seed 3 --fkl_samples 64 " +
                          extra));
  }
};

double tv(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::abs(a[i] - b[i]);
  return s / 2;
}

std::vector<double> rkl_optimum(const std::vector<std::vector<double>>& p, double alpha, double gamma,
                                const std::vector<double>& r) {
  std::vector<double> q;
  double z = 0;
  for (size_t y = 0; y < r.size(); ++y) {
    q.push_back(std::exp(alpha * std::log(p[1][y]) + (1 - alpha) * std::log(p[2][y]) + r[y] / gamma));
    z += q.back();
  }
  for (auto& v : q) v /= z;
  return q;
}

std::vector<double> fkl_optimum(const std::vector<std::vector<double>>& p, double beta, double gamma,
                                const std::vector<double>& r) {
  double rmax = *std::max_element(r.begin(), r.end());
  auto mass = [&](double lambda) {
    double s = 0;
    for (size_t y = 0; y < r.size(); ++y) s += gamma * (beta * p[1][y] + (1 - beta) * p[2][y]) / (lambda - r[y]);
    return s;
  };
  double lo = rmax + 1e-12, hi = rmax + gamma + 1;  // mass(lo) >= 1 >= mass(hi): decreasing in lambda
  for (int i = 0; i < 200; ++i) {
    double mid = (lo + hi) / 2;
    (mass(mid) > 1 ? lo : hi) = mid;
  }
  std::vector<double> q;
  for (size_t y = 0; y < r.size(); ++y) q.push_back(gamma * (beta * p[1][y] + (1 - beta) * p[2][y]) / (lo - r[y]));
  return q;
}

}  // namespace

TEST(GrpoConvergence, ExactEstimatorsEndAtTheClosedFormOptimum) {
  World w;
  ASSERT_EQ(w.ys.size(), 13u);
  std::vector<double> r;
  for (auto& y : w.ys) r.push_back(reward_of(y));
  auto start = w.distributions(w.tmp / "ra");
  double total = 0;
  for (double v : start[0]) total += v;
  ASSERT_NEAR(total, 1.0, 1e-9) << "the 13 completions are all there is";
  ASSERT_GT(tv(start[1], start[2]), 0.3) << "the references must disagree";
  std::cout << "references: TV(pi_a, pi_b) " << tv(start[1], start[2]) << "\n";
  double gamma = 0.5;
  for (std::string kl : {"rkl", "fkl"}) {
    auto opt = kl == "rkl" ? rkl_optimum(start, 0.5, gamma, r) : fkl_optimum(start, 0.5, gamma, r);
    std::string common =
        "--kl_type " + kl + " --alpha 0.5 --beta 0.5 --gamma 0.5 --learning_rate 0.005 --max_steps 800";
    auto e = w.train(w.tmp / (kl + "_exact"), common + " --kl_estimator exact");
    ASSERT_EQ(e.exit_code, 0) << e.output;
    double exact_tv = tv(w.distributions(w.tmp / (kl + "_exact"))[0], opt);
    auto m = w.train(w.tmp / (kl + "_mix"),
                     common + (kl == "rkl" ? " --kl_estimator mixture_k3" : " --kl_estimator fkl_mixture_k3"));
    ASSERT_EQ(m.exit_code, 0) << m.output;
    double mix_tv = tv(w.distributions(w.tmp / (kl + "_mix"))[0], opt);
    std::cout << kl << ": start TV " << tv(start[0], opt) << ", exact TV " << exact_tv << ", paper code's TV " << mix_tv
              << "\n";
    EXPECT_LT(exact_tv, 0.03) << kl;
    EXPECT_GT(mix_tv, exact_tv + 0.03) << kl << ": the paper code's estimator should end measurably farther";
  }
}
