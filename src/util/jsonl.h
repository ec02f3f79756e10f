// JSON-lines input: every non-blank line must be a JSON object; errors name "file:line".
#pragma once
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "util/common.h"

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
    try {
      r.value = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      fail(r.where, ": not valid JSON (", e.what(), ")");
    }
    if (!r.value.is_object()) fail(r.where, ": each line must be a JSON object");
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace multiref
