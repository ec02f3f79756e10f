#include "logprobs.h"

namespace multiref {

torch::Tensor token_logprobs_from_hidden(Transformer& model, const torch::Tensor& hidden,
                                         const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                         int64_t max_chunk_elements) {
  int64_t B = input_ids.size(0), T = input_ids.size(1);
  int64_t V = model->config.vocab_size;
  if (T < 2) return torch::zeros({B, 0}, torch::TensorOptions().dtype(torch::kFloat32).device(hidden.device()));
  auto h = hidden.narrow(1, 0, T - 1);                   // [B, T-1, H] predicts ids[1:]
  auto targets = input_ids.narrow(1, 1, T - 1);          // [B, T-1]
  auto valid = attention_mask.narrow(1, 1, T - 1).to(torch::kBool);
  int64_t chunk = std::max<int64_t>(1, max_chunk_elements / std::max<int64_t>(1, B * V));
  std::vector<torch::Tensor> parts;
  // One compute-dtype copy of the head for all chunks (see lm_head_compute_weight); without autograd the
  // per-chunk path may take the small-rows kernel, which reads bf16 directly.
  bool grad = torch::GradMode::is_enabled();
  auto cw = grad ? model->lm_head_compute_weight() : torch::Tensor();
  for (int64_t s = 0; s < T - 1; s += chunk) {
    int64_t n = std::min(chunk, T - 1 - s);
    auto hc = h.narrow(1, s, n);
    auto logits = (grad ? model->logits_from_hidden(hc, cw) : model->logits_from_hidden(hc)).to(torch::kFloat32);  // [B, n, V]
    auto tgt = targets.narrow(1, s, n).unsqueeze(-1);
    // log p = logit[target] - logsumexp(logits): never forms the full log_softmax tensor.
    parts.push_back(logits.gather(-1, tgt).squeeze(-1) - torch::logsumexp(logits, -1));
  }
  auto lp = parts.size() == 1 ? parts[0] : torch::cat(parts, 1);
  return lp.masked_fill(valid.logical_not(), 0.0);
}

torch::Tensor token_logprobs(Transformer& model, const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                             int64_t max_chunk_elements) {
  auto hidden = model->hidden_states(input_ids, attention_mask);
  return token_logprobs_from_hidden(model, hidden, input_ids, attention_mask, max_chunk_elements);
}

LogpChunk vocab_logp_chunks(Transformer& model, const torch::Tensor& hidden) {
  auto cw = model->lm_head_compute_weight();
  return [&model, hidden, cw](int64_t s, int64_t n) {
    return torch::log_softmax(model->logits_from_hidden(hidden.narrow(1, s, n), cw).to(torch::kFloat32), -1);
  };
}

torch::Tensor token_logprobs_naive(Transformer& model, const torch::Tensor& input_ids,
                                   const torch::Tensor& attention_mask) {
  int64_t T = input_ids.size(1);
  auto logp = torch::log_softmax(model->forward(input_ids, attention_mask).to(torch::kFloat32), -1);  // [B, T, V]
  auto lp = logp.narrow(1, 0, T - 1).gather(-1, input_ids.narrow(1, 1, T - 1).unsqueeze(-1)).squeeze(-1);
  return lp.masked_fill(attention_mask.narrow(1, 1, T - 1).to(torch::kBool).logical_not(), 0.0);
}

}  // namespace multiref
