#include "train/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "util/common.h"

namespace multiref {

namespace {

std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

// --- protobuf wire format, just the parts an Event needs -------------------------------------------------
// A field is a key varint (field_number << 3 | wire_type) followed by its payload. Wire types: 0 varint,
// 1 fixed 64-bit, 2 length-delimited (strings, bytes, nested messages), 5 fixed 32-bit.

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += char((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += char(v);
}

void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, (uint64_t(field) << 3) | wire_type);
}

void put_le(std::string& out, uint64_t v, int nbytes) {
  for (int i = 0; i < nbytes; ++i) out += char((v >> (8 * i)) & 0xFF);
}

// int64 and enum fields are plain varints of the two's-complement value (negative ones take 10 bytes).
void put_varint_field(std::string& out, int field, int64_t v) {
  put_key(out, field, 0);
  put_varint(out, uint64_t(v));
}

void put_double_field(std::string& out, int field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_key(out, field, 1);
  put_le(out, bits, 8);
}

void put_float_field(std::string& out, int field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_key(out, field, 5);
  put_le(out, bits, 4);
}

void put_bytes_field(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}

// Event { double wall_time = 1; int64 step = 2; oneof { string file_version = 3; Summary summary = 5;
// SessionLog session_log = 7; ... } }. `what` is the already-encoded oneof field.
std::string event(double wall_time, int64_t step, const std::string& what) {
  std::string e;
  put_double_field(e, 1, wall_time);
  put_varint_field(e, 2, step);
  return e + what;
}

// Summary { repeated Value value = 1; }, holding a single already-encoded Value.
std::string summary_field(const std::string& value) {
  std::string summary, field;
  put_bytes_field(summary, 1, value);
  put_bytes_field(field, 5, summary);
  return field;
}

std::string hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return "localhost";
  std::string h = buf;
  // The name becomes part of a file name; keep it to characters that are safe there.
  for (char& c : h)
    if (c == '/' || c == ' ' || (unsigned char)c < 0x20) c = '_';
  return h;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = make_crc32c_table();
  auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string tfrecord_frame(const std::string& data) {
  std::string len, out;
  put_le(len, data.size(), 8);
  out.reserve(data.size() + 16);
  out += len;
  put_le(out, masked_crc32c(len.data(), len.size()), 4);
  out += data;
  put_le(out, masked_crc32c(data.data(), data.size()), 4);
  return out;
}

double unix_time_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

TensorBoardWriter::TensorBoardWriter(const std::string& log_dir, int64_t purge_step) {
  make_dirs(log_dir);
  double t0 = unix_time_seconds();
  std::string base = join_path(log_dir, cat("events.out.tfevents.", (int64_t)t0, ".", hostname()));
  // Two writers started in the same second (a quick restart) would pick the same name; never append to or
  // overwrite another writer's file ("x" = create exclusively), take a suffixed name instead.
  for (int attempt = 0; attempt < 100 && !f_; ++attempt) {
    path_ = attempt == 0 ? base : cat(base, ".", ::getpid(), ".", attempt);
    f_ = std::fopen(path_.c_str(), "wbx");
    if (!f_ && errno != EEXIST)
      fail(path_, ": cannot create the TensorBoard event file: ", std::strerror(errno),
           " (is the directory writable?)");
  }
  if (!f_) fail(base, ": cannot find a free TensorBoard event file name (100 files of that name exist)");

  // TensorBoard identifies the format by this first record; "brain.Event:2" also turns on its purging of
  // orphaned steps after a restart.
  std::string version;
  put_bytes_field(version, 3, "brain.Event:2");
  write_event(event(t0, purge_step >= 0 ? purge_step : 0, version));
  if (purge_step >= 0) {
    std::string session_log, field;
    put_varint_field(session_log, 1, 1);  // SessionLog { status = START (1) }
    put_bytes_field(field, 7, session_log);
    write_event(event(t0, purge_step, field));
  }
}

TensorBoardWriter::~TensorBoardWriter() {
  if (f_) std::fclose(f_);
}

void TensorBoardWriter::write_event(const std::string& ev) {
  std::string rec = tfrecord_frame(ev);
  if (std::fwrite(rec.data(), 1, rec.size(), f_) != rec.size() || std::fflush(f_) != 0)
    fail(path_, ": write failed: ", std::strerror(errno), " (disk full?)");
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  // Summary.Value { string tag = 1; float simple_value = 2; }
  std::string v;
  put_bytes_field(v, 1, tag);
  put_float_field(v, 2, (float)value);
  write_event(event(wall_time < 0 ? unix_time_seconds() : wall_time, step, summary_field(v)));
}

void TensorBoardWriter::add_text(const std::string& tag, const std::string& text, int64_t step, double wall_time) {
  // The text plugin reads a rank-1 DT_STRING tensor tagged with plugin "text":
  // Value { tag = 1; metadata = 9: SummaryMetadata { plugin_data = 1: PluginData { plugin_name = 1 } };
  //         tensor = 8: TensorProto { dtype = 1: DT_STRING (7); tensor_shape = 2: { dim = 2: { size = 1 } };
  //                                   string_val = 8 } }
  std::string plugin_data, metadata, dim, shape, tensor, v;
  put_bytes_field(plugin_data, 1, "text");
  put_bytes_field(metadata, 1, plugin_data);
  put_varint_field(dim, 1, 1);
  put_bytes_field(shape, 2, dim);
  put_varint_field(tensor, 1, 7);
  put_bytes_field(tensor, 2, shape);
  put_bytes_field(tensor, 8, text);
  put_bytes_field(v, 1, tag);
  put_bytes_field(v, 9, metadata);
  put_bytes_field(v, 8, tensor);
  write_event(event(wall_time < 0 ? unix_time_seconds() : wall_time, step, summary_field(v)));
}

void TensorBoardWriter::flush() {
  if (std::fflush(f_) != 0) fail(path_, ": flush failed: ", std::strerror(errno), " (disk full?)");
}

}  // namespace multiref
