#include "model/transformer.h"

#include <cmath>

#include "kernels/cpu_decode_attention.h"
#include "kernels/cpu_small_matmul.h"
#include "kernels/matmul_dtype.h"
#include "model/eager_attention.h"
#include "model/flat_parameters.h"
#include "model/kv_cache.h"
#include "util/common.h"

namespace multiref {

LinearImpl::LinearImpl(int64_t in, int64_t out, bool has_bias, const torch::TensorOptions& opts) {
  weight = register_parameter("weight", torch::empty({out, in}, opts));
  if (has_bias) bias = register_parameter("bias", torch::empty({out}, opts));
}

torch::ScalarType compute_dtype(const torch::Tensor& t) {
  auto s = t.scalar_type();
  return t.is_cpu() && (s == torch::kBFloat16 || s == torch::kFloat16) ? torch::kFloat32 : s;
}

namespace {

struct LowPrecisionLinear : torch::autograd::Function<LowPrecisionLinear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b) {
    ctx->save_for_backward({x, w, b});
    // Autograd is off in here: the fp32 copies die with the call.
    return low_precision_linear_oracle(x, w, b.numel() ? b : torch::Tensor());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &b = saved[2];  // b: [N], or [0] for no bias
    auto ct = matmul_dtype(w);
    auto gy = grad_out[0].to(ct);  // [..., N]
    torch::Tensor gx, gw, gb;
    if (x.requires_grad()) gx = torch::matmul(gy, w.to(ct)).to(x.scalar_type());
    if (w.requires_grad()) {
      auto gy2 = gy.reshape({-1, gy.size(-1)}), x2 = x.reshape({-1, x.size(-1)}).to(ct);
      gw = torch::mm(gy2.t(), x2).to(w.scalar_type());  // [N, K]
    }
    if (b.numel() && b.requires_grad()) gb = gy.reshape({-1, gy.size(-1)}).sum(0).to(b.scalar_type());
    return {gx, gw, gb};
  }
};

}  // namespace

torch::Tensor low_precision_linear_oracle(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  auto ct = matmul_dtype(w);
  return torch::linear(x.to(ct), w.to(ct), b.defined() ? b.to(ct) : b).to(x.scalar_type());
}

torch::Tensor low_precision_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  bool grad =
      torch::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad()));
  // An undefined tensor cannot pass through a custom Function's apply in LibTorch 1.13: no bias is an empty one.
  return grad ? LowPrecisionLinear::apply(x, w, b.defined() ? b : torch::empty({0}, w.options()))
              : low_precision_linear_oracle(x, w, b);
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  // A few rows (decoding) stream the weights once instead (cpu_small_matmul.h); still fp32 arithmetic.
  auto few = small_rows_linear(x, weight, bias);
  if (few.defined()) return few.to(x.scalar_type());
  if (matmul_dtype(weight) == weight.scalar_type()) return torch::linear(x, weight, bias);
  return low_precision_linear(x, weight, bias);
}

std::vector<torch::Tensor> linear_group(const torch::Tensor& x, const std::vector<LinearImpl*>& layers) {
  std::vector<torch::Tensor> ws, bs;
  for (auto* l : layers) {
    ws.push_back(l->weight);
    bs.push_back(l->bias);
  }
  auto few = small_rows_linear_group(x, ws, bs);
  if (few.empty()) {
    for (auto* l : layers) few.push_back(l->forward(x));
    return few;
  }
  for (auto& y : few) y = y.to(x.scalar_type());
  return few;
}

EmbeddingImpl::EmbeddingImpl(int64_t num, int64_t dim, const torch::TensorOptions& opts) {
  weight = register_parameter("weight", torch::empty({num, dim}, opts));
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, const torch::TensorOptions& opts) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, opts));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // HF: normalize in fp32, cast back, then scale in the activation dtype.
  auto xf = x.to(accumulate_dtype(x.scalar_type()));
  auto y = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * y.to(x.scalar_type());
}

