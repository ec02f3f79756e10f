#include "eval/task_rewards.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cmath>

#include "data/reward_program.h"
#include "data/rewards.h"
#include "model/reward_model.h"
#include "util/common.h"
#include "util/unicode.h"

namespace multiref {

namespace {

const std::vector<std::string>& builtin_names() {
  static const std::vector<std::string> names = {"gsm8k_xml", "gsm8k_answer", "exact_match", "length_penalty"};
  return names;
}

bool is_builtin(const std::string& s) {
  for (auto& n : builtin_names())
    if (s == n) return true;
  return false;
}

// One compiled PCRE2 pattern, searched (not anchored) in UTF mode with Unicode properties.
class Regex {
 public:
  explicit Regex(const std::string& pattern) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code_ = pcre2_compile((PCRE2_SPTR)pattern.c_str(), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    if (!code_) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof buf);
      fail("--reward regex:", pattern, ": the pattern does not compile at offset ", off, ": ", (const char*)buf);
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // the interpreter where JIT is unavailable
    match_ = pcre2_match_data_create_from_pattern(code_, nullptr);
  }
  ~Regex() {
    pcre2_match_data_free(match_);
    pcre2_code_free(code_);
  }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  bool search(const std::string& text) const {
    std::string valid = utf8_lossy(text);  // PCRE2_UTF rejects invalid UTF-8; Python only ever sees decoded text
    int rc = pcre2_match(code_, (PCRE2_SPTR)valid.c_str(), valid.size(), 0, 0, match_, nullptr);
    if (rc >= 0) return true;
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(rc, buf, sizeof buf);
    fail("--reward regex: matching failed: ", (const char*)buf);
  }

 private:
  pcre2_code* code_ = nullptr;
  pcre2_match_data* match_ = nullptr;
};

enum class Kind { Gsm8kXml, Gsm8kAnswer, ExactMatch, Regex, LengthPenalty, Model, Program };

// The name a reward model's metric gets: a hub id as given, a directory by its last component.
std::string model_reward_name(const std::string& id) {
  std::string s = id;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  if (dir_exists(s)) {
    auto slash = s.find_last_of('/');
    if (slash != std::string::npos) s = s.substr(slash + 1);
  }
  return s;
}

const std::string& row_answer(const TaskCompletion& c, const char* reward) {
  const auto& row = c.prompt->row;
  auto it = row->row.find("answer");
  if (it == row->row.end() || !it->is_string())
    fail(row->where, ": --reward ", reward, " compares the completion with the row's \"answer\" string, and this row ",
         it == row->row.end() ? "has none" : std::string("has a ") + it->type_name());
  return it->get_ref<const std::string&>();
}

}  // namespace

void RewardFlags::register_reward_flags(FlagTable& t) {
  t.add("reward", &reward,
        "built-in rewards, comma-separated: gsm8k_xml (the paper code's five functions), gsm8k_answer (numeric "
        "match), exact_match (stripped completion == the row's \"answer\"), regex:PATTERN (1 if PCRE2 finds it), "
        "length_penalty (-tokens / max_completion_length). Default: gsm8k_xml on GSM8K data when no other reward "
        "is given");
  t.add("reward_weights", &reward_weights,
        "one weight per reward, in the order --reward names, --reward_model models, --reward_program (default 1 "
        "each); the reward is their weighted sum");
  t.add("reward_model", &reward_model,
        "a *ForSequenceClassification reward model scoring prompt + completion with its own tokenizer and chat "
        "template (repeatable)");
  t.add("reward_program", &reward_program,
        "a command (run through /bin/sh -c, once) reading one JSON request per line on stdin and answering "
        "{\"reward\": r} per line (see the README)");
  t.add("reward_timeout", &reward_timeout, "seconds the reward program may take for one answer");
  t.add("reward_batch_size", &reward_batch_size, "sequences per reward-model forward pass");
}

