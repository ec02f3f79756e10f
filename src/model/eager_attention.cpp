#include "model/eager_attention.h"

#include <limits>

namespace multiref {

namespace {

torch::ScalarType softmax_dtype(torch::ScalarType t) {
  return t == torch::kBFloat16 || t == torch::kFloat16 ? torch::kFloat32 : t;
}

// [B, KV, R*T, S]: the attention probabilities in the softmax's dtype (fp32 for half-precision q), before rounding.
torch::Tensor probabilities(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& allowed,
                            double scale) {
  int64_t B = q.size(0), KV = q.size(1), RT = q.size(2), S = k.size(2), T = allowed.size(2), R = RT / T;
  auto scores = torch::matmul(q, k.transpose(-1, -2)).view({B, KV, R, T, S}) * scale;
  scores = scores.masked_fill(allowed.unsqueeze(1).logical_not(), -std::numeric_limits<double>::infinity());
  return torch::softmax(scores, -1, softmax_dtype(q.scalar_type())).view({B, KV, RT, S});
}

// softmax(q k^T) v with the probabilities rounded to q's dtype, as HF.
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& allowed, double scale) {
  return torch::matmul(probabilities(q, k, allowed, scale).to(q.scalar_type()), v);
}

struct EagerAttention : torch::autograd::Function<EagerAttention> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& allowed, double scale) {
    ctx->save_for_backward({q, k, v, allowed});
    ctx->saved_data["scale"] = scale;
    return attend(q, k, v, allowed, scale);  // the probabilities die here
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &allowed = saved[3];
    double scale = ctx->saved_data["scale"].toDouble();
    auto dout = grads[0];                           // [B, KV, RT, D]
    auto pf = probabilities(q, k, allowed, scale);  // [B, KV, RT, S], recomputed (softmax dtype)
    auto p = pf.to(q.scalar_type());
    auto dv = torch::matmul(p.transpose(-1, -2), dout);  // [B, KV, S, D]
    auto dp = torch::matmul(dout, v.transpose(-1, -2));  // [B, KV, RT, S]
    // softmax's backward (ATen's own kernel, as autograd runs it), then the scale; masked scores get 0 (p = 0).
    auto ds = at::_softmax_backward_data(dp.to(pf.scalar_type()), pf, -1, pf.scalar_type()).to(q.scalar_type()) * scale;
    auto dq = torch::matmul(ds, k);                    // [B, KV, RT, D]
    auto dk = torch::matmul(ds.transpose(-1, -2), q);  // [B, KV, S, D]
    return {dq, dk, dv, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor eager_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& allowed, double scale) {
  bool grad = torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (!grad) return attend(q, k, v, allowed, scale);
  return EagerAttention::apply(q, k, v, allowed, scale);
}

torch::Tensor eager_attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                        const torch::Tensor& allowed, double scale) {
  return attend(q, k, v, allowed, scale);
}

}  // namespace multiref
