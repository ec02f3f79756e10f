#include "generation/decode_flags.h"

#include "util/common.h"

namespace multiref {

void DecodeFlags::register_flags(FlagTable& t) {
  t.add_enum("decode_loop", &loop,
             {{"auto", DecodeLoop::Auto}, {"compacting", DecodeLoop::Compacting}, {"static", DecodeLoop::Static}},
             "compacting: finished rows leave the batch, tokens read every step (CPU); static: fixed shapes, "
             "sampling on the device, tokens read every --decode_sync_every steps (GPU); auto: static on CUDA. "
             "Same tokens either way");
  t.add("decode_sync_every", &sync_every,
        "static decode loop: steps between host reads of the new tokens (EOS and stop strings are found then)");
}

void DecodeFlags::validate() const {
  if (sync_every < 1) fail("--decode_sync_every must be >= 1 (1 = read the tokens every step), got ", sync_every);
}

bool DecodeFlags::is_static(const torch::Device& device) const {
  return loop == DecodeLoop::Static || (loop == DecodeLoop::Auto && device.is_cuda());
}

void DecodeFlags::apply(GenerationConfig& g, const torch::Device& device) const {
  g.static_decode = is_static(device);
  g.sync_every = sync_every;
}

}  // namespace multiref
