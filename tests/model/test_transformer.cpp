// The transformer against golden logits from tests/golden/make_golden.py (an independent float64 PyTorch
// implementation written from the HF model definitions), plus padding invariance, bf16, the chunked
// log-prob path against the naive oracle, strict loading and save/load round trips.
#include <fstream>

#include "io/hf_model.h"
#include "io/safetensors.h"
#include "kernels/cpu_small_matmul.h"
#include "model/logprobs.h"
#include "model/transformer.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

const std::vector<std::string> kCausalModels = {"qwen2_tied", "qwen2_untied", "llama_rope3", "llama_tied_mha"};

nlohmann::json golden(const std::string& model) {
  return nlohmann::json::parse(read_file(golden_dir(model) + "/golden.json"));
}

std::vector<std::vector<int64_t>> sequences(const nlohmann::json& g) {
  return g["sequences"].get<std::vector<std::vector<int64_t>>>();
}

// Pads sequences to one batch; left=true puts the padding before the tokens.
std::pair<torch::Tensor, torch::Tensor> pad_batch(const std::vector<std::vector<int64_t>>& seqs, bool left,
                                                  int64_t pad_id = 0) {
  int64_t T = 0;
  for (auto& s : seqs) T = std::max<int64_t>(T, (int64_t)s.size());
  auto ids = torch::full({(int64_t)seqs.size(), T}, pad_id, torch::kLong);
  auto mask = torch::zeros({(int64_t)seqs.size(), T}, torch::kLong);
  for (size_t i = 0; i < seqs.size(); ++i) {
    int64_t n = (int64_t)seqs[i].size(), off = left ? T - n : 0;
    ids[(int64_t)i].narrow(0, off, n).copy_(torch::tensor(seqs[i], torch::kLong));
    mask[(int64_t)i].narrow(0, off, n).fill_(1);
  }
  return {ids, mask};
}

torch::Tensor one(const std::vector<int64_t>& s) {
  return torch::tensor(s, torch::kLong).unsqueeze(0);
}

}  // namespace

TEST(Transformer, GoldenLogitsSingleSequences) {
  torch::NoGradGuard ng;
  for (auto& name : kCausalModels) {
    auto lm = load_model(golden_dir(name), torch::kFloat32, torch::kCPU);
    auto g = golden(name);
    auto seqs = sequences(g);
    for (size_t i = 0; i < seqs.size(); ++i) {
      auto rows = g["logits"][i].get<std::vector<std::vector<double>>>();
      std::vector<double> flat;
      for (auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
      auto want = torch::tensor(flat, torch::kFloat64).view({(int64_t)rows.size(), -1});  // [T, V]
      auto ids = one(seqs[i]);
      auto got = lm.model->forward(ids, torch::ones_like(ids))[0];
      ASSERT_EQ(got.sizes(), want.sizes()) << name;
      EXPECT_LT(max_abs_diff(got, want), 1e-4) << name << " sequence " << i << " (length " << seqs[i].size() << ")";
    }
  }
}

TEST(Transformer, PaddedBatchesMatchSingleSequences) {
  torch::NoGradGuard ng;
  for (auto& name : kCausalModels) {
    auto lm = load_model(golden_dir(name), torch::kFloat32, torch::kCPU);
    auto seqs = sequences(golden(name));
    for (bool left : {false, true}) {
      auto [ids, mask] = pad_batch(seqs, left, 3);
      auto logits = lm.model->forward(ids, mask);
      int64_t T = ids.size(1);
      for (size_t i = 0; i < seqs.size(); ++i) {
        int64_t n = (int64_t)seqs[i].size(), off = left ? T - n : 0;
        auto alone = lm.model->forward(one(seqs[i]), torch::ones({1, n}, torch::kLong))[0];
        EXPECT_LT(max_abs_diff(logits[(int64_t)i].narrow(0, off, n), alone), 1e-4)
            << name << (left ? " left" : " right") << "-padded, sequence " << i;
      }
    }
  }
}

TEST(Transformer, GoldenRewardsOfSequenceClassifier) {
  torch::NoGradGuard ng;
  auto lm = load_model(golden_dir("llama_seqcls"), torch::kFloat32, torch::kCPU);
  auto g = golden("llama_seqcls");
  auto seqs = sequences(g);
  auto want = torch::tensor(g["rewards"].get<std::vector<double>>(), torch::kFloat64);
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto ids = one(seqs[i]);
    EXPECT_NEAR(lm.model->sequence_scores(ids, torch::ones_like(ids)).item<double>(), want[(int64_t)i].item<double>(),
                1e-4);
  }
  for (bool left : {false, true}) {
    auto [ids, mask] = pad_batch(seqs, left, 0);
    EXPECT_LT(max_abs_diff(lm.model->sequence_scores(ids, mask).squeeze(1), want), 1e-4) << (left ? "left" : "right");
  }
}

