#include "util/unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "util/common.h"

namespace multiref {

namespace {

// Length of the valid sequence starting at s[i], or 0 if the bytes there do not start one. Implements the
// well-formed byte sequences of Unicode Table 3-7 (no overlongs, no surrogates, nothing above U+10FFFF).
// `*maximal` receives the length of the maximal subpart (>= 1) for invalid starts.
size_t valid_sequence_length(std::string_view s, size_t i, size_t* maximal) {
  auto b = [&](size_t k) -> int { return i + k < s.size() ? (uint8_t)s[i + k] : -1; };
  int c0 = b(0);
  *maximal = 1;
  if (c0 < 0x80) return 1;
  int len = 0, lo = 0x80, hi = 0xBF;
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    len = 2;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    len = 3;
    if (c0 == 0xE0) lo = 0xA0;
    if (c0 == 0xED) hi = 0x9F;
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    len = 4;
    if (c0 == 0xF0) lo = 0x90;
    if (c0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (int k = 1; k < len; ++k) {
    int c = b(k);
    int l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (c < l || c > h) {
      *maximal = (size_t)k;
      return 0;
    }
  }
  return (size_t)len;
}

}  // namespace

bool utf8_valid(std::string_view s, size_t* bad_offset) {
  for (size_t i = 0; i < s.size();) {
    size_t m, n = valid_sequence_length(s, i, &m);
    if (n == 0) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += n;
  }
  return true;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t m, n = valid_sequence_length(s, i, &m);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      i += m;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += (char)cp;
  } else if (cp < 0x800) {
    out += (char)(0xC0 | (cp >> 6));
    out += (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += (char)(0xE0 | (cp >> 12));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  } else {
    out += (char)(0xF0 | (cp >> 18));
    out += (char)(0x80 | ((cp >> 12) & 0x3F));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  }
}

uint32_t next_code_point(std::string_view s, size_t& i) {
  uint8_t c = (uint8_t)s[i];
  if (c < 0x80) {
    ++i;
    return c;
  }
  int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  uint32_t cp = c & (0xFF >> (len + 1));
  for (int k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | ((uint8_t)s[i + k] & 0x3F);
  i += (size_t)len;
  return cp;
}

std::string nfc(std::string_view s) {
  // ASCII is always in NFC: skip the library call for the common case.
  bool ascii = true;
  for (char c : s)
    if ((uint8_t)c >= 0x80) {
      ascii = false;
      break;
    }
  if (ascii) return std::string(s);
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t*)s.data(), (utf8proc_ssize_t)s.size(), &out,
                                    (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) fail("NFC normalization failed: ", utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> keep(out, &std::free);
  return std::string((const char*)out, (size_t)n);
}

namespace {
struct ByteLevelTables {
  std::array<std::string, 256> to_unicode;
  std::array<int, 512> to_byte;
  ByteLevelTables() {
    to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      uint32_t cp = printable ? (uint32_t)b : (uint32_t)(256 + n++);
      append_utf8(to_unicode[b], cp);
      to_byte[cp] = b;
    }
  }
};
const ByteLevelTables& tables() {
  static const ByteLevelTables t;
  return t;
}
}  // namespace

const std::array<std::string, 256>& byte_to_unicode() {
  return tables().to_unicode;
}

int unicode_to_byte(uint32_t cp) {
  return cp < 512 ? tables().to_byte[cp] : -1;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& t = tables().to_unicode;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t[(uint8_t)c];
  return out;
}

bool byte_level_to_bytes(std::string_view s, std::string& out) {
  for (size_t i = 0; i < s.size();) {
    int b = unicode_to_byte(next_code_point(s, i));
    if (b < 0) return false;
    out += (char)b;
  }
  return true;
}

}  // namespace multiref