std::vector<std::string> split_reward_names(const std::string& flag) {
  std::vector<std::string> out;
  for (auto& piece : split(flag, ',')) {
    auto p = trim(piece);
    bool starts_new = is_builtin(p) || p.rfind("regex:", 0) == 0;
    if (!out.empty() && out.back().rfind("regex:", 0) == 0 && !starts_new)
      out.back() += "," + piece;  // a comma of the pattern
    else
      out.push_back(p);
  }
  return out;
}

void RewardFlags::validate_reward_flags() const {
  size_t count = 0;
  if (!reward.empty()) {
    std::vector<std::string> seen;
    for (auto& n : split_reward_names(reward)) {
      if (n.rfind("regex:", 0) == 0) {
        if (n.size() == 6) fail("--reward regex: needs a pattern after the colon, e.g. regex:\\\\boxed\\{");
        Regex check(n.substr(6));
      } else if (!is_builtin(n)) {
        fail("--reward '", n, "': expected gsm8k_xml, gsm8k_answer, exact_match, regex:PATTERN or length_penalty",
             " (reward models go in --reward_model, anything else in --reward_program)");
      }
      for (auto& s : seen)
        if (s == n) fail("--reward ", n, " is given twice");
      seen.push_back(n);
      ++count;
    }
  }
  count += reward_model.size() + (reward_program.empty() ? 0 : 1);
  if (!reward_weights.empty() && reward_weights.size() != count)
    fail("--reward_weights has ", reward_weights.size(), " weights for ", count,
         " rewards (one per --reward name, then per --reward_model, then the --reward_program)");
  for (double w : reward_weights)
    if (!std::isfinite(w)) fail("--reward_weights must be finite numbers");
  if (!(reward_timeout > 0)) fail("--reward_timeout must be > 0 seconds, got ", reward_timeout);
  if (reward_batch_size < 1) fail("--reward_batch_size must be >= 1, got ", reward_batch_size);
}

struct TaskRewards::Impl {
  struct One {
    Kind kind;
    std::string name;
    std::unique_ptr<Regex> regex;
    std::unique_ptr<RewardModel> model;
    std::unique_ptr<RewardProgram> program;
  };
  std::vector<One> rewards;
  std::vector<std::string> names;
  std::vector<double> weights;
  int64_t max_completion_length = 1;
  int64_t batch_size = 16;
};

TaskRewards::TaskRewards(const RewardFlags& f, bool has_text, int64_t max_completion_length, torch::ScalarType dtype,
                         torch::Device dev)
    : impl_(std::make_unique<Impl>()) {
  f.validate_reward_flags();
  auto& I = *impl_;
  I.max_completion_length = std::max<int64_t>(1, max_completion_length);
  I.batch_size = f.reward_batch_size;
  auto needs_text = [&](const std::string& what) {
    if (!has_text)
      fail(what, " reads the completion's text, and the policy has no tokenizer; give the reward as a ",
           "--reward_program (it receives the token ids)");
  };
  if (!f.reward.empty())
    for (auto& n : split_reward_names(f.reward)) {
      Impl::One one;
      one.name = n;
      if (n == "gsm8k_xml") one.kind = Kind::Gsm8kXml;
      if (n == "gsm8k_answer") one.kind = Kind::Gsm8kAnswer;
      if (n == "exact_match") one.kind = Kind::ExactMatch;
      if (n == "length_penalty") one.kind = Kind::LengthPenalty;
      if (n.rfind("regex:", 0) == 0) {
        one.kind = Kind::Regex;
        one.regex = std::make_unique<Regex>(n.substr(6));
      }
      if (one.kind != Kind::LengthPenalty) needs_text("--reward " + n);
      I.rewards.push_back(std::move(one));
    }
  for (auto& id : f.reward_model) {
    needs_text("--reward_model " + id);
    Impl::One one;
    one.kind = Kind::Model;
    one.name = model_reward_name(id);
    one.model = std::make_unique<RewardModel>(load_reward_model(id, dtype, dev));
    if (!one.model->tok)
      fail("--reward_model ", id, ": the reward model has no tokenizer to read the completions with");
    I.rewards.push_back(std::move(one));
  }
  if (!f.reward_program.empty()) {
    Impl::One one;
    one.kind = Kind::Program;
    one.name = "program";
    one.program = std::make_unique<RewardProgram>(f.reward_program, f.reward_timeout);
    I.rewards.push_back(std::move(one));
  }
  if (I.rewards.empty()) fail("no reward: give --reward, --reward_model or --reward_program");
  for (auto& r : I.rewards) {
    for (auto& n : I.names)
      if (n == r.name) r.name += "_" + std::to_string(I.names.size());  // two models of one name
    I.names.push_back(r.name);
  }
  I.weights = f.reward_weights.empty() ? std::vector<double>(I.rewards.size(), 1.0) : f.reward_weights;
}