TEST(Transformer, TokenLogprobsMatchGoldenLogSoftmax) {
  // log p(ids[t] | ids[<t]) from the golden logits, computed here in float64.
  torch::NoGradGuard ng;
  for (auto& name : kCausalModels) {
    auto lm = load_model(golden_dir(name), torch::kFloat32, torch::kCPU);
    auto g = golden(name);
    auto seqs = sequences(g);
    auto [ids, mask] = pad_batch(seqs, /*left=*/false);
    auto got = token_logprobs(lm.model, ids, mask, /*max_chunk_elements=*/1000);  // forces many chunks
    for (size_t i = 0; i < seqs.size(); ++i) {
      auto rows = g["logits"][i].get<std::vector<std::vector<double>>>();
      for (size_t t = 1; t < seqs[i].size(); ++t) {
        auto row = torch::tensor(rows[t - 1], torch::kFloat64);
        double want = torch::log_softmax(row, 0)[seqs[i][t]].item<double>();
        EXPECT_NEAR(got[(int64_t)i][(int64_t)t - 1].item<double>(), want, 1e-4) << name << " seq " << i << " t " << t;
      }
      for (int64_t t = (int64_t)seqs[i].size(); t < ids.size(1); ++t)
        EXPECT_EQ(got[(int64_t)i][t - 1].item<float>(), 0.0f) << "padding target must give 0";
    }
  }
}

TEST(Transformer, ChunkedLogprobsEqualNaiveWithGradients) {
  auto lm = load_model(golden_dir("llama_rope3"), torch::kFloat32, torch::kCPU);
  auto [ids, mask] = pad_batch(sequences(golden("llama_rope3")), /*left=*/true, 5);
  auto naive = token_logprobs_naive(lm.model, ids, mask);
  auto w = torch::randn(naive.sizes());
  auto gn = torch::autograd::grad({(naive * w).sum()}, {lm.model->lm_head->weight})[0];
  for (int64_t chunk : {1 << 24, 5000, 80}) {
    auto fast = token_logprobs(lm.model, ids, mask, chunk);
    EXPECT_LT(max_abs_diff(fast, naive), 1e-5) << "chunk " << chunk;
    auto gf = torch::autograd::grad({(fast * w).sum()}, {lm.model->lm_head->weight})[0];
    EXPECT_LT(max_abs_diff(gf, gn), 1e-5) << "chunk " << chunk;
  }
}

TEST(Transformer, Bf16CloseToFp32) {
  torch::NoGradGuard ng;
  for (auto& name : kCausalModels) {
    auto f32 = load_model(golden_dir(name), torch::kFloat32, torch::kCPU);
    auto bf16 = load_model(golden_dir(name), torch::kBFloat16, torch::kCPU);
    auto [ids, mask] = pad_batch(sequences(golden(name)), /*left=*/true);
    auto a = token_logprobs(f32.model, ids, mask), b = token_logprobs(bf16.model, ids, mask);
    // bf16 keeps 8 bits of mantissa: logits of magnitude ~10 move by ~0.05-0.2 after a few layers.
    double mean_abs = a.abs().mean().item<double>();
    double mean_err = (a - b).abs().mean().item<double>();
    EXPECT_LT(mean_err, 0.05 * mean_abs) << name << ": mean |lp| " << mean_abs << ", mean err " << mean_err;
    EXPECT_GT(mean_err, 0.0) << name << ": bf16 must actually have run in bf16";
  }
}

TEST(Checkpoint, StrictLoadingNamesTheTensor) {
  TempDir tmp;
  auto dir = golden_dir("qwen2_tied");
  std::filesystem::copy_file(dir + "/config.json", tmp / "config.json");
  auto tensors = load_safetensors(dir + "/model.safetensors");
  auto save = [&](std::map<std::string, torch::Tensor> m) {
    std::vector<std::pair<std::string, torch::Tensor>> v(m.begin(), m.end());
    save_safetensors(tmp / "model.safetensors", v);
  };
  auto m = tensors;
  m.erase("model.layers.1.mlp.up_proj.weight");
  save(m);
  expect_error([&] { load_model(tmp.path, torch::kFloat32, torch::kCPU); },
               {tmp.path, "lacks", "model.layers.1.mlp.up_proj.weight"});
  m = tensors;
  m["model.layers.0.extra.weight"] = torch::zeros({2});
  save(m);
  expect_error([&] { load_model(tmp.path, torch::kFloat32, torch::kCPU); },
               {"does not use", "model.layers.0.extra.weight"});
  m = tensors;
  m["model.norm.weight"] = torch::ones({31});
  save(m);
  expect_error([&] { load_model(tmp.path, torch::kFloat32, torch::kCPU); }, {"model.norm.weight", "[31]", "[32]"});
  // HF ignores a saved copy of a tied head: so do we.
  m = tensors;
  m["lm_head.weight"] = tensors["model.embed_tokens.weight"];
  save(m);
  EXPECT_NO_THROW(load_model(tmp.path, torch::kFloat32, torch::kCPU));
}

