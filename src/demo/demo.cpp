#include "demo/demo.h"

#include <algorithm>
#include <atomic>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "data/rewards.h"
#include "demo/demo_exactness.h"
#include "demo/demo_task.h"
#include "eval/eval_gsm8k.h"
#include "io/hf_model.h"
#include "io/hub.h"
#include "rl/dpo_trainer.h"
#include "rl/grpo_trainer.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/sft.h"
#include "train/train_checkpoint.h"
#include "train/training_log.h"
#include "util/common.h"
#include "util/runtime.h"

namespace multiref {

void DemoConfig::register_flags(FlagTable& t) {
  t.add("output_dir", &output_dir,
        "where everything goes (data, tokenizer, models, runs, report.md); rerunning skips finished stages");
  t.add("quick", &quick, "the same stages at toy sizes (under a minute on 2 cores; what the tests run)");
  t.add("seed", &seed, "one seed for the data, the models, the trainers and the evaluation");
  t.add("threads", &threads,
        "CPU threads per model computation (0 = one per core); the two references train side by side, one each");
}

void DemoConfig::validate() {
  if (output_dir.empty()) fail("--output_dir must not be empty");
  if (seed < 0) fail("--seed must be >= 0, got ", seed);
  if (threads < 0) fail("--threads must be >= 0 (0 = one per core), got ", threads);
}

DemoPlan demo_plan(bool quick) {
  DemoPlan p;
  // The task: sums, differences and products of operands up to 10, one or two steps. ref_format's training
  // answers slip on 60% of the steps (noisy_steps: off by 1 to 3), so its greedy answer is right less than half
  // the time and its samples mostly wrong; ref_math's answers are all right.
  p.max_operand = 10;
  p.format_error_rate = 0.6;
  // ref_math is sloppy, not ignorant: a quarter of its answers use the format, so it also calculates inside a
  // <reasoning> block (where the multi-reference mixture meets it) instead of never having seen one.
  p.math_format_share = 0.25;
  p.vocab_size = 640;
  // 0.15M parameters: it learns this arithmetic within the budget; hidden 128 x 3 layers was 3x slower per step.
  p.hidden = 64;
  p.intermediate = 256;
  p.layers = 2;
  p.heads = 4;
  p.kv_heads = 2;
  p.grpo_completion_length = 48;  // a two-step formatted answer is about 35 tokens
  p.eval_completion_length = 64;
  // Tiny models take large steps, but not in RL: GRPO at 2e-3 and DPO at 5e-4 lowered every run's accuracy.
  p.sft_lr = 6e-3;
  p.grpo_lr = 5e-4;
  p.grpo_gamma = 0.1;
  p.dpo_lr = 1e-4;
  p.dpo_gamma = 0.1;
  if (quick) {  // the same pipeline at toy sizes: the models learn little; it is for tests
    p.train_problems = 600;
    p.test_problems = 40;
    p.sft_steps = 120;
    p.sft_batch = 16;
    p.grpo_steps = 4;
    p.grpo_prompts_per_step = 2;
    p.grpo_generations = 4;
    p.dpo_steps = 6;
    p.dpo_batch = 8;
  } else {  // about 6 minutes on a quiet 2-core machine
    p.train_problems = 3000;
    p.test_problems = 200;
    p.sft_steps = 1000;
    p.sft_batch = 32;
    p.grpo_steps = 60;
    p.grpo_prompts_per_step = 4;
    p.grpo_generations = 8;
    p.dpo_steps = 60;
    p.dpo_batch = 16;
  }
  return p;
}

namespace {
std::string ref_dir(const std::string& out, const std::string& name) {
  return join_path(join_path(out, "models"), name);
}
}  // namespace

std::vector<DemoModel> demo_models(const std::string& out) {
  std::vector<DemoModel> v = {
      {"ref_format", "reference", "reference: answer format, sloppy arithmetic (SFT from scratch)",
       ref_dir(out, "ref_format")},
      {"ref_math", "reference", "reference: right arithmetic, mostly no answer format (SFT from scratch)",
       ref_dir(out, "ref_math")},
  };
  for (std::string algo : {"grpo", "dpo"}) {
    std::string A = algo == "grpo" ? "GRPO" : "DPO";
    auto dir = [&](const std::string& run) { return join_path(join_path(out, algo), run); };
    v.push_back(
        {algo + "/single_ref_format", algo, A + " from ref_format, KL to ref_format only", dir("single_ref_format")});
    v.push_back({algo + "/single_ref_math", algo, A + " from ref_math, KL to ref_math only", dir("single_ref_math")});
    v.push_back({algo + "/rkl", algo, A + " from ref_format, RKL to both (alpha 0.5)", dir("rkl")});
    v.push_back({algo + "/fkl", algo, A + " from ref_format, FKL to both (beta 0.5)", dir("fkl")});
  }
  return v;
}

namespace {

// Thrown when Ctrl-C (or SIGTERM) arrives: the trainers have saved a checkpoint; the stage stays unfinished.
struct Interrupted {};

// Stages with markers. A stage is skipped when its marker exists and no earlier stage ran in this process (an
// earlier stage that ran may have changed its inputs). The first stage to run continues its partial outputs (an
// interrupted trainer resumes from its checkpoint); later ones start clean.
class StageRunner {
 public:
  StageRunner(std::string out, int total) : out_(std::move(out)), total_(total), t0_(now_seconds()) {}

