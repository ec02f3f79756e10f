#include "generation/sampler.h"

#include <cmath>
#include <limits>

#include "util/common.h"

namespace multiref {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Candidates for top-p when top-k is off: real LM distributions put nearly all their mass in a few hundred
// tokens, so a partial top-512 selection usually decides top-p without sorting the whole vocabulary.
constexpr int64_t kTopPCandidates = 512;
}  // namespace

void SamplingParams::validate() const {
  if (!std::isfinite(temperature) || temperature < 0)
    fail("--temperature must be >= 0 (0 = greedy decoding), got ", temperature);
  if (top_k < 0) fail("--top_k must be >= 0 (0 = off), got ", top_k);
  if (!(top_p > 0 && top_p <= 1)) fail("--top_p must lie in (0, 1] (1 = off), got ", top_p);
  if (!(min_p >= 0 && min_p <= 1)) fail("--min_p must lie in [0, 1] (0 = off), got ", min_p);
}

torch::Tensor warp_logits(const torch::Tensor& logits, const SamplingParams& p, bool may_sync) {
  auto s = logits.to(torch::kFloat32);  // [B, V]
  int64_t V = s.size(-1);
  if (p.temperature != 1.0 && !p.greedy()) s = s / p.temperature;
  if (p.top_k > 0 && p.top_k < V) {
    auto kth = std::get<0>(s.topk(p.top_k, -1)).narrow(-1, p.top_k - 1, 1);  // [B, 1]
    s = s.masked_fill(s < kth, kNegInf);
  }
  if (p.top_p < 1.0) {
    // HF removes a token when the ascending cumulative mass up to it is <= 1 - top_p, i.e. when the mass
    // ranked strictly above it is >= top_p. Tokens outside a candidate set holding >= top_p of the mass
    // have at least that much above them, so the candidates decide; else fall back to a full sort.
    auto probs = torch::softmax(s, -1);  // [B, V]
    int64_t M = std::min<int64_t>(V, p.top_k > 0 ? p.top_k : kTopPCandidates);
    torch::Tensor vals, idx;  // [B, M] descending
    bool covered = false;
    if (may_sync && M < V) {
      std::tie(vals, idx) = probs.topk(M, -1);
      covered = (vals.sum(-1) >= p.top_p).all().item<bool>();
    }
    if (!covered) std::tie(vals, idx) = probs.sort(-1, /*descending=*/true);
    auto above = vals.cumsum(-1) - vals;  // [B, M] mass ranked strictly above (the top token: 0 < top_p)
    auto keep = torch::zeros_like(probs, torch::kBool).scatter(-1, idx, above < p.top_p);
    s = s.masked_fill(keep.logical_not(), kNegInf);
  }
  if (p.min_p > 0.0) {
    // The top token is never below min_p * itself (min_p <= 1): HF's min_tokens_to_keep = 1 holds.
    auto probs = torch::softmax(s, -1);
    s = s.masked_fill(probs < probs.amax(-1, /*keepdim=*/true) * p.min_p, kNegInf);
  }
  return s;
}

torch::Tensor warp_logits_reference(const torch::Tensor& logits, const SamplingParams& p) {
  auto scores = logits.to(torch::kFloat32);
  int64_t V = scores.size(-1);
  if (p.temperature != 1.0) scores = scores / p.temperature;  // TemperatureLogitsWarper
  if (p.top_k != 0) {                                         // TopKLogitsWarper
    int64_t k = std::min(std::max<int64_t>(p.top_k, 1), V);
    auto kth = std::get<0>(torch::topk(scores, k)).select(-1, k - 1).unsqueeze(-1);
    scores = scores.masked_fill(scores < kth, kNegInf);
  }
  if (p.top_p < 1.0) {  // TopPLogitsWarper
    auto [sorted_logits, sorted_indices] = torch::sort(scores, -1, /*descending=*/false);
    auto cumulative_probs = sorted_logits.softmax(-1).cumsum(-1);
    auto sorted_to_remove = cumulative_probs <= (1 - p.top_p);
    sorted_to_remove.narrow(-1, V - 1, 1).fill_(false);  // min_tokens_to_keep = 1
    auto to_remove = sorted_to_remove.scatter(1, sorted_indices, sorted_to_remove);
    scores = scores.masked_fill(to_remove, kNegInf);
  }
  {  // MinPLogitsWarper (HF adds it whenever min_p is set; 0 removes nothing)
    auto probs = torch::softmax(scores, -1);
    auto top_probs = std::get<0>(probs.max(-1, /*keepdim=*/true));
    auto tokens_to_remove = probs < p.min_p * top_probs;
    auto sorted_indices = torch::argsort(scores, -1, /*descending=*/true);
    auto sorted_to_remove = tokens_to_remove.gather(-1, sorted_indices);
    sorted_to_remove.narrow(-1, 0, 1).fill_(false);
    auto to_remove = sorted_to_remove.scatter(1, sorted_indices, sorted_to_remove);
    scores = scores.masked_fill(to_remove, kNegInf);
  }
  return scores;
}