TEST(Checkpoint, SaveLoadRoundTripIsExact) {
  TempDir tmp;
  for (std::string arch : {"qwen2", "llama"}) {
    auto c = preset_config(arch, "tiny");
    Transformer a(c, torch::TensorOptions().dtype(torch::kBFloat16));
    init_weights(a, 7);
    save_model(a, tmp / arch);
    auto st = SafetensorsFile::open(tmp / arch + "/model.safetensors");
    EXPECT_EQ(st->find("lm_head.weight") != nullptr, !c.tie_word_embeddings) << arch;
    auto b = load_model(tmp / arch, torch::kBFloat16, torch::kCPU);
    EXPECT_EQ(b.config.torch_dtype, "bfloat16");
    auto pa = state_dict(a), pb = state_dict(b.model);
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      EXPECT_EQ(pa[i].first, pb[i].first);
      EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second)) << pa[i].first;
    }
    EXPECT_TRUE(file_exists(tmp / arch + "/generation_config.json"));
  }
}

TEST(Checkpoint, InitIsSeededAndHfLike) {
  auto c = preset_config("qwen2", "tiny");
  Transformer a(c, torch::TensorOptions()), b(c, torch::TensorOptions()), d(c, torch::TensorOptions());
  init_weights(a, 1);
  init_weights(b, 1);
  init_weights(d, 2);
  auto w = a->model->layers[0]->as<DecoderLayerImpl>()->mlp->up_proj->weight;
  EXPECT_TRUE(torch::equal(w, b->model->layers[0]->as<DecoderLayerImpl>()->mlp->up_proj->weight));
  EXPECT_FALSE(torch::equal(w, d->model->layers[0]->as<DecoderLayerImpl>()->mlp->up_proj->weight));
  EXPECT_NEAR(w.std().item<double>(), 0.02, 0.002);
  EXPECT_EQ(a->model->norm->weight.sum().item<double>(), (double)c.hidden_size);
  auto bias = a->model->layers[0]->as<DecoderLayerImpl>()->self_attn->q_proj->bias;
  EXPECT_EQ(bias.abs().sum().item<double>(), 0.0);
}

TEST(Checkpoint, FailedSaveKeepsTheOldModel) {
  TempDir tmp;
  auto c = preset_config("qwen2", "tiny");
  Transformer a(c, torch::TensorOptions());
  init_weights(a, 1);
  save_model(a, tmp / "m");
  std::string before = read_file(tmp / "m/model.safetensors");
  // A complex weight cannot be saved: the failure comes after config.json is staged, and the old directory
  // must survive untouched.
  Transformer bad(c, torch::TensorOptions());
  init_weights(bad, 1);
  auto w = bad->parameters().back();
  w.set_data(w.data().to(torch::kComplexFloat));
  expect_error([&] { save_model(bad, tmp / "m"); }, {"ComplexFloat", "only F32, BF16, F16, F64"});
  EXPECT_EQ(read_file(tmp / "m/model.safetensors"), before);
  for (auto& e : std::filesystem::directory_iterator(tmp.path))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << "leftover " << e.path();
}

// Checkpointed layers recompute their activations in backward: the loss and every parameter's gradient must be
// those of the ordinary graph (the oracle), with padding and GQA in the batch.
TEST(Transformer, GradientCheckpointingGivesTheSameGradients) {
  for (const char* name : {"qwen2_tied", "llama_rope3"}) {
    auto lm = load_model(golden_dir(name), torch::kFloat32, torch::kCPU);
    auto [ids, mask] = pad_batch(sequences(golden(name)), /*left=*/true, 5);
    auto w = torch::randn({ids.size(0), ids.size(1) - 1});
    std::vector<std::vector<torch::Tensor>> grads;
    std::vector<double> losses;
    double scale = 0;  // sum of |terms|: the random weights cancel, so the loss itself can be near 0
    for (bool ckpt : {false, true}) {
      lm.model->model->gradient_checkpointing = ckpt;
      lm.model->zero_grad();
      auto lp = token_logprobs(lm.model, ids, mask);
      auto loss = (lp * w).sum();
      loss.backward();
      losses.push_back(loss.item<double>());
      scale = (lp.detach() * w).abs().sum().item<double>();
      std::vector<torch::Tensor> g;
      for (auto& p : lm.model->parameters()) {
        ASSERT_TRUE(p.grad().defined()) << name << (ckpt ? " checkpointed" : "");
        g.push_back(p.grad().clone());
      }
      grads.push_back(g);
    }
    EXPECT_NEAR(losses[0], losses[1], 1e-6 * scale) << name;
    for (size_t i = 0; i < grads[0].size(); ++i)
      EXPECT_LT(max_abs_diff(grads[0][i], grads[1][i]), 1e-6 * (1 + grads[0][i].abs().max().item<double>()) * 30)
          << name << " parameter " << i;
  }
}

