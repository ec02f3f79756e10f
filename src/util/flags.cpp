#include "util/flags.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "util/json_text.h"

namespace multiref {

int64_t parse_int(const std::string& s, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE) fail(what, ": expected an integer, got '", s, "'");
  return v;
}

double parse_double(const std::string& s, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    fail(what, ": expected a finite number, got '", text_excerpt(s, 80), "'");
  return v;
}

bool parse_bool(const std::string& s, const std::string& what) {
  std::string l;
  for (char c : s) l += (char)std::tolower((unsigned char)c);
  if (l == "1" || l == "true" || l == "yes" || l == "on") return true;
  if (l == "0" || l == "false" || l == "no" || l == "off") return false;
  fail(what, ": expected true or false, got '", s, "'");
}

static std::string fmt_double(double d) {
  std::ostringstream os;
  os << d;
  return os.str();
}

static std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

void FlagTable::add(const std::string& name, std::string* v, const std::string& help) {
  Flag f{name, "STR", *v, help, false, nullptr, nullptr};
  f.set = [v](const std::string& s) { *v = s; };
  f.get = [v]() -> nlohmann::json { return *v; };
  flags_.push_back(std::move(f));
}

void FlagTable::add(const std::string& name, int* v, const std::string& help) {
  Flag f{name, "INT", std::to_string(*v), help, false, nullptr, nullptr};
  f.set = [v, name](const std::string& s) {
    int64_t x = parse_int(s, "--" + name);
    if (x < INT32_MIN || x > INT32_MAX) fail("--", name, ": ", s, " is out of range");
    *v = (int)x;
  };
  f.get = [v]() -> nlohmann::json { return *v; };
  flags_.push_back(std::move(f));
}

void FlagTable::add(const std::string& name, int64_t* v, const std::string& help) {
  Flag f{name, "INT", std::to_string(*v), help, false, nullptr, nullptr};
  f.set = [v, name](const std::string& s) { *v = parse_int(s, "--" + name); };
  f.get = [v]() -> nlohmann::json { return *v; };
  flags_.push_back(std::move(f));
}

void FlagTable::add(const std::string& name, double* v, const std::string& help) {
  Flag f{name, "FLOAT", fmt_double(*v), help, false, nullptr, nullptr};
  f.set = [v, name](const std::string& s) { *v = parse_double(s, "--" + name); };
  f.get = [v]() -> nlohmann::json { return *v; };
  flags_.push_back(std::move(f));
}

void FlagTable::add(const std::string& name, bool* v, const std::string& help) {
  Flag f{name, "", *v ? "true" : "false", help, true, nullptr, nullptr};
  f.set = [v, name](const std::string& s) { *v = parse_bool(s, "--" + name); };
  f.get = [v]() -> nlohmann::json { return *v; };
  flags_.push_back(std::move(f));
}

void FlagTable::add(const std::string& name, std::vector<std::string>* v, const std::string& help) {
  Flag f{name, "A,B,...", join(*v), help, false, nullptr, nullptr};
  auto fresh = std::make_shared<bool>(true);
  f.set = [v, fresh](const std::string& s) {
    if (*fresh) v->clear();  // the first occurrence replaces the default, later ones append
    *fresh = false;
    for (auto& item : split(s, ','))
      if (!trim(item).empty()) v->push_back(trim(item));
  };
  f.get = [v]() -> nlohmann::json { return *v; };
  flags_.push_back(std::move(f));
}

void FlagTable::add(const std::string& name, std::vector<double>* v, const std::string& help) {
  std::string def;
  for (double d : *v) def += (def.empty() ? "" : ",") + fmt_double(d);
  Flag f{name, "X,Y,...", def, help, false, nullptr, nullptr};
  auto fresh = std::make_shared<bool>(true);
  f.set = [v, name, fresh](const std::string& s) {
    if (*fresh) v->clear();
    *fresh = false;
    for (auto& item : split(s, ',')) v->push_back(parse_double(trim(item), "--" + name));
  };
  f.get = [v]() -> nlohmann::json { return *v; };
  flags_.push_back(std::move(f));
}

