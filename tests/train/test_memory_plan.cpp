// --print_memory_plan's arithmetic against hand-computed figures for Qwen2.5-0.5B (494,032,768 parameters, as its
// model card and HF's num_parameters() report).
#include "test_util.h"
#include "train/memory_plan.h"

using namespace multiref;

TEST(MemoryPlan, Qwen05BWithAndWithoutZero1) {
  ModelConfig q;
  q.family = ModelFamily::Qwen2;
  q.vocab_size = 151936;
  q.hidden_size = 896;
  q.intermediate_size = 4864;
  q.num_hidden_layers = 24;
  q.num_attention_heads = 14;
  q.num_key_value_heads = 2;
  q.head_dim = 64;
  q.qkv_bias = true;
  q.tie_word_embeddings = true;
  const double P = 494032768;
  ASSERT_EQ(q.num_parameters(), (int64_t)P);
  MemoryPlanInput in;
  in.policy = q;
  in.references = {q, q};
  in.weight_bytes = 2;
  auto rows = memory_plan(in, {1, 2, 8});
  ASSERT_EQ(rows.size(), 5u);  // 1; 2 without and with ZeRO-1; 8 without and with
  EXPECT_EQ(rows[0].world, 1);
  EXPECT_DOUBLE_EQ(rows[0].weights, 2 * P);
  EXPECT_DOUBLE_EQ(rows[0].gradients, 2 * P);
  EXPECT_DOUBLE_EQ(rows[0].optimizer, 12 * P);  // fp32 master + two fp32 moments
  EXPECT_DOUBLE_EQ(rows[0].references, 4 * P);
  EXPECT_FALSE(rows[1].zero1);
  EXPECT_DOUBLE_EQ(rows[1].optimizer, 12 * P);
  EXPECT_TRUE(rows[2].zero1);
  EXPECT_DOUBLE_EQ(rows[2].optimizer, 6 * P);
  EXPECT_EQ(rows[4].world, 8);
  EXPECT_DOUBLE_EQ(rows[4].optimizer, 1.5 * P);
  EXPECT_DOUBLE_EQ(rows[4].total(), 2 * P + 2 * P + 1.5 * P + 4 * P);
  // float32 weights: no master copy.
  in.weight_bytes = 4;
  EXPECT_DOUBLE_EQ(memory_plan(in, {1})[0].optimizer, 8 * P);
  auto table = memory_plan_table(in);
  EXPECT_NE(table.find("ranks  zero"), std::string::npos) << table;
  EXPECT_NE(table.find("policy 0.5B parameters, reference 0.5B, reference 0.5B, weights float32"), std::string::npos)
      << table;
}
