// The sampler: validation, the fast warpers against the literal HF transcription, and sampling statistics on
// hand-built distributions (top-k, top-p, min-p, temperature, HF's order), reproducibility and the
// inverse-CDF draw.
#include <cmath>

#include "generation/sampler.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

SamplingParams params(double temperature, int64_t top_k = 0, double top_p = 1.0, double min_p = 0.0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

torch::Tensor uniforms(int64_t n, uint64_t seed, uint64_t step = 0) {
  auto u = torch::empty({n}, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) u[i] = stream_uniform(seed, (uint64_t)i, step);
  return u;
}

// Empirical token frequencies of `n` draws from one distribution given by probabilities `p`.
std::vector<double> frequencies(const std::vector<double>& p, const SamplingParams& sp, int64_t n = 40000) {
  auto logits = torch::tensor(p, torch::kFloat64).log().to(torch::kFloat32).unsqueeze(0).expand({n, (int64_t)p.size()});
  auto tok = sample_tokens(logits.contiguous(), sp, uniforms(n, 7)).tokens;
  std::vector<double> f(p.size(), 0.0);
  auto acc = tok.accessor<int64_t, 1>();
  for (int64_t i = 0; i < n; ++i) f[(size_t)acc[i]] += 1.0 / (double)n;
  return f;
}

// Frequencies within 5 standard errors of `want` (which sums to 1).
void expect_frequencies(const std::vector<double>& got, const std::vector<double>& want, const std::string& what,
                        int64_t n = 40000) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] == 0) {
      EXPECT_EQ(got[i], 0.0) << what << ": token " << i << " must never be drawn";
    } else {
      double se = std::sqrt(want[i] * (1 - want[i]) / (double)n);
      EXPECT_NEAR(got[i], want[i], 5 * se + 1e-9) << what << ": token " << i;
    }
  }
}

std::vector<double> normalized(std::vector<double> w) {
  double s = 0;
  for (double x : w) s += x;
  for (double& x : w) x /= s;
  return w;
}

const std::vector<double> kP = {0.4, 0.3, 0.15, 0.1, 0.05};

}  // namespace

// Issue 20: uniforms computed as tensors (on the device that decodes) are stream_uniform's, bit for bit, over
// seeds, streams and steps that cross the int64 sign bit.
TEST(Sampler, TensorUniformsEqualTheScalarStreams) {
  std::vector<int64_t> streams, steps;
  for (int64_t i = 0; i < 200; ++i) {
    streams.push_back(i % 3 == 0 ? i : (int64_t)(0x8000000000000000ULL + (uint64_t)i * 0x9e3779b97f4a7c15ULL));
    steps.push_back(i % 5 == 0 ? -1 - i : i * 7919);
  }
  for (uint64_t seed : {0ULL, 1ULL, 42ULL, 0xffffffffffffffffULL, 0x8000000000000001ULL}) {
    auto u = stream_uniforms(seed, torch::tensor(streams), torch::tensor(steps));
    ASSERT_EQ(u.scalar_type(), torch::kFloat64);
    for (size_t i = 0; i < streams.size(); ++i)
      ASSERT_EQ(u[(int64_t)i].item<double>(), stream_uniform(seed, (uint64_t)streams[i], (uint64_t)steps[i]))
          << "seed " << seed << " row " << i;
  }
}

TEST(Sampler, ValidationNamesTheFlag) {
  expect_error([] { params(-0.5).validate(); }, {"--temperature", ">= 0"});
  expect_error([] { params(NAN).validate(); }, {"--temperature"});
  expect_error([] { params(1.0, -1).validate(); }, {"--top_k", ">= 0"});
  expect_error([] { params(1.0, 0, 0.0).validate(); }, {"--top_p", "(0, 1]"});
  expect_error([] { params(1.0, 0, 1.5).validate(); }, {"--top_p", "(0, 1]"});
  expect_error([] { params(1.0, 0, -0.1).validate(); }, {"--top_p"});
  expect_error([] { params(1.0, 0, 1.0, -0.1).validate(); }, {"--min_p", "[0, 1]"});
  expect_error([] { params(1.0, 0, 1.0, 1.5).validate(); }, {"--min_p"});
  params(0.0).validate();
  params(0.7, 50, 0.9, 0.05).validate();
  params(1.0, 0, 1.0, 1.0).validate();
}

TEST(Sampler, TemperatureZeroIsArgmaxWithUntemperedLogprob) {
  torch::manual_seed(0);
  auto logits = torch::randn({16, 300}) * 3;
  auto s = sample_tokens(logits, params(0.0, 5, 0.5, 0.2), torch::Tensor());
  EXPECT_TRUE(s.tokens.equal(logits.argmax(-1)));
  auto want = torch::log_softmax(logits.to(torch::kFloat64), -1).gather(-1, s.tokens.unsqueeze(-1)).squeeze(-1);
  EXPECT_LT(max_abs_diff(s.logprobs, want), 1e-5);
}