// The head is recomputed in backward (head_chunks): every parameter's gradient, the tied embedding's included
// (it gets both the lookup's and the head's share), must be the naive full-logits graph's.
TEST(Transformer, RecomputedHeadGivesEveryGradient) {
  for (const char* name : {"qwen2_tied", "llama_rope3"}) {
    auto lm = load_model(golden_dir(name), torch::kFloat32, torch::kCPU);
    auto [ids, mask] = pad_batch(sequences(golden(name)), /*left=*/true, 5);
    auto w = torch::randn({ids.size(0), ids.size(1) - 1});
    std::vector<std::vector<torch::Tensor>> grads;
    for (bool naive : {true, false}) {
      lm.model->zero_grad();
      auto lp = naive ? token_logprobs_naive(lm.model, ids, mask)
                      : token_logprobs(lm.model, ids, mask, 7 * lm.config.vocab_size);
      (lp * w).sum().backward();
      std::vector<torch::Tensor> g;
      for (auto& p : lm.model->parameters()) g.push_back(p.grad().clone());
      grads.push_back(g);
    }
    for (size_t i = 0; i < grads[0].size(); ++i)
      EXPECT_LT(max_abs_diff(grads[0][i], grads[1][i]), 1e-6 * (1 + grads[0][i].abs().max().item<double>()) * 30)
          << name << " parameter " << i;
  }
}

// policy_vocab_terms (one recomputed head pass for token log-probs and every KL term) against vocab_terms on
// the full log_softmax tensor: values of all seven outputs and the gradients of all parameters.
TEST(Transformer, PolicyVocabTermsEqualFullTensorTerms) {
  auto lm = load_model(golden_dir("qwen2_tied"), torch::kFloat32, torch::kCPU);
  auto [ids, mask] = pad_batch(sequences(golden("qwen2_tied")), /*left=*/true, 5);
  int64_t B = ids.size(0), T = ids.size(1) - 1, V = lm.config.vocab_size;
  torch::manual_seed(3);
  std::vector<torch::Tensor> refs = {torch::log_softmax(torch::randn({B, T, V}), -1),
                                     torch::log_softmax(torch::randn({B, T, V}) * 2, -1)};
  auto tgt = ids.narrow(1, 1, T);
  auto valid = mask.narrow(1, 1, T).to(torch::kBool);
  std::vector<double> a = {0.7, 0.3}, b = {0.4, 0.6};
  std::vector<torch::Tensor> wts;
  for (int i = 0; i < 7; ++i) wts.push_back(torch::randn({i == 1 || i == 2 ? 2 : 1, B, T}).squeeze(0));
  auto loss_of = [&](const torch::Tensor& token_lp, const VocabTerms& t) {
    std::vector<torch::Tensor> o = {token_lp,    t.kl_policy_ref,  t.kl_ref_policy,   t.kl_policy_geo,
                                    t.neg_log_f, t.log_geo_target, t.log_arith_target};
    auto l = torch::zeros({}, torch::kFloat64);
    for (int i = 0; i < 7; ++i) l = l + (o[i].to(torch::kFloat64) * wts[i]).sum();
    return l;
  };
  std::vector<std::vector<torch::Tensor>> grads;
  std::vector<VocabTerms> terms;
  std::vector<torch::Tensor> tlps;
  for (bool naive : {true, false}) {
    lm.model->zero_grad();
    auto h = lm.model->hidden_states(ids, mask).narrow(1, 0, T);
    torch::Tensor tlp;
    VocabTerms t;
    if (naive) {
      auto lp = torch::log_softmax(lm.model->logits_from_hidden(h).to(torch::kFloat32), -1);
      t = vocab_terms(lp, refs, tgt, a, b);
      tlp = lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).masked_fill(valid.logical_not(), 0.0);
    } else {
      auto chunk_of = [](const torch::Tensor& r) { return [r](int64_t s, int64_t n) { return r.narrow(1, s, n); }; };
      t = policy_vocab_terms(lm.model, h, {chunk_of(refs[0]), chunk_of(refs[1])}, tgt, valid, a, b, 3, &tlp);
    }
    loss_of(tlp, t).backward();
    std::vector<torch::Tensor> g;
    for (auto& p : lm.model->parameters()) g.push_back(p.grad().clone());
    grads.push_back(g);
    terms.push_back(t);
    tlps.push_back(tlp.detach());
  }
  EXPECT_LT(max_abs_diff(tlps[0], tlps[1]), 1e-5);
  EXPECT_LT(max_abs_diff(terms[0].kl_policy_ref, terms[1].kl_policy_ref), 1e-5);
  EXPECT_LT(max_abs_diff(terms[0].kl_ref_policy, terms[1].kl_ref_policy), 1e-5);
  EXPECT_LT(max_abs_diff(terms[0].kl_policy_geo, terms[1].kl_policy_geo), 1e-5);
  EXPECT_LT(max_abs_diff(terms[0].neg_log_f, terms[1].neg_log_f), 1e-5);
  EXPECT_LT(max_abs_diff(terms[0].log_geo_target, terms[1].log_geo_target), 1e-5);
  EXPECT_LT(max_abs_diff(terms[0].log_arith_target, terms[1].log_arith_target), 1e-5);
  for (size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_LT(max_abs_diff(grads[0][i], grads[1][i]), 1e-6 * (1 + grads[0][i].abs().max().item<double>()) * 30)
        << "parameter " << i;
}