FlagTable::Flag* FlagTable::find(const std::string& name) {
  for (auto& f : flags_)
    if (f.name == name) return &f;
  return nullptr;
}

bool FlagTable::was_set(const std::string& name) const {
  for (auto& f : flags_)
    if (f.name == name) return f.seen;
  return false;
}

std::vector<std::string> FlagTable::parse(int argc, char** argv, int start) {
  std::vector<std::string> args;
  for (int i = start; i < argc; ++i) args.emplace_back(argv[i]);
  return parse(args);
}

std::vector<std::string> FlagTable::parse(const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      help_ = true;
      return positional;
    }
    // No command takes positional arguments: a stray word is a mistake (a bool flag's `maybe`, a missing --).
    if (a.rfind("--", 0) != 0 || a.size() == 2)
      fail(program_, ": unexpected argument '", text_excerpt(a, 80), "'",
           i > 0 && args[i - 1].rfind("--", 0) == 0 && find(args[i - 1].substr(2)) &&
                   find(args[i - 1].substr(2))->is_bool
               ? " after the true/false flag " + args[i - 1] + " (write " + args[i - 1] + "=true or =false)"
               : "",
           "; flags are --name value or --name=value (`", program_, " --help` lists them)");
    std::string name = a.substr(2), value;
    bool has_value = false;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Flag* f = find(name);
    if (!f) {
      // Accept the dash spelling of underscore flags (--max-steps) as HF's parser does.
      std::string alt = name;
      for (auto& c : alt) c = c == '-' ? '_' : c;
      f = find(alt);
    }
    if (!f) {
      std::string close;
      for (auto& g : flags_)
        if (g.name.find(name) != std::string::npos || name.find(g.name) != std::string::npos) close += " --" + g.name;
      fail("unknown flag --", name, " for ", program_, close.empty() ? "" : " (did you mean:" + close + "?)", "; run `",
           program_, " --help` for the list");
    }
    if (!has_value) {
      if (f->is_bool) {
        // `--bf16` alone means true; `--bf16 false` is also accepted (HfArgumentParser style).
        value = "true";
        if (i + 1 < args.size()) {
          std::string n = args[i + 1];
          for (auto& c : n) c = (char)std::tolower((unsigned char)c);
          if (n == "true" || n == "false" || n == "1" || n == "0" || n == "yes" || n == "no" || n == "on" || n == "off")
            value = args[++i];
        }
      } else {
        if (i + 1 >= args.size()) fail("flag --", f->name, " needs a value (", f->type, ")");
        value = args[++i];
      }
    }
    f->set(value);
    f->seen = true;
  }
  return positional;
}

std::string FlagTable::help() const {
  std::ostringstream os;
  os << "usage: " << program_ << " [flags]\n" << summary_ << "\n\nflags (--name value or --name=value):\n";
  for (auto& f : flags_) {
    std::string head = "  --" + f.name + (f.type.empty() ? "" : " " + f.type);
    os << head;
    if (head.size() < 34)
      os << std::string(34 - head.size(), ' ');
    else
      os << "\n" << std::string(34, ' ');
    // Wrap long help at ~70 columns, continuation lines aligned.
    std::string text = f.help + " (default: " + (f.def.empty() ? "\"\"" : f.def) + ")";
    size_t col = 0;
    std::istringstream words(text);
    std::string w;
    bool first = true;
    while (words >> w) {
      if (!first && col + 1 + w.size() > 72) {
        os << "\n" << std::string(34, ' ');
        col = 0;
      } else if (!first) {
        os << ' ';
        ++col;
      }
      os << w;
      col += w.size();
      first = false;
    }
    os << "\n";
  }
  os << "  --help                          print this help and exit\n";
  return os.str();
}

nlohmann::json FlagTable::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (auto& f : flags_) j[f.name] = f.get();
  return j;
}

}  // namespace multiref

#include <iostream>

namespace multiref {

int run_main(const char* program, const std::function<int()>& fn) {
  try {
    return fn();
  } catch (const Error& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    std::cerr << program << ": torch error: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
  }
  return 2;
}

}  // namespace multiref
