// `multiref theory`: closed-form optima, --verify and bad input, end to end through the binary.
#include <fstream>

#include "objectives/closed_form.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

TEST(TheoryCli, ClosedFormsVerifyAndBadInput) {
  TempDir tmp;
  std::string bin = multiref_binary();
  std::ofstream(tmp / "rkl.json") << R"({"kl_type":"rkl","gamma":0.5,"weights":[0.5,0.5],
      "refs":[[0.5,0.3,0.2,0.0],[0.1,0.2,0.3,0.4]],"rewards":[1.0,0.0,2.0,3.0]})";
  std::ofstream(tmp / "fkl.json") << R"({"kl_type":"fkl","gamma":0.5,"weights":[0.5,0.5],
      "refs":[[0.5,0.3,0.2,0.0],[0.1,0.2,0.3,0.4]],"rewards":[1.0,0.0,2.0,3.0]})";
  for (std::string f : {"rkl", "fkl"}) {
    auto r = run_command(bin + " theory --verify --input " + (tmp / f + ".json") + " --output " + (tmp / f + ".out"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(read_file(tmp / f + ".out"));
    EXPECT_LT(j["verify"]["total_variation"].get<double>(), 1e-5) << f;
    EXPECT_NEAR(j["verify"]["value"].get<double>(), j["value"].get<double>(), 1e-8) << f;
    EXPECT_EQ(j["kl"].size(), 2u);
    if (f == "rkl") {
      EXPECT_EQ(j["policy"][3].get<double>(), 0.0) << "outside the shared support";
      EXPECT_LT(j["log_F"].get<double>(), 0.0);
    } else {
      EXPECT_GT(j["lambda"].get<double>(), 3.0);
      EXPECT_LE(j["lambda"].get<double>(), 3.5);
    }
  }
  auto bad = [&](const std::string& text, const std::string& fragment) {
    std::ofstream(tmp / "bad.json") << text;
    auto r = run_command(bin + " theory --input " + (tmp / "bad.json"));
    EXPECT_NE(r.exit_code, 0) << text;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << fragment << " not in: " << r.output;
  };
  bad(R"({"kl_type":"rkl","gamma":0.5,"weights":[0.5],"refs":[[0.5,0.5],[0.5,0.5]],"rewards":[0,1]})",
      "1 weights given for 2");
  bad(R"({"kl_type":"rkl","gamma":-1,"weights":[1],"refs":[[0.5,0.5]],"rewards":[0,1]})", "gamma");
  bad(R"({"kl_type":"rkl","gamma":1,"weights":[0.5,0.5],"refs":[[1,0],[0,1]],"rewards":[0,1]})", "share no support");
  bad(R"({"kl_type":"rkl","gamma":1,"weights":[1.5,-0.5],"refs":[[1,0],[0,1]],"rewards":[0,1]})", ">= 0");
  bad(R"({"kl_type":"tv","gamma":1,"weights":[1],"refs":[[1,0]],"rewards":[0,1]})", "kl_type");
  bad(R"({"kl_type":"rkl","gamma":1,"weights":[1],"refs":[[1,0]]})", "missing \"rewards\"");
  bad(R"({"kl_type":"rkl", "gamma": )", "not valid JSON");
  bad(R"({"kl_type":"rkl","gamma":"one","weights":[1],"refs":[[1,0]],"rewards":[0,1]})", "wrong type");
}