TaskRewards::~TaskRewards() = default;

const std::vector<std::string>& TaskRewards::names() const {
  return impl_->names;
}
const std::vector<double>& TaskRewards::weights() const {
  return impl_->weights;
}

RewardScores TaskRewards::score(const std::vector<TaskCompletion>& cs) {
  auto& I = *impl_;
  RewardScores out;
  out.names = I.names;
  const size_t N = cs.size();
  std::map<std::string, double> parts;  // the GSM8K rewards' functions, by their metric names (rewards/xmlcount, ...)
  for (auto& r : I.rewards) {
    std::vector<double> v(N, 0.0);
    if (r.kind == Kind::Model) {
      std::vector<std::vector<ChatMessage>> convs;
      std::vector<std::string> where;
      for (auto& c : cs) {
        auto conv = c.prompt->turns;
        conv.push_back({"assistant", *c.text});
        convs.push_back(std::move(conv));
        where.push_back(c.prompt->row->where);
      }
      v = score_conversations(*r.model, convs, I.batch_size, where);
    } else if (r.kind == Kind::Program) {
      std::vector<nlohmann::json> requests;
      for (auto& c : cs) {
        nlohmann::json q = {{"prompt_ids", c.prompt->ids}, {"completion_ids", *c.ids}};
        if (c.prompt->text) q["prompt"] = utf8_lossy(*c.prompt->text);
        if (c.text) q["completion"] = utf8_lossy(*c.text);
        q["row"] = c.prompt->row->row;
        requests.push_back(std::move(q));
      }
      v = r.program->score(requests);
    } else {
      for (size_t n = 0; n < N; ++n) {
        const auto& c = cs[n];
        switch (r.kind) {
          case Kind::Gsm8kXml:
          case Kind::Gsm8kAnswer: {
            // The paper's correctness reward compares strings (gold as written); gsm8k_answer compares numbers.
            auto p = gsm8k_problem(*c.prompt->row);
            bool xml = r.kind == Kind::Gsm8kXml;
            auto rb = score_completion(xml ? RewardKind::Gsm8kXml : RewardKind::Gsm8kAnswer, *c.text,
                                       xml ? p.gold_raw : p.gold);
            v[n] = rb.total;
            for (auto& [k, x] : rb.parts) parts[k] += x / (double)N;
            break;
          }
          case Kind::ExactMatch:
            v[n] = py_strip(utf8_lossy(*c.text)) == py_strip(row_answer(c, "exact_match")) ? 1.0 : 0.0;
            break;
          case Kind::Regex:
            v[n] = r.regex->search(*c.text) ? 1.0 : 0.0;
            break;
          case Kind::LengthPenalty:
            v[n] = -(double)c.ids->size() / (double)I.max_completion_length;
            break;
          default:
            break;
        }
      }
    }
    out.values.push_back(std::move(v));
  }
  out.total.assign(N, 0.0);
  for (size_t k = 0; k < I.rewards.size(); ++k) {
    double mean = 0;
    for (size_t n = 0; n < N; ++n) {
      out.total[n] += I.weights[k] * out.values[k][n];
      mean += out.values[k][n] / (double)std::max<size_t>(1, N);
    }
    out.means["rewards/" + I.names[k]] = mean;
  }
  for (auto& [k, x] : parts) out.means[k] = x;
  return out;
}

}  // namespace multiref