// bf16 Linear on CPU keeps only its bf16 inputs for backward: outputs and all three gradients must be those of
// autograd recording the fp32 upcasts (the oracle), for batched 3-D inputs, with and without bias.
TEST(Transformer, Fp32LogitsAreTheModelDtypeLogits) {
  // Decoding asks for fp32 logits written into a reused buffer; they must be exactly the model's logits (a bf16
  // head's rounded to bf16), on the few-rows kernel's path and on the BLAS path beyond its row limit.
  torch::manual_seed(5);
  for (auto dt : {torch::kFloat32, torch::kBFloat16}) {
    auto c = preset_config("qwen2", "tiny");
    Transformer m(c, torch::TensorOptions().dtype(torch::kFloat32));
    init_weights(m, 3, 0.2);
    m->to(dt);
    torch::NoGradGuard ng;
    for (int64_t n : {(int64_t)1, (int64_t)9, small_matmul_max_rows(dt) + 1}) {
      auto h = torch::randn({n, c.hidden_size}).to(dt);
      auto want = m->logits_from_hidden(h).to(torch::kFloat32);
      EXPECT_TRUE(torch::equal(m->logits_fp32_from_hidden(h), want)) << dt << " rows " << n;
      auto buf = torch::full({n, c.vocab_size}, std::nanf(""));
      auto got = m->logits_fp32_from_hidden(h, buf);
      EXPECT_EQ(got.data_ptr(), buf.data_ptr()) << dt << " rows " << n;
      EXPECT_TRUE(torch::equal(buf, want)) << dt << " rows " << n << ": max diff " << max_abs_diff(buf, want);
    }
  }
}

TEST(Transformer, LowPrecisionLinearEqualsRecordedUpcast) {
  torch::manual_seed(5);
  for (bool with_bias : {true, false}) {
    auto x0 = torch::randn({2, 5, 24}).to(torch::kBFloat16);
    auto w0 = (torch::randn({7, 24}) * 0.2).to(torch::kBFloat16);
    auto b0 = with_bias ? torch::randn({7}).to(torch::kBFloat16) : torch::Tensor();
    auto gy = torch::randn({2, 5, 7}).to(torch::kBFloat16);
    std::vector<std::vector<torch::Tensor>> got;
    for (bool oracle : {true, false}) {
      auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
      auto b = with_bias ? b0.clone().requires_grad_(true) : torch::Tensor();
      auto y = oracle ? low_precision_linear_oracle(x, w, b) : low_precision_linear(x, w, b);
      EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
      y.backward(gy);
      got.push_back({y.detach(), x.grad(), w.grad(), with_bias ? b.grad() : torch::zeros({1})});
    }
    for (size_t i = 0; i < got[0].size(); ++i)
      EXPECT_LT(max_abs_diff(got[0][i].to(torch::kFloat32), got[1][i].to(torch::kFloat32)), 1e-6)
          << "output " << i << (with_bias ? " with bias" : " without bias");
  }
}