TEST(Sampler, LogprobIsTheUntemperedUnfilteredModel) {
  torch::manual_seed(1);
  auto logits = torch::randn({64, 200}) * 2;
  auto s = sample_tokens(logits, params(0.3, 10, 0.8, 0.1), uniforms(64, 3));
  auto want = torch::log_softmax(logits.to(torch::kFloat64), -1).gather(-1, s.tokens.unsqueeze(-1)).squeeze(-1);
  EXPECT_LT(max_abs_diff(s.logprobs, want), 1e-5);
}

TEST(Sampler, FastWarpersEqualHfTranscription) {
  torch::manual_seed(2);
  // Peaked rows (the top-512 candidates hold the mass: the partial-selection path), flat rows (the full-sort
  // fallback), and a small vocabulary (no candidate step at all).
  std::vector<torch::Tensor> cases = {torch::randn({8, 4000}) * 6, torch::randn({8, 4000}) * 0.2,
                                      torch::randn({8, 50}) * 2};
  int checked = 0, differing = 0;
  for (auto& logits : cases)
    for (double t : {0.6, 1.0, 1.7})
      for (int64_t k : {0, 1, 7, 300})
        for (double p : {1.0, 0.95, 0.6, 0.05})
          for (double m : {0.0, 0.02, 0.3}) {
            auto sp = params(t, k, p, m);
            auto fast = warp_logits(logits, sp), ref = warp_logits_reference(logits, sp);
            std::string what = cat("V=", logits.size(1), " t=", t, " k=", k, " p=", p, " min_p=", m);
            // Without host reads (the static decode step) top-p sorts everything: the same scores, bit for bit.
            EXPECT_TRUE(warp_logits(logits, sp, /*may_sync=*/false).equal(fast)) << what << ": sync-free warpers";
            // HF sums the top-p mass upwards in fp32, the fast path downwards: a token whose mass-above lies
            // within rounding of top_p may fall on either side. At most that one token per row.
            auto diff = torch::isinf(fast).ne(torch::isinf(ref));
            EXPECT_LE(diff.sum(-1).max().item<int64_t>(), p < 1.0 ? 1 : 0) << what << ": different tokens removed";
            differing += diff.any().item<bool>();
            auto kept = torch::isfinite(ref) & torch::isfinite(fast);
            EXPECT_LT(max_abs_diff(fast.masked_select(kept), ref.masked_select(kept)), 1e-5) << what;
            ++checked;
          }
  EXPECT_EQ(checked, 3 * 3 * 4 * 4 * 3);
  EXPECT_LE(differing, 3) << "boundary disagreements must be rare";
}

TEST(SamplerStatistics, PlainSamplingFollowsTheDistribution) {
  expect_frequencies(frequencies(kP, params(1.0)), kP, "temperature 1");
}

TEST(SamplerStatistics, TopK) {
  expect_frequencies(frequencies(kP, params(1.0, 2)), normalized({0.4, 0.3, 0, 0, 0}), "top_k 2");
  expect_frequencies(frequencies(kP, params(1.0, 1)), {1, 0, 0, 0, 0}, "top_k 1");
}

TEST(SamplerStatistics, TopP) {
  // Kept while the mass ranked above a token is < top_p: 0 and 0.4 and 0.7 < 0.75, then 0.85 stops.
  expect_frequencies(frequencies(kP, params(1.0, 0, 0.75)), normalized({0.4, 0.3, 0.15, 0, 0}), "top_p 0.75");
  // Always at least the top token.
  expect_frequencies(frequencies(kP, params(1.0, 0, 0.01)), {1, 0, 0, 0, 0}, "top_p 0.01");
}

TEST(SamplerStatistics, MinP) {
  // Threshold 0.3 * 0.4 = 0.12: 0.15 stays, 0.1 and 0.05 go.
  expect_frequencies(frequencies(kP, params(1.0, 0, 1.0, 0.3)), normalized({0.4, 0.3, 0.15, 0, 0}), "min_p 0.3");
}

TEST(SamplerStatistics, Temperature) {
  std::vector<double> sq;
  for (double p : kP) sq.push_back(p * p);
  expect_frequencies(frequencies(kP, params(0.5)), normalized(sq), "temperature 0.5");
  auto greedy = frequencies(kP, params(0.0));
  expect_frequencies(greedy, {1, 0, 0, 0, 0}, "temperature 0");
}

TEST(SamplerStatistics, HfOrderTemperatureBeforeTopP) {
  // Temperature 2 flattens to p ~ sqrt(p) = [.300 .260 .184 .150 .106]; top-p 0.75 then keeps four tokens
  // (mass above the fourth: 0.744). Applying top-p before temperature would keep three.
  std::vector<double> w;
  for (double p : kP) w.push_back(std::sqrt(p));
  w = normalized(w);
  w[4] = 0;
  expect_frequencies(frequencies(kP, params(2.0, 0, 0.75)), normalized(w), "temperature 2 then top_p 0.75");
  // Top-k, top-p and min-p together: top_k 4 -> renormalized [.421 .316 .158 .105]; top_p 0.85 keeps three
  // (mass above the fourth: .895); min_p 0.45 of the renormalized top .471 (threshold .212) keeps two.
  expect_frequencies(frequencies(kP, params(1.0, 4, 0.85, 0.45)), normalized({0.4, 0.3, 0, 0, 0}), "k+p+min_p");
}

