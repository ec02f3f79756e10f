// model/flat_parameters.h: a model's parameters (and an optimizer's state) as views of one allocation. The values,
// the forward, the gradients and an optimizer step must be those of separately allocated tensors.
#include "io/hf_model.h"
#include "model/flat_parameters.h"
#include "model/model_config.h"
#include "model/transformer.h"
#include "test_util.h"
#include "train/optimizer.h"

using namespace multiref;
using namespace multiref::testing;

TEST(FlatTensors, ViewsOfOneBufferEachStartingAligned) {
  std::vector<std::vector<int64_t>> shapes = {{3, 5}, {7}, {2, 2, 2}, {1}};
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    auto v = flat_tensors(shapes, torch::TensorOptions().dtype(dtype), /*zero=*/true);
    ASSERT_EQ(v.size(), shapes.size());
    for (size_t i = 0; i < v.size(); ++i) {
      EXPECT_EQ(v[i].sizes().vec(), shapes[i]);
      EXPECT_TRUE(v[i].is_contiguous());
      EXPECT_EQ(v[i].scalar_type(), dtype);
      EXPECT_EQ((uintptr_t)v[i].data_ptr() % 64, 0u) << i;
      EXPECT_TRUE(v[i].storage().is_alias_of(v[0].storage())) << i;
      EXPECT_EQ(v[i].abs().sum().item<double>(), 0.0);
    }
    // Disjoint: writing one view leaves the others as they were.
    v[1].fill_(2.0);
    EXPECT_EQ(v[0].abs().sum().item<double>(), 0.0);
    EXPECT_EQ(v[2].abs().sum().item<double>(), 0.0);
    EXPECT_EQ(v[1].sum().item<double>(), 14.0);
  }
}

TEST(FlatParameters, PackedModelComputesWhatSeparateTensorsDo) {
  auto c = preset_config("qwen2", "tiny");
  Transformer packed(c, torch::TensorOptions());  // packed by its constructor
  init_weights(packed, 3);
  // The reference: the same values, every parameter in an allocation of its own.
  Transformer loose(c, torch::TensorOptions());
  init_weights(loose, 3);
  {
    torch::NoGradGuard ng;
    for (auto& p : loose->parameters()) p.set_data(p.detach().clone());
  }
  auto pp = packed->named_parameters(), lp = loose->named_parameters();
  ASSERT_EQ(pp.size(), lp.size());
  auto first = pp[0].value().storage();
  for (size_t i = 0; i < pp.size(); ++i) {
    EXPECT_TRUE(pp[i].value().storage().is_alias_of(first)) << pp[i].key() << " is not in the shared buffer";
    EXPECT_FALSE(lp[i].value().storage().is_alias_of(lp[0].value().storage()) && i > 0) << lp[i].key();
    EXPECT_TRUE(pp[i].value().requires_grad()) << pp[i].key();
    EXPECT_TRUE(torch::equal(pp[i].value(), lp[i].value())) << pp[i].key();
  }
  // pack_parameters again: a new single buffer, values kept.
  EXPECT_EQ(pack_parameters(*packed), 1);
  first = pp[0].value().storage();
  for (size_t i = 0; i < pp.size(); ++i) {
    EXPECT_TRUE(torch::equal(pp[i].value(), lp[i].value())) << pp[i].key();
    EXPECT_TRUE(pp[i].value().storage().is_alias_of(first)) << pp[i].key();
  }
  // Forward, backward and an AdamW step agree bit for bit.
  auto ids = torch::randint(0, c.vocab_size, {2, 9}, torch::kLong);
  auto mask = torch::ones({2, 9}, torch::kLong);
  AdamWConfig oc;
  oc.lr = 1e-2;
  AdamW opt_p(packed->named_parameters().pairs(), oc), opt_l(loose->named_parameters().pairs(), oc);
  for (int step = 0; step < 2; ++step) {
    auto yp = packed->forward(ids, mask), yl = loose->forward(ids, mask);
    EXPECT_TRUE(torch::equal(yp, yl)) << "step " << step;
    yp.pow(2).mean().backward();
    yl.pow(2).mean().backward();
    for (size_t i = 0; i < pp.size(); ++i) {
      ASSERT_TRUE(pp[i].value().grad().defined()) << pp[i].key();
      EXPECT_TRUE(torch::equal(pp[i].value().grad(), lp[i].value().grad())) << pp[i].key();
    }
    opt_p.step(oc.lr);
    opt_l.step(oc.lr);
    opt_p.zero_grad();
    opt_l.zero_grad();
    for (size_t i = 0; i < pp.size(); ++i) {
      EXPECT_TRUE(torch::equal(pp[i].value(), lp[i].value())) << pp[i].key() << " after step " << step;
      EXPECT_TRUE(pp[i].value().storage().is_alias_of(first)) << pp[i].key() << " left the buffer";
    }
  }
  EXPECT_EQ(opt_p.state_bytes(), opt_l.state_bytes());
}

TEST(FlatParameters, MixedDtypesGetOneBufferEach) {
  auto c = preset_config("qwen2", "tiny");
  Transformer m(c, torch::TensorOptions());
  init_weights(m, 1);
  {
    torch::NoGradGuard ng;
    auto norm = m->model->norm->weight;
    norm.set_data(norm.detach().to(torch::kFloat64));
  }
  auto before = m->named_parameters();
  std::vector<torch::Tensor> values;
  for (auto& p : before) values.push_back(p.value().detach().clone());
  EXPECT_EQ(pack_parameters(*m), 2);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i].value(), values[i])) << before[i].key();
  EXPECT_EQ(m->model->norm->weight.scalar_type(), torch::kFloat64);
}
