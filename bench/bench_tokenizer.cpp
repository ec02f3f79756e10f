// Encode throughput of the Qwen tokenizer (MB/s of UTF-8 input) on English and mixed-script text, 1 and 2
// threads. Usage: bench_tokenizer TOKENIZER_DIR ENGLISH.txt MIXED.txt   (bench/run_benchmarks.sh prepares them)
#include <iostream>
#include <sstream>

#include "tokenizer/tokenizer.h"
#include "util/common.h"
#include "util/flags.h"

using namespace multiref;

int main(int argc, char** argv) {
  return run_main("bench_tokenizer", [&]() -> int {
    if (argc != 4) fail("usage: bench_tokenizer TOKENIZER_DIR ENGLISH.txt MIXED.txt");
    auto tok = Tokenizer::load(argv[1]);
    for (int f = 2; f <= 3; ++f) {
      std::vector<std::string> lines;
      std::istringstream in(read_file(argv[f]));
      size_t bytes = 0;
      for (std::string line; std::getline(in, line);) {
        bytes += line.size() + 1;
        lines.push_back(line + "\n");
      }
      for (int threads : {1, 2}) {
        tok->encode_batch(lines, false, threads);  // warm-up
        double best = 1e30;
        size_t ntok = 0;
        for (int rep = 0; rep < 3; ++rep) {
          double t0 = now_seconds();
          auto ids = tok->encode_batch(lines, false, threads);
          best = std::min(best, now_seconds() - t0);
          ntok = 0;
          for (auto& v : ids) ntok += v.size();
        }
        std::cout << nlohmann::json({{"bench", "tokenizer_encode"},
                                     {"text", f == 2 ? "english" : "mixed"},
                                     {"threads", threads},
                                     {"mbytes", bytes / 1e6},
                                     {"tokens", ntok},
                                     {"mb_s", bytes / best / 1e6},
                                     {"tokens_s", ntok / best}})
                         .dump()
                  << std::endl;
      }
    }
    return 0;
  });
}