RotaryEmbedding::RotaryEmbedding(const ModelConfig& c) {
  int64_t half = c.head_dim / 2;
  std::vector<float> f(half);
  for (int64_t i = 0; i < half; ++i) {
    // HF: 1 / theta^(arange(0, d, 2) / d) evaluated in fp32
    float expo = (float)(2 * i) / (float)c.head_dim;
    double inv = 1.0 / std::pow((double)(float)c.rope_theta, (double)expo);
    if (c.rope_scaling) {
      // transformers' _compute_llama3_parameters: long wavelengths are slowed by `factor`, short ones kept,
      // the band in between interpolated.
      const auto& s = *c.rope_scaling;
      double old_ctx = (double)s.original_max_position_embeddings;
      double low_wl = old_ctx / s.low_freq_factor, high_wl = old_ctx / s.high_freq_factor;
      double wl = 2 * M_PI / (double)(float)inv;
      if (wl > low_wl) {
        inv = inv / s.factor;
      } else if (wl >= high_wl) {
        double smooth = (old_ctx / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        inv = (1 - smooth) * inv / s.factor + smooth * inv;
      }
    }
    f[i] = (float)inv;
  }
  inv_freq = torch::tensor(f, torch::kFloat32);
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::operator()(const torch::Tensor& positions,
                                                                    torch::ScalarType dtype) const {
  auto inv = inv_freq.to(positions.device());
  auto at = accumulate_dtype(dtype);
  auto freqs = positions.to(at).unsqueeze(-1) * inv.to(at);  // [B, T, D/2]
  auto emb = torch::cat({freqs, freqs}, -1);                 // [B, T, D]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

static torch::Tensor rotate_half(const torch::Tensor& x) {
  int64_t h = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

torch::Tensor causal_attention_mask(const torch::Tensor& key_mask, int64_t T) {
  int64_t S = key_mask.size(1);
  auto dev = key_mask.device();
  auto q_pos = torch::arange(S - T, S, torch::TensorOptions().dtype(torch::kLong).device(dev)).view({T, 1});
  auto k_pos = torch::arange(S, torch::TensorOptions().dtype(torch::kLong).device(dev)).view({1, S});
  auto causal = k_pos.le(q_pos);                                                // [T, S]
  auto allowed = causal.unsqueeze(0) & key_mask.to(torch::kBool).unsqueeze(1);  // [B, T, S]
  allowed = allowed | k_pos.eq(q_pos).unsqueeze(0);
  return allowed.unsqueeze(1);  // [B, 1, T, S]
}

AttentionImpl::AttentionImpl(const ModelConfig& c, const torch::TensorOptions& opts)
    : n_heads(c.num_attention_heads), n_kv(c.num_key_value_heads), head_dim(c.head_dim) {
  int64_t h = c.hidden_size;
  q_proj = register_module("q_proj", Linear(h, n_heads * head_dim, c.qkv_bias, opts));
  k_proj = register_module("k_proj", Linear(h, n_kv * head_dim, c.qkv_bias, opts));
  v_proj = register_module("v_proj", Linear(h, n_kv * head_dim, c.qkv_bias, opts));
  o_proj = register_module("o_proj", Linear(n_heads * head_dim, h, c.o_bias, opts));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                     const torch::Tensor& allowed, KVCache* cache, int64_t layer) {
  int64_t B = x.size(0), T = x.size(1), R = n_heads / n_kv, D = head_dim;
  auto qkv = linear_group(x, {q_proj.get(), k_proj.get(), v_proj.get()});
  auto q = qkv[0].view({B, T, n_heads, D}).transpose(1, 2);  // [B, H, T, D]
  auto k = qkv[1].view({B, T, n_kv, D}).transpose(1, 2);     // [B, KV, T, D]
  auto v = qkv[2].view({B, T, n_kv, D}).transpose(1, 2);     // [B, KV, T, D]
  auto ct = compute_dtype(x);                                // bf16 attention on CPU runs in fp32 (see compute_dtype)
  if (ct != x.scalar_type()) {
    q = q.to(ct);
    k = k.to(ct);
    v = v.to(ct);
  }
  auto c = cos.unsqueeze(1).to(ct), s = sin.unsqueeze(1).to(ct);  // [B, 1, T, D]
  q = q * c + rotate_half(q) * s;
  k = k * c + rotate_half(k) * s;
  // Cached: keys/values become every position so far, [B, KV, S, D] with S = cached length + T.
  if (cache) std::tie(k, v) = cache->update(layer, k, v);
  if (cache && T == 1) {  // decoding: one pass over the cache per KV head (cpu_decode_attention.h)
    auto fused = decode_attention(q, k, v, allowed, 1.0 / std::sqrt((double)D));
    if (fused.defined()) return o_proj->forward(fused.transpose(1, 2).reshape({B, T, n_heads * D}).to(x.scalar_type()));
  }
  torch::Tensor out;
  // Query head h uses KV head h / R (HF repeat_kv). Folding the R query heads of each KV head into the
  // row dimension (row r*T + t = query t of head kv*R + r) lets one batched matmul serve them all without
  // copying K and V R times, which with a cache would copy the whole cache at every decode step.
  auto qg = q.reshape({B, n_kv, R * T, D});
#if TORCH_VERSION_MAJOR >= 2
  // Fused attention (flash / memory-efficient kernels on GPU); each folded row gets its query's mask.
  auto rows_allowed = R == 1 ? allowed : allowed.repeat({1, 1, R, 1});  // [B, 1, R*T, S]
  out = at::scaled_dot_product_attention(qg, k, v, rows_allowed).reshape({B, n_heads, T, D});
#else
  // Softmax in fp32 as HF; in training the probabilities are recomputed in backward, not kept (eager_attention.h).
  out = eager_attention(qg, k, v, allowed, 1.0 / std::sqrt((double)D)).view({B, n_heads, T, D});
#endif
  return o_proj->forward(out.transpose(1, 2).reshape({B, T, n_heads * D}).to(x.scalar_type()));
}

MLPImpl::MLPImpl(const ModelConfig& c, const torch::TensorOptions& opts) {
  int64_t h = c.hidden_size, m = c.intermediate_size;
  gate_proj = register_module("gate_proj", Linear(h, m, c.mlp_bias, opts));
  up_proj = register_module("up_proj", Linear(h, m, c.mlp_bias, opts));
  down_proj = register_module("down_proj", Linear(m, h, c.mlp_bias, opts));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  auto gate_up = linear_group(x, {gate_proj.get(), up_proj.get()});
  return down_proj->forward(torch::silu(gate_up[0]) * gate_up[1]);
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, const torch::TensorOptions& opts) {
  self_attn = register_module("self_attn", Attention(c, opts));
  mlp = register_module("mlp", MLP(c, opts));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, opts));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, opts));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                        const torch::Tensor& allowed, KVCache* cache, int64_t layer) {
  auto h = x + self_attn->forward(input_layernorm->forward(x), cos, sin, allowed, cache, layer);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

namespace {

// A layer whose forward keeps nothing but its input: backward re-runs the layer with autograd on and
// back-propagates through the recomputed graph (a reentrant backward, as torch.utils.checkpoint's original
// form). Parameter gradients accumulate into .grad there, which is what optimizers read; the layer has no
// randomness (no dropout), so the recomputation is exact.
struct CheckpointedLayer : torch::autograd::Function<CheckpointedLayer> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin, const torch::Tensor& allowed, DecoderLayerImpl* layer) {
    ctx->save_for_backward({x, cos, sin, allowed});
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    return layer->forward(x, cos, sin, allowed);  // autograd is off inside a Function's forward
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    auto x = saved[0].detach().requires_grad_(true);
    torch::Tensor y;
    {
      torch::AutoGradMode on(true);
      y = layer->forward(x, saved[1], saved[2], saved[3]);
    }
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

DecoderImpl::DecoderImpl(const ModelConfig& c, const torch::TensorOptions& opts) : rope(c) {
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, opts));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DecoderLayer(c, opts));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps, opts));
}

