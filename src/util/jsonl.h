// JSON-lines input: every non-blank line must be a JSON object; errors name "file:line".
#pragma once
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "util/common.h"
#include "util/json_text.h"

namespace multiref {

struct JsonlRow {
  nlohmann::json value;
  std::string where;  // "path:line" for error messages
};

inline std::vector<JsonlRow> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open (does the file exist?)");
  std::vector<JsonlRow> rows;
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (trim(line).empty()) continue;
    JsonlRow r;
    r.where = cat(path, ":", lineno);
    r.value = parse_json(line, r.where);
    if (!r.value.is_object()) fail(r.where, ": each line must be a JSON object");
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace multiref
