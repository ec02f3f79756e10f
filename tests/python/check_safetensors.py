#!/usr/bin/python3
"""Strict safetensors validator (mirrors the Rust `safetensors` crate's checks).

  /usr/bin/python3 tests/python/check_safetensors.py FILE

Checks, in the order the Rust crate's SafeTensors::read_metadata / Metadata::validate
does them:
  * file >= 8 bytes; header length N (u64 LE) <= 100_000_000 and 8 + N <= file size
  * header is UTF-8, starts with '{', is a JSON object (trailing whitespace allowed)
  * every tensor entry is {"dtype", "shape", "data_offsets"} with a known dtype,
    non-negative integer shape and a [begin, end] pair
  * sorted by begin, offsets are contiguous starting at 0, end >= begin, and
    end - begin == prod(shape) * dtype_size; the last end covers the data section exactly
Additionally (project requirements, stricter than the crate):
  * N is a multiple of 8; __metadata__ == {"format": "pt"}; no duplicate JSON keys.

Prints {"tensors": {name: {"dtype", "shape", "sum", "abs_sum"}}} (sums in float64;
BF16 decoded by shifting into the high half of a float32).  Exit 1 on any violation.
"""
import json
import struct
import sys

import numpy as np

MAX_HEADER_SIZE = 100_000_000  # safetensors::tensor::MAX_HEADER_SIZE

# dtype name -> (size in bytes, numpy little-endian dtype or a special decoder tag)
DTYPES = {
    "BOOL": (1, "|b1"), "U8": (1, "|u1"), "I8": (1, "|i1"),
    "F8_E5M2": (1, "f8e5m2"), "F8_E4M3": (1, "f8e4m3"),
    "I16": (2, "<i2"), "U16": (2, "<u2"), "F16": (2, "<f2"), "BF16": (2, "bf16"),
    "I32": (4, "<i4"), "U32": (4, "<u4"), "F32": (4, "<f4"),
    "I64": (8, "<i8"), "U64": (8, "<u8"), "F64": (8, "<f8"),
}


class Invalid(Exception):
    pass


def _f8e4m3_table():
    # float8_e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa; no inf, 0x7f/0xff = NaN
    t = np.empty(256, dtype=np.float64)
    for b in range(256):
        s = -1.0 if b & 0x80 else 1.0
        e, m = (b >> 3) & 0xF, b & 0x7
        if e == 0xF and m == 0x7:
            t[b] = float("nan")
        elif e == 0:
            t[b] = s * (m / 8.0) * 2.0 ** -6
        else:
            t[b] = s * (1 + m / 8.0) * 2.0 ** (e - 7)
    return t


def decode(raw, dtype):
    kind = DTYPES[dtype][1]
    if kind == "bf16":  # BF16 bits are the high 16 bits of a float32
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view("<f4").astype(np.float64)
    if kind == "f8e5m2":  # E5M2 is the high byte of an IEEE half
        return (np.frombuffer(raw, dtype="|u1").astype(np.uint16) << 8).view("<f2").astype(np.float64)
    if kind == "f8e4m3":
        return _f8e4m3_table()[np.frombuffer(raw, dtype="|u1")]
    return np.frombuffer(raw, dtype=kind).astype(np.float64)


def _no_dupes(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise Invalid("duplicate JSON key %r" % k)
        d[k] = v
    return d


def _is_uint(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def parse(buf):
    if len(buf) < 8:
        raise Invalid("HeaderTooSmall: file is %d bytes" % len(buf))
    (n,) = struct.unpack("<Q", buf[:8])
    if n > MAX_HEADER_SIZE:
        raise Invalid("HeaderTooLarge: %d" % n)
    if 8 + n > len(buf):
        raise Invalid("InvalidHeaderLength: header length %d exceeds file size %d" % (n, len(buf)))
    if n % 8 != 0:
        raise Invalid("header length %d is not a multiple of 8" % n)
    try:
        text = buf[8:8 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid("InvalidHeader: not UTF-8 (%s)" % e)
    if not text.startswith("{"):
        raise Invalid("InvalidHeaderStart: header does not start with '{'")
    try:
        header = json.loads(text, object_pairs_hook=_no_dupes)
    except json.JSONDecodeError as e:
        raise Invalid("InvalidHeaderDeserialization: %s" % e)
    if not isinstance(header, dict):
        raise Invalid("InvalidHeaderDeserialization: header is not a JSON object")

    meta = header.pop("__metadata__", None)
    if meta is not None and (not isinstance(meta, dict) or
                             not all(isinstance(v, str) for v in meta.values())):
        raise Invalid("InvalidHeaderDeserialization: __metadata__ must map strings to strings")
    if meta != {"format": "pt"}:
        raise Invalid('__metadata__ must be {"format": "pt"}, got %r' % (meta,))

    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise Invalid("InvalidHeaderDeserialization: bad entry for %r: %r" % (name, info))
        if info["dtype"] not in DTYPES:
            raise Invalid("InvalidHeaderDeserialization: unknown dtype %r for %r" % (info["dtype"], name))
        shape, offs = info["shape"], info["data_offsets"]
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            raise Invalid("InvalidHeaderDeserialization: bad shape %r for %r" % (shape, name))
        if not isinstance(offs, list) or len(offs) != 2 or not all(_is_uint(o) for o in offs):
            raise Invalid("InvalidHeaderDeserialization: bad data_offsets %r for %r" % (offs, name))

    # Metadata::validate: contiguous, starting at 0, sizes consistent
    data = buf[8 + n:]
    start = 0
    for name, info in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        b, e = info["data_offsets"]
        if b != start or e < b:
            raise Invalid("InvalidOffset: %r has data_offsets [%d, %d], expected begin %d" % (name, b, e, start))
        nelem = 1
        for d in info["shape"]:
            nelem *= d
        if nelem * DTYPES[info["dtype"]][0] != e - b:
            raise Invalid("TensorInvalidInfo: %r shape %r dtype %s needs %d bytes, offsets give %d"
                          % (name, info["shape"], info["dtype"], nelem * DTYPES[info["dtype"]][0], e - b))
        start = e
    if start != len(data):
        raise Invalid("MetadataIncompleteBuffer: tensors cover %d bytes, data section is %d" % (start, len(data)))

    out = {}
    for name in sorted(header):
        info = header[name]
        b, e = info["data_offsets"]
        vals = decode(data[b:e], info["dtype"])
        out[name] = {"dtype": info["dtype"], "shape": info["shape"],
                     "sum": _num(vals.sum()), "abs_sum": _num(np.abs(vals).sum())}
    return out


def _num(x):
    x = float(x)
    return x if np.isfinite(x) else repr(x)  # keep stdout valid JSON for nan/inf


def main(argv):
    if len(argv) != 2:
        print("usage: check_safetensors.py FILE", file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            buf = f.read()
        tensors = parse(buf)
    except (Invalid, OSError) as e:
        print("check_safetensors: %s: %s" % (argv[1], e), file=sys.stderr)
        return 1
    print(json.dumps({"tensors": tensors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
