#include "util/json_text.h"

#include "util/common.h"

namespace multiref {

nlohmann::json parse_json(const std::string& text, const std::string& where) {
  bool too_deep = false;
  // The callback sees every value's depth as it opens; stopping there keeps the parser from building the rest.
  auto limit = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if (depth >= kMaxJsonDepth &&
        (event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start)) {
      too_deep = true;
      throw Error("");
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text, limit);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    // The parser's message quotes the last token read, which can be anything: keep it bounded.
    fail(where, ": not valid JSON (", text_excerpt(what, 300), ")",
         what.find("end of input") != std::string::npos ? "; is the file truncated?" : "");
  } catch (const Error&) {
    if (!too_deep) throw;
  }
  fail(where, ": JSON nested deeper than ", kMaxJsonDepth, " levels (not a file multiref reads: is it corrupt?)");
}

std::string text_excerpt(const std::string& s, size_t max_chars) {
  if (s.size() <= max_chars) return s;
  size_t n = max_chars;
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) --n;  // never cut a UTF-8 character in half
  return s.substr(0, n) + "... (" + std::to_string(s.size()) + " bytes in all)";
}

std::string json_excerpt(const nlohmann::json& v, size_t max_chars) {
  // Values come from parse_json (bounded depth), so dump() cannot recurse deeply; its size can still be anything.
  return text_excerpt(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), max_chars);
}

}  // namespace multiref