torch::Tensor DecoderImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                   KVCache* cache) {
  int64_t T = input_ids.size(1);
  auto mask = attention_mask.to(torch::kLong);
  torch::Tensor key_mask, positions;  // [B, S], [B, T]
  if (cache) {
    std::tie(key_mask, positions) = cache->begin_step(mask);
  } else {
    key_mask = mask;
    positions = (mask.cumsum(1) - 1).clamp_min(0);
  }
  auto x = embed_tokens->forward(input_ids);  // [B, T, H]
  auto [cos, sin] = rope(positions, x.scalar_type());
  auto allowed = causal_attention_mask(key_mask, T);  // [B, 1, T, S]
  int64_t i = 0;
  // Checkpointing needs an input that carries gradient (the embeddings are trained), else the layers'
  // parameters would be cut off from the loss.
  bool checkpoint = gradient_checkpointing && !cache && torch::GradMode::is_enabled() && x.requires_grad();
  for (auto& m : *layers) {
    auto* layer = m->as<DecoderLayerImpl>();
    x = checkpoint ? CheckpointedLayer::apply(x, cos, sin, allowed, layer)
                   : layer->forward(x, cos, sin, allowed, cache, i);
    ++i;
  }
  if (cache) cache->end_step();
  return norm->forward(x);
}