  void run(const std::string& name, const std::string& what, const std::function<void(bool may_resume)>& body) {
    ++index_;
    std::string marker = marker_path(name);
    std::string tag = cat("[", index_ < 10 && total_ >= 10 ? " " : "", index_, "/", total_, "] ", name);
    if (file_exists(marker) && !ran_) {
      std::cerr << tag << ": done, skipping\n";
      return;
    }
    bool may_resume = !ran_;
    ran_ = true;
    remove_all(marker);
    std::cerr << tag << ": " << what << "\n";
    double t = now_seconds();
    body(may_resume);
    if (stop_requested()) throw Interrupted{};
    double secs = now_seconds() - t;
    write_file_atomic(marker, nlohmann::json({{"stage", name}, {"seconds", secs}}).dump() + "\n");
    std::cerr << tag << ": done in " << format_duration(secs) << " (demo so far "
              << format_duration(now_seconds() - t0_) << ")\n";
  }

  std::string marker_path(const std::string& name) const {
    std::string f = name;
    std::replace(f.begin(), f.end(), '/', '_');
    return join_path(join_path(out_, "stages"), f + ".done");
  }

 private:
  std::string out_;
  int total_, index_ = 0;
  bool ran_ = false;
  double t0_;
};

std::string data_dir(const std::string& out) {
  return join_path(out, "data");
}
std::string pairs_path(const std::string& out) {
  return join_path(data_dir(out), "dpo_pairs.jsonl");
}
std::string tokenizer_dir(const std::string& out) {
  return join_path(out, "tokenizer");
}

struct DemoData {
  std::vector<DemoProblem> train, test;
};

// A seeded split with no test question among the training questions.
DemoData demo_data(const DemoPlan& plan, uint64_t seed) {
  auto all = demo_problems(seed, plan.train_problems + 4 * plan.test_problems, plan.max_operand);
  DemoData d;
  std::set<std::string> seen;
  for (auto& p : all) {
    if ((int64_t)d.train.size() < plan.train_problems) {
      seen.insert(p.question);
      d.train.push_back(p);
    } else if ((int64_t)d.test.size() < plan.test_problems && seen.insert(p.question).second) {
      d.test.push_back(p);
    }
  }
  if ((int64_t)d.test.size() < plan.test_problems)
    fail("demo: only ", d.test.size(), " distinct test problems could be drawn; raise max_operand");
  return d;
}

MathProblem as_math_problem(const DemoProblem& p) {
  MathProblem m;
  m.question = p.question;
  m.solution = p.solution;
  m.gold = m.gold_raw = std::to_string(p.answer);
  return m;
}

void make_data(const std::string& out, const DemoPlan& plan, uint64_t seed) {
  auto d = demo_data(plan, seed);
  make_dirs(join_path(data_dir(out), "gsm8k"));
  write_gsm8k_jsonl(join_path(data_dir(out), "gsm8k/train.jsonl"), d.train);
  write_gsm8k_jsonl(join_path(data_dir(out), "gsm8k/test.jsonl"), d.test);
  // DPO pairs over the training questions, one epoch's worth. The prompt is the GRPO / evaluation prompt (the
  // paper code's system prompt, then the question) as a message list, so DPO trains in the setting it is
  // evaluated in; demo_task.h's write_pairs_jsonl writes bare questions.
  std::mt19937_64 rng(stream_seed(seed, 0, 11));
  std::string s;
  int64_t n = std::min<int64_t>((int64_t)d.train.size(), plan.dpo_steps * plan.dpo_batch);
  for (int64_t i = 0; i < n; ++i) {
    auto pair = demo_pair(d.train[(size_t)i], rng);
    nlohmann::json prompt = {{{"role", "system"}, {"content", kGsm8kXmlSystemPrompt}},
                             {{"role", "user"}, {"content", pair.prompt}}};
    s += nlohmann::json({{"prompt", prompt}, {"chosen", pair.chosen}, {"rejected", pair.rejected}}).dump() + "\n";
  }
  write_file_atomic(pairs_path(out), s);
  std::cerr << "  " << d.train.size() << " training and " << d.test.size() << " test problems, " << n
            << " DPO pairs under " << data_dir(out) << "\n  e.g. " << d.test[0].question << "\n";
}

// The tokenizer learns the words of the rendered conversations (the chat markers are special tokens, not text).
void make_tokenizer(const std::string& out, const DemoPlan& plan, uint64_t seed) {
  auto d = demo_data(plan, seed);
  std::string corpus;
  for (auto& p : d.train)
    corpus += cat("system\n", kGsm8kXmlSystemPrompt, "\nuser\n", p.question, "\nassistant\n",
                  formatted_response(p.steps, p.answer), sloppy_response(p.steps, p.answer), "\n", p.solution, "\n");
  BpeTrainOptions opts;
  opts.vocab_size = plan.vocab_size;
  auto bpe = train_bpe(corpus, opts);
  StagedDir staged(tokenizer_dir(out));
  write_trained_tokenizer(bpe, opts, staged.path());
  auto tok = Tokenizer::load(staged.path());
  staged.commit();
  MathProblem m = as_math_problem(d.test[0]);
  auto chat = resolve_chat_format(tok->chat_template, tok->bos_token, "auto", tokenizer_dir(out));
  std::cerr << "  " << tok->vocab_size() << " tokens; a prompt is " << gsm8k_prompt_ids(*tok, chat, m, 512).size()
            << " tokens, a formatted answer "
            << tok->encode(formatted_response(d.test[0].steps, d.test[0].answer)).size() << "\n";
}

// A tiny Qwen2 sized to the tokenizer, with Qwen2.5-Instruct's special-token convention: bos and pad
// <|endoftext|>, generation ends at <|im_end|> or <|endoftext|>.
ModelConfig demo_model_config(const DemoPlan& plan, const Tokenizer& tok) {
  auto raw = model_config_to_json(preset_config("qwen2", "tiny"));
  if (!tok.eos_id || !tok.pad_id) fail("demo: the tokenizer lacks <|im_end|> / <|endoftext|>");
  raw["vocab_size"] = tok.vocab_size();
  raw["hidden_size"] = plan.hidden;
  raw["intermediate_size"] = plan.intermediate;
  raw["num_hidden_layers"] = plan.layers;
  raw["max_window_layers"] = plan.layers;
  raw["num_attention_heads"] = plan.heads;
  raw["num_key_value_heads"] = plan.kv_heads;
  raw["max_position_embeddings"] = 512;
  raw["sliding_window"] = 512;
  raw["bos_token_id"] = *tok.pad_id;
  raw["pad_token_id"] = *tok.pad_id;
  raw["eos_token_id"] = {*tok.eos_id, *tok.pad_id};
  return parse_model_config(raw, "demo model");
}

// The SFT data of one reference: the chat-rendered GRPO prompts, each completion ending with <|im_end|> as the
// chat template ends an assistant turn, so the model answers (and stops) in the setting GRPO samples it.
std::vector<SftExample> reference_examples(const std::string& name, const DemoData& d, const Tokenizer& tok,
                                           const ChatFormat& chat, const DemoPlan& plan, uint64_t seed) {
  std::mt19937_64 rng(stream_seed(seed, name == "ref_format" ? 0 : 1, 12));
  std::vector<SftExample> data;
  for (auto& p : d.train) {
    std::string response;
    if (name == "ref_format") {
      auto steps = noisy_steps(p, plan.format_error_rate, rng);
      response = formatted_response(steps, steps.back().result);
    } else {
      bool formatted = (double)(rng() % 1000000) / 1e6 < plan.math_format_share;
      response = formatted ? formatted_response(p.steps, p.answer) : sloppy_response(p.steps, p.answer);
    }
    SftExample ex;
    ex.prompt = gsm8k_prompt_ids(tok, chat, as_math_problem(p), 512);
    ex.completion = tok.encode(response);
    ex.completion.push_back(*tok.eos_id);
    data.push_back(std::move(ex));
  }
  return data;
}

// Pretrains both references from scratch, side by side: one thread each, so two cores are busy without the
// contention of splitting one tiny model's small matrix products over threads. A reference saved by an
// interrupted earlier run is kept when `may_resume`.
void make_references(const std::string& out, const DemoPlan& plan, const DemoConfig& cfg, bool may_resume) {
  auto d = demo_data(plan, (uint64_t)cfg.seed);
  auto tok = Tokenizer::load(tokenizer_dir(out));
  auto chat = resolve_chat_format(tok->chat_template, tok->bos_token, "auto", tokenizer_dir(out));
  auto config = demo_model_config(plan, *tok);
  auto device = resolve_device(DeviceChoice::Auto);
  std::vector<std::string> names;
  for (std::string name : {"ref_format", "ref_math"}) {
    if (may_resume && file_exists(join_path(ref_dir(out, name), "model.safetensors")))
      std::cerr << "  " << name << ": kept from the earlier run\n";
    else
      names.push_back(name);
  }
  std::cerr << "  tiny Qwen2, " << format_metric(config.num_parameters() / 1e6) << "M parameters (hidden "
            << plan.hidden << ", " << plan.layers << " layers), " << plan.sft_steps << " steps of " << plan.sft_batch
            << " examples each\n";
  std::mutex console;
  std::atomic<bool> abort{false};
  std::vector<std::exception_ptr> errors(names.size());
  std::vector<std::thread> workers;
  for (size_t j = 0; j < names.size(); ++j) {
    const std::string& name = names[j];
    int64_t index = name == "ref_format" ? 0 : 1;
    auto data = reference_examples(name, d, *tok, chat, plan, (uint64_t)cfg.seed);
    workers.emplace_back([&, name, index, data = std::move(data), j]() {
      try {
        set_threads(cfg.threads);  // OpenMP's thread count is per thread: a new thread starts at one per core
        Transformer model(config, torch::TensorOptions().dtype(torch::kFloat32));
        init_weights(model, stream_seed((uint64_t)cfg.seed, index, 13));
        model->to(device);
        SftConfig sc;
        sc.steps = plan.sft_steps;
        sc.batch_size = plan.sft_batch;
        sc.learning_rate = plan.sft_lr;
        sc.seed = stream_seed((uint64_t)cfg.seed, index, 14);
        TrainingLogSettings ls;
        ls.console = ConsoleMode::Off;  // two runs share the console: their lines are printed here, labelled
        ls.tensorboard = false;
        TrainingLog log(join_path(join_path(out, "sft"), name), plan.sft_steps, ls);
        int64_t every = std::max<int64_t>(1, plan.sft_steps / 10);
        double t0 = now_seconds();
        sft_train(model, data, sc, [&](int64_t step, double loss) {
          if (step % every == 0 || step == plan.sft_steps) {
            log.log(step, {{"loss", loss}});
            double el = now_seconds() - t0;
            std::lock_guard<std::mutex> g(console);
            std::cerr << "  " << name << " "
                      << progress_line(step, plan.sft_steps, el, el / (double)step, {{"loss", loss}}) << "\n";
          }
          if (stop_requested() || abort) throw Interrupted{};
        });
        model->to(torch::kCPU);
        save_model(model, ref_dir(out, name), tokenizer_dir(out));
      } catch (...) {
        errors[j] = std::current_exception();
        abort = true;
      }
    });
  }
  for (auto& w : workers) w.join();
  std::exception_ptr interrupted;
  for (auto& e : errors) {
    if (!e) continue;
    try {
      std::rethrow_exception(e);
    } catch (const Interrupted&) {
      interrupted = e;
    }  // anything else propagates: the real error, not the other thread's abort
  }
  if (interrupted) std::rethrow_exception(interrupted);
}

// Which references a run regularizes toward and where the policy starts: a single-reference run starts from its
// reference; the multi-reference runs start from ref_a = ref_format, as the paper's code does.
void set_references(const std::string& out, const std::string& run, std::string& ref_a, std::string& ref_b,
                    KLType& kl_type) {
  ref_a = ref_dir(out, run == "single_ref_math" ? "ref_math" : "ref_format");
  ref_b = run == "rkl" || run == "fkl" ? ref_dir(out, "ref_math") : "";
  kl_type = run == "fkl" ? KLType::Fkl : KLType::Rkl;
}

// What a GRPO and a DPO stage share: seed and threads, about 20 log rows and 4 checkpoints (one kept), a fresh
// start or a resume from the run's latest checkpoint, and the resolved flags saved with the run.
template <typename Config, typename Run>
void run_trainer(Config& c, const std::string& dir, int64_t steps, const DemoConfig& cfg, bool may_resume,
                 const char* command, Run run) {
  c.seed = cfg.seed;
  c.threads = cfg.threads;
  c.logging_steps = (int)std::max<int64_t>(1, steps / 20);
  c.save_steps = (int)std::max<int64_t>(1, steps / 4);
  c.save_total_limit = 1;
  if (!may_resume) remove_all(dir);
  if (!list_checkpoints(dir).empty()) c.resume_from_checkpoint = "latest";
  c.validate();
  FlagTable t(command, "");
  c.register_flags(t);
  run(c, t.to_json());
}

void run_grpo_stage(const std::string& out, const std::string& run, const DemoPlan& plan, const DemoConfig& cfg,
                    bool may_resume) {
  GrpoConfig g;
  set_references(out, run, g.ref_a, g.ref_b, g.kl_type);
  g.alpha = g.beta = 0.5;
  g.dataset = "gsm8k";
  g.data_dir = data_dir(out);
  g.model_out = join_path(join_path(out, "grpo"), run);
  g.num_generations = (int)plan.grpo_generations;
  g.per_device_train_batch_size = (int)(plan.grpo_prompts_per_step * plan.grpo_generations);
  g.gradient_accumulation_steps = 1;
  g.max_steps = plan.grpo_steps;
  g.max_prompt_length = 256;
  g.max_completion_length = (int)plan.grpo_completion_length;
  g.learning_rate = plan.grpo_lr;
  g.gamma = plan.grpo_gamma;
  run_trainer(g, g.model_out, plan.grpo_steps, cfg, may_resume, "multiref grpo", run_grpo);
}

void run_dpo_stage(const std::string& out, const std::string& run, const DemoPlan& plan, const DemoConfig& cfg,
                   bool may_resume) {
  DpoConfig c;
  set_references(out, run, c.ref_a, c.ref_b, c.kl_type);
  c.alpha = c.beta = 0.5;
  c.dataset = pairs_path(out);
  c.output_dir = join_path(join_path(out, "dpo"), run);
  c.per_device_train_batch_size = (int)plan.dpo_batch;
  c.gradient_accumulation_steps = 1;
  c.max_steps = plan.dpo_steps;
  c.learning_rate = plan.dpo_lr;
  c.gamma = plan.dpo_gamma;
  c.max_length = 256;
  c.max_prompt_length = 192;
  c.cache_dir = join_path(out, "cache");  // the demo keeps everything under its own directory
  run_trainer(c, c.output_dir, plan.dpo_steps, cfg, may_resume, "multiref dpo", run_dpo);
}

// A demo directory holds one configuration: mixing --quick and full stages (or two seeds) would report nonsense.
void check_settings(const std::string& out, const DemoConfig& cfg) {
  nlohmann::json want = {{"demo_version", 1}, {"quick", cfg.quick}, {"seed", cfg.seed}};
  std::string path = join_path(join_path(out, "stages"), "settings.json");
  if (file_exists(path)) {
    nlohmann::json have;
    try {
      have = nlohmann::json::parse(read_file(path));
    } catch (const std::exception&) {
    }
    if (have != want)
      fail(out, " holds a demo made with other settings (", have.dump(), "; this run: ", want.dump(),
           "): pass another --output_dir, or delete ", out, " to start over");
    return;
  }
  make_dirs(join_path(out, "stages"));
  write_file_atomic(path, want.dump() + "\n");
}

}  // namespace

int run_demo(const DemoConfig& cfg) {
  double t0 = now_seconds();
  const std::string& out = cfg.output_dir;
  DemoPlan plan = demo_plan(cfg.quick);
  set_threads(cfg.threads);
  torch::manual_seed((uint64_t)cfg.seed);
  check_settings(out, cfg);
  install_stop_handlers();
  std::cerr << "multiref demo" << (cfg.quick ? " --quick" : "") << ": two tiny references, GRPO and DPO from each and "
            << "from both (RKL, FKL), into " << out << " (" << torch::get_num_threads() << " threads; Ctrl-C stops, "
            << "rerunning resumes)\n";
  const std::vector<std::string> runs = {"single_ref_format", "single_ref_math", "rkl", "fkl"};
  StageRunner st(out, 14);
  try {
    st.run("data", "generate the word problems and DPO pairs", [&](bool) { make_data(out, plan, (uint64_t)cfg.seed); });
    st.run("tokenizer", "train a byte-level BPE tokenizer on the training text",
           [&](bool) { make_tokenizer(out, plan, (uint64_t)cfg.seed); });
    st.run("references",
           "pretrain ref_format (answer format, sloppy arithmetic) and ref_math (right arithmetic, "
           "mostly unformatted) from scratch",
           [&](bool resume) { make_references(out, plan, cfg, resume); });
    for (auto& r : runs)
      st.run("grpo/" + r,
             cat("GRPO, ", plan.grpo_steps, " steps of ", plan.grpo_prompts_per_step, " prompts x ",
                 plan.grpo_generations, " completions"),
             [&](bool resume) { run_grpo_stage(out, r, plan, cfg, resume); });
    for (auto& r : runs)
      st.run("dpo/" + r, cat("DPO, ", plan.dpo_steps, " steps of ", plan.dpo_batch, " pairs"),
             [&](bool resume) { run_dpo_stage(out, r, plan, cfg, resume); });
    st.run("evaluate", cat("every model on the ", plan.test_problems, " test problems"), [&](bool resume) {
      make_dirs(join_path(out, "eval"));
      for (auto& m : demo_models(out)) {
        std::string path = demo_eval_file(out, m.name);
        if (resume && file_exists(path)) continue;
        auto row = evaluate_demo_model(m, out, plan, (uint64_t)cfg.seed);
        write_file_atomic(path, row.dump(2) + "\n");
        std::cerr << "  " << m.name << ": accuracy " << format_metric(row["accuracy"].get<double>()) << ", format "
                  << format_metric(row["format_rate"].get<double>()) << ", reward "
                  << format_metric(row["reward"].get<double>()) << " (" << format_duration(row["seconds"].get<double>())
                  << ")\n";
        if (stop_requested()) throw Interrupted{};
      }
    });
    st.run("exactness",
           "a toy task whose optimum is known: exact and paper-code GRPO against the closed form (RKL, FKL)",
           [&](bool) { run_exactness_stage(out, cfg.quick, (uint64_t)cfg.seed); });
    st.run("report", "write report.md, results.json and the plots", [&](bool) { write_demo_report(out, cfg, plan); });
  } catch (const Interrupted&) {
    std::cerr << "multiref demo: interrupted; finished stages are kept and a trainer resumes from its checkpoint: "
                 "rerun the same command to continue\n";
    return 130;
  }
  auto results = nlohmann::json::parse(read_file(join_path(out, "results.json")));
  std::cout << demo_results_table(results);
  std::cerr << "multiref demo: finished in " << format_duration(now_seconds() - t0)
            << "; report: " << join_path(out, "report.md") << "\n";
  return 0;
}

}  // namespace multiref