torch::Tensor inverse_cdf_sample(const torch::Tensor& probs, const torch::Tensor& uniforms) {
  // Two levels, so no [B, V] cumulative sum is formed (a 150k-token vocabulary at batch 64 made that the
  // costliest part of a sampling step): find the block of kBlock tokens holding the target from the
  // blocks' masses, then the token inside it. Same draw as one flat CDF up to rounding.
  // A block size that divides V needs no zero-mass padding (a copy of the whole [B, V] tensor): Qwen2's 151936
  // = 128 x 1187, Llama 3's 128256 = 128 x 1002; other vocabularies fall back to 1024 and a pad.
  int64_t B = probs.size(0), V = probs.size(-1), kBlock = 1024;
  for (int64_t d = 512; d <= 2048; ++d)
    if (V % d == 0) {
      kBlock = d;
      break;
    }
  int64_t nb = (V + kBlock - 1) / kBlock;
  auto p = nb * kBlock == V ? probs : torch::constant_pad_nd(probs, {0, nb * kBlock - V});  // zero mass pad
  auto blocks = p.view({B, nb, kBlock});
  auto mass = blocks.sum(-1).to(torch::kFloat64);  // [B, nb]
  auto cdf = mass.cumsum(-1);                      // [B, nb]
  auto u = uniforms.to(probs.device(), torch::kFloat64).view({B, 1});
  auto target = u * cdf.narrow(-1, nb - 1, 1);  // [B, 1]
  // The first block whose cumulative mass reaches the target has positive mass (target > 0).
  auto bi = torch::searchsorted(cdf, target).clamp_max(nb - 1);                       // [B, 1]
  auto before = (cdf - mass).gather(-1, bi);                                          // [B, 1] mass of earlier blocks
  auto inner = blocks.gather(1, bi.unsqueeze(-1).expand({B, 1, kBlock})).squeeze(1);  // [B, kBlock]
  auto icdf = inner.cumsum(-1, torch::kFloat64) + before;                             // [B, kBlock]
  // Rounding may leave the block's total a hair below the target: aim at most at the total, which the
  // block's last positive-mass token reaches, so a token of probability 0 is never returned.
  auto t = torch::minimum(target, icdf.narrow(-1, kBlock - 1, 1));
  t = torch::maximum(t, torch::nextafter(before, before + 1));
  auto ti = torch::searchsorted(icdf, t).clamp_max(kBlock - 1);  // [B, 1]
  return (bi * kBlock + ti).view({B}).clamp_max(V - 1);
}

SampledTokens sample_tokens(const torch::Tensor& logits, const SamplingParams& p, const torch::Tensor& uniforms,
                            const torch::Tensor& probs_scratch, bool may_sync) {
  auto lf = logits.to(torch::kFloat32);  // [B, V]
  SampledTokens out;
  if (p.greedy()) {
    out.tokens = lf.argmax(-1);
  } else {
    if (uniforms.numel() != lf.size(0)) fail("sample_tokens: one uniform per row expected, got ", uniforms.numel());
    bool plain = p.temperature == 1.0 && p.top_k == 0 && p.top_p >= 1.0 && p.min_p <= 0.0;
    auto scores = plain ? lf : warp_logits(lf, p, may_sync);
    bool fits = probs_scratch.defined() && probs_scratch.scalar_type() == torch::kFloat32 &&
                probs_scratch.sizes() == scores.sizes() && probs_scratch.device() == scores.device() &&
                probs_scratch.is_contiguous();
    torch::Tensor probs;
    if (fits) {
      probs = probs_scratch;  // a handle to the caller's storage, written by softmax_out
      at::softmax_out(probs, scores, -1);
    } else {
      probs = torch::softmax(scores, -1);
    }
    out.tokens = inverse_cdf_sample(probs, uniforms);
    if (plain) {
      // The sampling distribution is the model's: log of the sampled token's probability, no second pass over
      // the vocabulary for a logsumexp. (A sampled token has mass; fp32 keeps ~1e-7 relative precision down to
      // probabilities of 1e-38, far below anything drawn in practice.)
      out.logprobs = probs.gather(-1, out.tokens.unsqueeze(-1)).squeeze(-1).log();
      return out;
    }
  }
  // log p(token) = logit - logsumexp: no [B, V] log-softmax tensor.
  out.logprobs = lf.gather(-1, out.tokens.unsqueeze(-1)).squeeze(-1) - torch::logsumexp(lf, -1);
  return out;
}

static uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double stream_uniform(uint64_t seed, uint64_t stream, uint64_t step) {
  auto mix = splitmix64;
  uint64_t h = mix(mix(mix(seed) ^ stream) ^ (step * 0xd1b54a32d192ed03ULL));
  return ((double)(h >> 11) + 0.5) * 0x1.0p-53;  // (0, 1): never 0, never 1
}

torch::Tensor stream_uniforms(uint64_t seed, const torch::Tensor& streams, const torch::Tensor& steps) {
  // uint64 constants as the int64 with the same bits; shifts are arithmetic on int64, so each is masked to the
  // logical shift's bits.
  auto c = [](uint64_t v) { return (int64_t)v; };
  auto lsr = [](const torch::Tensor& z, int k) { return z.__rshift__(k).bitwise_and((int64_t)((~0ULL) >> k)); };
  auto mix = [&](torch::Tensor z) {
    z = z + c(0x9e3779b97f4a7c15ULL);
    z = z.bitwise_xor(lsr(z, 30)) * c(0xbf58476d1ce4e5b9ULL);
    z = z.bitwise_xor(lsr(z, 27)) * c(0x94d049bb133111ebULL);
    return z.bitwise_xor(lsr(z, 31));
  };
  auto st = streams.to(torch::kLong), sp = steps.to(torch::kLong);
  auto h = mix(mix(st.bitwise_xor(c(splitmix64(seed)))).bitwise_xor(sp * c(0xd1b54a32d192ed03ULL)));
  return (lsr(h, 11).to(torch::kFloat64) + 0.5) * 0x1.0p-53;
}

}  // namespace multiref
