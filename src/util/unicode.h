// UTF-8 helpers for the tokenizers: validation, lossy decoding, NFC (via Debian's utf8proc), and GPT-2's
// byte-level alphabet (each byte 0..255 mapped to a printable code point).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace multiref {

// True when `s` is well-formed UTF-8; otherwise false, with the offset of the first bad byte.
bool utf8_valid(std::string_view s, size_t* bad_offset = nullptr);

// Replaces each maximal invalid subsequence with U+FFFD, as Rust's String::from_utf8_lossy (and so HF
// tokenizers' decode) does.
std::string utf8_lossy(std::string_view s);

void append_utf8(std::string& out, uint32_t cp);

// Decodes one code point at s[i] (s must be valid UTF-8); advances i.
uint32_t next_code_point(std::string_view s, size_t& i);

// Unicode Normalization Form C. `s` must be valid UTF-8.
std::string nfc(std::string_view s);

// GPT-2 bytes_to_unicode(): printable bytes map to themselves, the others to U+0100 onwards.
// byte_to_unicode()[b] is the UTF-8 encoding of b's code point.
const std::array<std::string, 256>& byte_to_unicode();
// Inverse: the byte of a byte-level code point, or -1.
int unicode_to_byte(uint32_t cp);

// Maps raw bytes to their byte-level string (each byte becomes one code point).
std::string bytes_to_byte_level(std::string_view bytes);
// Maps a byte-level string back to raw bytes; returns false if a code point is outside the alphabet.
bool byte_level_to_bytes(std::string_view s, std::string& out);

}  // namespace multiref
