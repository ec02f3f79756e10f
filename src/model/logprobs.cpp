#include "model/logprobs.h"

#include "kernels/matmul_dtype.h"
#include "util/common.h"

namespace multiref {

namespace {

struct HeadChunkState : torch::CustomClassHolder {
  int64_t chunk;
  HeadChunkFn fn;
};

std::vector<torch::Tensor> run_chunks(const HeadChunkState& st, const torch::Tensor& hidden, const torch::Tensor& cw) {
  int64_t T = hidden.size(1);
  std::vector<std::vector<torch::Tensor>> parts;
  for (int64_t s = 0; s < T; s += st.chunk) {
    int64_t n = std::min(st.chunk, T - s);
    parts.push_back(st.fn(hidden.narrow(1, s, n), cw, s, n));
    if (parts.back().size() != parts.front().size()) fail("head_chunks: fn returned a varying number of tensors");
  }
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < parts.front().size(); ++i) {
    std::vector<torch::Tensor> v;
    for (auto& p : parts) v.push_back(p[i]);
    out.push_back(v.size() == 1 ? v[0] : torch::cat(v, -1));
  }
  return out;
}

// Like torch.utils.checkpoint around the head: forward keeps only (hidden, weight); backward reruns fn one chunk
// at a time with autograd on and backpropagates that chunk alone.
struct RecomputedHead : torch::autograd::Function<RecomputedHead> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& hidden,
                                                const torch::Tensor& weight, c10::intrusive_ptr<HeadChunkState> st) {
    ctx->save_for_backward({hidden, weight});
    ctx->saved_data["state"] = c10::IValue::make_capsule(st);
    // Autograd is off in here, so the head may take the few-rows kernel on its stored weights (no fp32 copy).
    return run_chunks(*st, hidden, torch::Tensor());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto st = c10::static_intrusive_pointer_cast<HeadChunkState>(ctx->saved_data["state"].toCapsule());
    const auto& hidden = saved[0];
    bool want_w = saved[1].requires_grad();
    torch::AutoGradMode on(true);
    auto w = saved[1].detach().requires_grad_(want_w);
    auto ct = matmul_dtype(w);
    auto cw = ct == w.scalar_type() ? w : w.to(ct);  // one converted copy for all chunks, as in forward
    auto grad_hidden = torch::zeros_like(hidden);
    torch::Tensor grad_cw;
    int64_t T = hidden.size(1);
    for (int64_t s = 0; s < T; s += st->chunk) {
      int64_t n = std::min(st->chunk, T - s);
      auto hc = hidden.narrow(1, s, n).detach().requires_grad_(true);
      auto outs = st->fn(hc, cw, s, n);
      std::vector<torch::Tensor> ys, gs;
      for (size_t i = 0; i < outs.size(); ++i)
        if (outs[i].requires_grad() && grad_out[i].defined()) {
          ys.push_back(outs[i]);
          gs.push_back(grad_out[i].narrow(-1, s, n));
        }
      if (ys.empty()) continue;
      std::vector<torch::Tensor> xs = {hc};
      if (want_w) xs.push_back(cw);
      auto g = torch::autograd::grad(ys, xs, gs, /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true);
      if (g[0].defined()) grad_hidden.narrow(1, s, n).copy_(g[0]);
      if (want_w && g[1].defined()) grad_cw = grad_cw.defined() ? grad_cw.add_(g[1]) : g[1];
    }
    torch::Tensor grad_w;
    if (want_w && grad_cw.defined()) grad_w = grad_cw.to(w.scalar_type());  // the upcast's backward is a downcast
    return {grad_hidden, grad_w, torch::Tensor()};
  }
};

}  // namespace

std::vector<torch::Tensor> head_chunks(Transformer& model, const torch::Tensor& hidden, int64_t chunk,
                                       const HeadChunkFn& fn) {
  auto st = c10::make_intrusive<HeadChunkState>();
  st->chunk = std::max<int64_t>(1, chunk);
  st->fn = fn;
  auto w = model->lm_head_weight();
  if (hidden.size(1) == 0) fail("head_chunks: no positions");
  if (torch::GradMode::is_enabled() && (hidden.requires_grad() || w.requires_grad()))
    return RecomputedHead::apply(hidden, w, st);
  // No autograd: the head's stored weights are read as they are (the few-rows kernel reads bf16 directly).
  return run_chunks(*st, hidden, torch::Tensor());
}