TEST(Sampler, SameSeedSameTokensOtherSeedOthers) {
  torch::manual_seed(3);
  auto logits = torch::randn({256, 1000});
  auto sp = params(1.0, 0, 0.95);
  auto a = sample_tokens(logits, sp, uniforms(256, 11)).tokens;
  auto b = sample_tokens(logits, sp, uniforms(256, 11)).tokens;
  auto c = sample_tokens(logits, sp, uniforms(256, 12)).tokens;
  EXPECT_TRUE(a.equal(b));
  EXPECT_GT(a.ne(c).sum().item<int64_t>(), 200);
  // A row's draw depends on its own uniform only: the batch around it does not matter.
  auto one = sample_tokens(logits.narrow(0, 17, 1), sp, uniforms(256, 11).narrow(0, 17, 1)).tokens;
  EXPECT_EQ(one[0].item<int64_t>(), a[17].item<int64_t>());
}

TEST(Sampler, ProbsScratchChangesNothingButWhereTheyAreWritten) {
  // Decoding passes one [B, V] buffer for every step's sampling distribution.
  torch::manual_seed(4);
  auto logits = torch::randn({32, 3000}) * 3;
  for (auto sp : {params(1.0), params(0.7, 50, 0.9, 0.05)}) {
    auto want = sample_tokens(logits, sp, uniforms(32, 5));
    auto scratch = torch::full({32, 3000}, std::nanf(""));
    auto got = sample_tokens(logits, sp, uniforms(32, 5), scratch);
    EXPECT_TRUE(got.tokens.equal(want.tokens)) << "T " << sp.temperature;
    EXPECT_TRUE(got.logprobs.equal(want.logprobs)) << "T " << sp.temperature;
    EXPECT_FALSE(torch::isnan(scratch).any().item<bool>()) << "the distribution went into the scratch buffer";
    EXPECT_LT(max_abs_diff(scratch.sum(-1), torch::ones({32})), 1e-5);
  }
  // A buffer of another shape is not used (and not an error).
  auto odd = torch::full({31, 3000}, 7.0f);
  auto got = sample_tokens(logits, params(1.0), uniforms(32, 5), odd);
  EXPECT_TRUE(got.tokens.equal(sample_tokens(logits, params(1.0), uniforms(32, 5)).tokens));
  EXPECT_TRUE(odd.eq(7.0f).all().item<bool>());
}

TEST(Sampler, InverseCdfNeverDrawsZeroProbabilityTokens) {
  auto probs = torch::tensor({0.0, 0.5, 0.0, 0.0, 0.25, 0.0, 0.25, 0.0}, torch::kFloat32).unsqueeze(0).expand({6, 8});
  auto u = torch::tensor({1e-300, 1e-17, 0.5, 0.5000001, 0.75, 1 - 1e-16}, torch::kFloat64);
  auto tok = inverse_cdf_sample(probs.contiguous(), u);
  EXPECT_EQ(std::vector<int64_t>(tok.data_ptr<int64_t>(), tok.data_ptr<int64_t>() + 6),
            std::vector<int64_t>({1, 1, 1, 4, 4, 6}));
}

TEST(Sampler, TwoLevelInverseCdfEqualsTheFlatOne) {
  // The flat reference: one fp64 cumulative sum over the whole vocabulary.
  torch::manual_seed(4);
  // Block sizes: padded (7, 5003 prime), dividing (1024, 3000 = 5 x 600, 128256, 151936 = 128 x 1187).
  for (int64_t V : {7, 1024, 3000, 5003, 128256, 151936}) {
    auto probs = torch::softmax(torch::randn({64, V}) * 3, -1);
    probs.masked_fill_(torch::rand({64, V}) < 0.3, 0.0);  // zero-probability tokens between the others
    auto u = uniforms(64, (uint64_t)V);
    auto got = inverse_cdf_sample(probs, u);
    auto cdf = probs.cumsum(-1, torch::kFloat64);
    auto want = torch::searchsorted(cdf, u.view({-1, 1}) * cdf.narrow(-1, V - 1, 1)).view({-1});
    EXPECT_TRUE(got.equal(want)) << "V=" << V;
    EXPECT_TRUE(probs.gather(-1, got.view({-1, 1})).gt(0).all().item<bool>()) << "V=" << V;
  }
}

TEST(Sampler, StreamUniformsAreUniformAndDistinct) {
  double sum = 0, mn = 1, mx = 0;
  int n = 100000;
  for (int i = 0; i < n; ++i) {
    double u = stream_uniform(5, (uint64_t)(i % 100), (uint64_t)(i / 100));
    sum += u;
    mn = std::min(mn, u);
    mx = std::max(mx, u);
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_GT(mn, 0.0);
  EXPECT_LT(mx, 1.0);
  EXPECT_NE(stream_uniform(5, 1, 0), stream_uniform(5, 0, 1));
  EXPECT_NE(stream_uniform(5, 1, 0), stream_uniform(6, 1, 0));
  EXPECT_EQ(stream_uniform(5, 1, 0), stream_uniform(5, 1, 0));
}