TransformerImpl::TransformerImpl(const ModelConfig& c, const torch::TensorOptions& opts) : config(c) {
  model = register_module("model", Decoder(c, opts));
  if (c.head == ModelHead::SequenceClassification) {
    score = register_module("score", Linear(c.hidden_size, c.num_labels, false, opts));
  } else if (!c.tie_word_embeddings) {
    lm_head = register_module("lm_head", Linear(c.hidden_size, c.vocab_size, false, opts));
  }
  pack_parameters(*this);  // one allocation for the weights (model/flat_parameters.h says why)
}

torch::Tensor TransformerImpl::hidden_states(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                             KVCache* cache) {
  if (input_ids.dim() != 2) fail("input_ids must be [batch, time], got ", input_ids.sizes());
  if (attention_mask.sizes() != input_ids.sizes()) fail("attention_mask must have the shape of input_ids");
  return model->forward(input_ids, attention_mask, cache);
}

torch::Tensor TransformerImpl::lm_head_weight() const {
  if (config.head != ModelHead::CausalLM) fail("a sequence-classification model has no LM head");
  return config.tie_word_embeddings ? model->embed_tokens->weight : lm_head->weight;
}

torch::Tensor TransformerImpl::logits_from_hidden(const torch::Tensor& hidden) {
  auto w = lm_head_weight();
  auto few = small_rows_linear(hidden, w, torch::Tensor());
  if (few.defined()) return few.to(w.scalar_type());
  auto ct = matmul_dtype(w);
  if (ct == w.scalar_type()) return torch::matmul(hidden, w.t());
  return torch::matmul(hidden.to(ct), w.to(ct).t()).to(w.scalar_type());
}

torch::Tensor TransformerImpl::logits_fp32_from_hidden(const torch::Tensor& hidden, const torch::Tensor& into) {
  auto w = lm_head_weight();
  auto few = small_rows_linear(hidden, w, torch::Tensor(), {into, /*round_to_weight_dtype=*/true});
  if (few.defined()) return few;  // the kernel takes fp32 and bf16 weights only: rounded to them in its store
  auto logits = logits_from_hidden(hidden).to(accumulate_dtype(hidden.scalar_type()));
  return into.defined() ? into.copy_(logits) : logits;
}

torch::Tensor TransformerImpl::lm_head_compute_weight() {
  auto w = lm_head_weight();
  auto ct = matmul_dtype(w);
  return ct == w.scalar_type() ? w : w.to(ct);
}

torch::Tensor TransformerImpl::logits_from_hidden(const torch::Tensor& hidden, const torch::Tensor& compute_weight) {
  auto dt = lm_head_weight().scalar_type();
  return torch::matmul(hidden.to(compute_weight.scalar_type()), compute_weight.t()).to(dt);
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  return logits_from_hidden(hidden_states(input_ids, attention_mask));
}

torch::Tensor TransformerImpl::sequence_scores(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  if (config.head != ModelHead::SequenceClassification) fail("sequence_scores needs a sequence-classification model");
  auto h = hidden_states(input_ids, attention_mask);  // [B, T, H]
  int64_t T = input_ids.size(1);
  // The last non-pad position of each row, whichever side the padding is on.
  auto idx = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(h.device()));
  auto last = (idx.unsqueeze(0) * attention_mask.to(torch::kLong)).argmax(1);  // [B]
  auto rows = torch::arange(h.size(0), torch::TensorOptions().dtype(torch::kLong).device(h.device()));
  return score->forward(h.index({rows, last})).to(accumulate_dtype(h.scalar_type()));
}

}  // namespace multiref
