// A TensorBoard event-file writer with no TensorFlow or protobuf dependency: scalars (and text) are
// hand-encoded as `tensorflow.Event` protobuf messages and framed as TFRecords, which is all an
// events.out.tfevents.* file is. tests/python/read_tfevents.py is an independent reader for it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace multiref {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum TFRecord framing uses. `crc` is a
// previous result to continue from, so crc32c(b, nb, crc32c(a, na)) == crc32c(a+b).
// Debian 12 packages no C/C++ CRC32C library (only python3-crc32c), hence this table-driven one.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// TFRecord's masked form: ((crc >> 15) | (crc << 17)) + 0xa282ead8, so that a CRC of data that itself
// contains CRCs does not degenerate.
uint32_t masked_crc32c(const void* data, size_t n);
// One TFRecord: uint64 length (little-endian), masked CRC of those 8 bytes, the data, masked CRC of the
// data.
std::string tfrecord_frame(const std::string& data);

// Writes one event file, events.out.tfevents.<unix time>.<hostname>, in `log_dir` (created if missing).
// Every record is fflush'ed as soon as it is added, so a crash loses nothing already added (a power loss
// may still lose what the kernel had not written). Failures throw multiref::Error naming the file.
class TensorBoardWriter {
 public:
  // `purge_step` >= 0 marks a restart: TensorBoard then discards data at steps >= purge_step that older
  // event files in the same directory hold (the tail of a crashed run that a resumed run redoes). It is
  // written as the file_version event's step plus a SessionLog START event, as PyTorch's writer does.
  explicit TensorBoardWriter(const std::string& log_dir, int64_t purge_step = -1);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // `wall_time` is seconds since the Unix epoch; negative means now. The value is stored as a float32
  // (Summary.Value.simple_value), which is what TensorBoard plots.
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time = -1);
  // Shown by TensorBoard's Text tab (markdown); the encoding matches torch.utils.tensorboard's add_text.
  void add_text(const std::string& tag, const std::string& text, int64_t step, double wall_time = -1);
  // Records are already flushed when added; this is for callers that want to say so explicitly.
  void flush();

  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);
  std::string path_;
  FILE* f_ = nullptr;
};

// Seconds since the Unix epoch (event wall times; now_seconds() in common.h is monotonic instead).
double unix_time_seconds();

}  // namespace multiref