torch::Tensor token_logprobs_from_hidden(Transformer& model, const torch::Tensor& hidden,
                                         const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                         int64_t max_chunk_elements) {
  int64_t B = input_ids.size(0), T = input_ids.size(1);
  int64_t V = model->config.vocab_size;
  if (T < 2)
    return torch::zeros({B, 0},
                        torch::TensorOptions().dtype(accumulate_dtype(hidden.scalar_type())).device(hidden.device()));
  auto h = hidden.narrow(1, 0, T - 1);           // [B, T-1, H] predicts ids[1:]
  auto targets = input_ids.narrow(1, 1, T - 1);  // [B, T-1]
  auto valid = attention_mask.narrow(1, 1, T - 1).to(torch::kBool);
  int64_t chunk = std::max<int64_t>(1, max_chunk_elements / std::max<int64_t>(1, B * V));
  // fn outlives this call (backward runs it again): it holds its own references, never the caller's.
  auto lp = head_chunks(
      model, h, chunk,
      [model, targets](const torch::Tensor& hc, const torch::Tensor& cw, int64_t s, int64_t n) mutable {
        auto logits = (cw.defined() ? model->logits_from_hidden(hc, cw) : model->logits_from_hidden(hc))
                          .to(accumulate_dtype(hc.scalar_type()));  // [B, n, V]
        // log p = logit[target] - logsumexp(logits): never forms the full log_softmax tensor.
        auto tgt = targets.narrow(1, s, n).unsqueeze(-1);
        return std::vector<torch::Tensor>{logits.gather(-1, tgt).squeeze(-1) - torch::logsumexp(logits, -1)};
      })[0];
  return lp.masked_fill(valid.logical_not(), 0.0);
}

torch::Tensor token_logprobs(Transformer& model, const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                             int64_t max_chunk_elements) {
  auto hidden = model->hidden_states(input_ids, attention_mask);
  return token_logprobs_from_hidden(model, hidden, input_ids, attention_mask, max_chunk_elements);
}

LogpChunk vocab_logp_chunks(Transformer& model, const torch::Tensor& hidden) {
  auto cw = std::make_shared<torch::Tensor>();                // converted on the first call that needs autograd
  return [model, hidden, cw](int64_t s, int64_t n) mutable {  // by value: it may outlive the caller's handle
    auto hc = hidden.narrow(1, s, n);
    if (!torch::GradMode::is_enabled())
      return torch::log_softmax(model->logits_from_hidden(hc).to(accumulate_dtype(hc.scalar_type())), -1);
    if (!cw->defined()) *cw = model->lm_head_compute_weight();
    return torch::log_softmax(model->logits_from_hidden(hc, *cw).to(accumulate_dtype(hc.scalar_type())), -1);
  };
}

VocabTerms policy_vocab_terms(Transformer& policy, const torch::Tensor& hidden, const std::vector<LogpChunk>& refs,
                              const torch::Tensor& targets, const torch::Tensor& valid,
                              const std::vector<double>& alpha, const std::vector<double>& beta, int64_t chunk,
                              torch::Tensor* token_lp) {
  // By value: backward runs the function again after this call has returned.
  auto outs =
      head_chunks(policy, hidden, chunk,
                  [policy, refs, targets, alpha, beta](const torch::Tensor& hc, const torch::Tensor& cw, int64_t s,
                                                       int64_t n) mutable {
                    auto logits = cw.defined() ? policy->logits_from_hidden(hc, cw) : policy->logits_from_hidden(hc);
                    auto lp = torch::log_softmax(logits.to(accumulate_dtype(hc.scalar_type())), -1);  // [B, n, V]
                    std::vector<torch::Tensor> r;
                    {
                      torch::NoGradGuard constants;  // references never train: no graph, no fp32 copy of their heads
                      for (auto& f : refs) r.push_back(f(s, n));
                    }
                    auto tgt = targets.narrow(1, s, n);
                    auto t = vocab_terms(lp, r, tgt, alpha, beta);
                    return std::vector<torch::Tensor>{lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1),
                                                      t.kl_policy_ref,
                                                      t.kl_ref_policy,
                                                      t.kl_policy_geo,
                                                      t.neg_log_f,
                                                      t.log_geo_target,
                                                      t.log_arith_target};
                  });
  if (token_lp) *token_lp = outs[0].masked_fill(valid.logical_not(), 0.0);
  VocabTerms t;
  t.kl_policy_ref = outs[1];
  t.kl_ref_policy = outs[2];
  t.kl_policy_geo = outs[3];
  t.neg_log_f = outs[4];
  t.log_geo_target = outs[5];
  t.log_arith_target = outs[6];
  return t;
}

torch::Tensor token_logprobs_naive(Transformer& model, const torch::Tensor& input_ids,
                                   const torch::Tensor& attention_mask) {
  int64_t T = input_ids.size(1);
  auto logits = model->forward(input_ids, attention_mask);
  auto logp = torch::log_softmax(logits.to(accumulate_dtype(logits.scalar_type())), -1);  // [B, T, V]
  auto lp = logp.narrow(1, 0, T - 1).gather(-1, input_ids.narrow(1, 1, T - 1).unsqueeze(-1)).squeeze(-1);
  return lp.masked_fill(attention_mask.narrow(1, 1, T - 1).to(torch::kBool).logical_not(), 0.0);
}

}  // namespace multiref
