// JSON text from files and lines the user supplies, and JSON values quoted back in error messages.
//
// nlohmann's parser is iterative and takes any depth, but dump() and the code that walks a value recurse: a line
// like [[[[...]]]] nested 10^5 deep overflowed the stack wherever an error message echoed it. Every input is parsed
// through parse_json (a nesting limit far above any real file's) and every echoed value goes through json_excerpt
// (a bounded prefix: a 100 KB string is not an error message).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace multiref {

constexpr int kMaxJsonDepth = 256;

// Parses `text`; a syntax error or nesting deeper than kMaxJsonDepth fails with "<where>: ...".
nlohmann::json parse_json(const std::string& text, const std::string& where);

// At most `max_chars` characters of v.dump() (or of a string), with how much was left out.
std::string json_excerpt(const nlohmann::json& v, size_t max_chars = 120);
std::string text_excerpt(const std::string& s, size_t max_chars = 120);

}  // namespace multiref
