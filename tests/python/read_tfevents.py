#!/usr/bin/python3
"""Independent reader for TensorBoard event files (standard library only).

  /usr/bin/python3 tests/python/read_tfevents.py [--all] [--protobuf] FILE
  /usr/bin/python3 tests/python/read_tfevents.py --selftest

Parses the TFRecord framing (uint64 LE length, masked CRC32C of the length, data, masked CRC32C of
the data), checks both CRCs, decodes each tensorflow.Event protobuf by hand from the wire format and
prints one JSON line per summary value:
  scalars: {"step", "wall_time", "tag", "value"}
  text:    {"step", "wall_time", "tag", "text"}
With --all, also {"step", "wall_time", "file_version"} and {"step", "wall_time", "session_log"}.

It is deliberately strict, since it checks multiref's writer (src/train/tensorboard.cpp), not arbitrary files:
the first event must carry file_version "brain.Event:*", wire types must match the field numbers of
event.proto / summary.proto / tensor.proto, and fields outside the subset multiref writes are errors.
Exit 1 with a message on any violation. --selftest checks the CRC32C against RFC 3720's vectors.

--protobuf additionally parses every record with Google's protobuf library (Debian python3-protobuf),
from message descriptors built here from TensorBoard's .proto definitions, and requires the same
result as the hand decoder: a check of the wire-format decoding itself. Exit 3 if the library is absent.
"""
import json
import struct
import sys


class Invalid(Exception):
    pass


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def selftest():
    vectors = [
        (b"", 0x00000000),
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ]
    for data, want in vectors:
        got = crc32c(data)
        if got != want:
            raise Invalid("crc32c(%r) = 0x%08X, expected 0x%08X" % (data[:12], got, want))
    print("crc32c ok")


# --- protobuf wire format ----------------------------------------------------------------------------

def read_varint(buf, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise Invalid("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise Invalid("varint longer than 10 bytes")


def fields(buf):
    """Yields (field_number, wire_type, value): int for varints, bytes for the rest."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise Invalid("field number 0")
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise Invalid("truncated fixed64 field %d" % field)
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            if pos + n > len(buf):
                raise Invalid("length-delimited field %d runs past its message (%d > %d)" % (field, pos + n, len(buf)))
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            if pos + 4 > len(buf):
                raise Invalid("truncated fixed32 field %d" % field)
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise Invalid("unsupported wire type %d (field %d)" % (wire, field))
        yield field, wire, value


def expect(msg, field, wire, want_wire):
    if wire != want_wire:
        raise Invalid("%s field %d has wire type %d, expected %d" % (msg, field, wire, want_wire))


def to_int64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def utf8(b, what):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("%s is not UTF-8" % what)


def decode_message(buf, name, schema):
    """schema: field -> (key, wire type, decoder). Repeated fields are not needed here: a repeat is an error."""
    out = {}
    for field, wire, value in fields(buf):
        if field not in schema:
            raise Invalid("%s: unexpected field %d (wire type %d)" % (name, field, wire))
        key, want_wire, dec = schema[field]
        expect(name, field, wire, want_wire)
        if key in out:
            raise Invalid("%s: field %d (%s) given twice" % (name, field, key))
        out[key] = dec(value)
    return out


PLUGIN_DATA = {1: ("plugin_name", 2, lambda b: utf8(b, "plugin_name")), 2: ("content", 2, bytes)}
METADATA = {1: ("plugin_data", 2, lambda b: decode_message(b, "PluginData", PLUGIN_DATA))}
DIM = {1: ("size", 0, to_int64), 2: ("name", 2, lambda b: utf8(b, "Dim.name"))}
SHAPE = {2: ("dim", 2, lambda b: decode_message(b, "Dim", DIM))}
TENSOR = {1: ("dtype", 0, int), 2: ("tensor_shape", 2, lambda b: decode_message(b, "TensorShapeProto", SHAPE)),
          8: ("string_val", 2, bytes)}
VALUE = {
    1: ("tag", 2, lambda b: utf8(b, "tag")),
    2: ("simple_value", 5, lambda b: struct.unpack("<f", b)[0]),
    8: ("tensor", 2, lambda b: decode_message(b, "TensorProto", TENSOR)),
    9: ("metadata", 2, lambda b: decode_message(b, "SummaryMetadata", METADATA)),
}
SESSION_LOG = {1: ("status", 0, int), 2: ("checkpoint_path", 2, bytes), 3: ("msg", 2, bytes)}
SESSION_STATUS = {0: "STATUS_UNSPECIFIED", 1: "START", 2: "STOP", 3: "CHECKPOINT"}


def decode_summary(buf):
    values = []
    for field, wire, value in fields(buf):
        if field != 1:
            raise Invalid("Summary: unexpected field %d" % field)
        expect("Summary", field, wire, 2)
        values.append(decode_message(value, "Summary.Value", VALUE))
    return values


EVENT = {
    1: ("wall_time", 1, lambda b: struct.unpack("<d", b)[0]),
    2: ("step", 0, to_int64),
    3: ("file_version", 2, lambda b: utf8(b, "file_version")),
    5: ("summary", 2, decode_summary),
    7: ("session_log", 2, lambda b: decode_message(b, "SessionLog", SESSION_LOG)),
}


# --- the optional cross-check with Google's protobuf library ----------------------------------------

def protobuf_event_class():
    """tensorboard.Event (the subset multiref writes), built without protoc from field descriptors."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="multiref_event_check.proto", package="tb", syntax="proto3")

    def msg(name, fields, parent=None):
        m = (parent.nested_type if parent else fdp.message_type).add(name=name)
        for fname, number, ftype, type_name, repeated, oneof in fields:
            f = m.field.add(name=fname, number=number, type=ftype,
                            label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                f.type_name = type_name
            if oneof is not None:
                f.oneof_index = oneof
        return m

    ev = msg("Event", [("wall_time", 1, F.TYPE_DOUBLE, None, False, None),
                       ("step", 2, F.TYPE_INT64, None, False, None),
                       ("file_version", 3, F.TYPE_STRING, None, False, 0),
                       ("summary", 5, F.TYPE_MESSAGE, ".tb.Summary", False, 0),
                       ("session_log", 7, F.TYPE_MESSAGE, ".tb.SessionLog", False, 0)])
    ev.oneof_decl.add(name="what")
    msg("SessionLog", [("status", 1, F.TYPE_INT32, None, False, None),
                       ("checkpoint_path", 2, F.TYPE_STRING, None, False, None),
                       ("msg", 3, F.TYPE_STRING, None, False, None)])
    summ = msg("Summary", [("value", 1, F.TYPE_MESSAGE, ".tb.Summary.Value", True, None)])
    val = msg("Value", [("tag", 1, F.TYPE_STRING, None, False, None),
                        ("simple_value", 2, F.TYPE_FLOAT, None, False, 0),
                        ("tensor", 8, F.TYPE_MESSAGE, ".tb.TensorProto", False, 0),
                        ("metadata", 9, F.TYPE_MESSAGE, ".tb.SummaryMetadata", False, None)], summ)
    val.oneof_decl.add(name="value")
    md = msg("SummaryMetadata", [("plugin_data", 1, F.TYPE_MESSAGE, ".tb.SummaryMetadata.PluginData", False, None)])
    msg("PluginData", [("plugin_name", 1, F.TYPE_STRING, None, False, None),
                       ("content", 2, F.TYPE_BYTES, None, False, None)], md)
    msg("TensorProto", [("dtype", 1, F.TYPE_INT32, None, False, None),
                        ("tensor_shape", 2, F.TYPE_MESSAGE, ".tb.TensorShapeProto", False, None),
                        ("string_val", 8, F.TYPE_BYTES, None, True, None)])
    shape = msg("TensorShapeProto", [("dim", 2, F.TYPE_MESSAGE, ".tb.TensorShapeProto.Dim", True, None)])
    msg("Dim", [("size", 1, F.TYPE_INT64, None, False, None), ("name", 2, F.TYPE_STRING, None, False, None)], shape)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName("tb.Event")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def protobuf_lines(event_class, body):
    ev = event_class()
    ev.ParseFromString(body)
    base = {"step": ev.step, "wall_time": ev.wall_time}
    what = ev.WhichOneof("what")
    if what == "file_version":
        return [dict(base, file_version=ev.file_version)]
    if what == "session_log":
        return [dict(base, session_log=SESSION_STATUS.get(ev.session_log.status, ev.session_log.status))]
    lines = []
    for v in ev.summary.value:
        line = dict(base, tag=v.tag)
        if v.WhichOneof("value") == "simple_value":
            line["value"] = v.simple_value
        else:
            t = v.tensor
            if (v.metadata.plugin_data.plugin_name != "text" or t.dtype != 7 or len(t.string_val) != 1
                    or [d.size for d in t.tensor_shape.dim] != [1]):
                raise Invalid("protobuf: tensor value %r is not a text summary" % v.tag)
            line["text"] = t.string_val[0].decode("utf-8")
        lines.append(line)
    return lines


def value_line(ev, v):
    if "tag" not in v:
        raise Invalid("Summary.Value without a tag")
    line = {"step": ev.get("step", 0), "wall_time": ev.get("wall_time", 0.0), "tag": v["tag"]}
    if "simple_value" in v:
        if "tensor" in v:
            raise Invalid("Summary.Value %r has both simple_value and tensor" % v["tag"])
        line["value"] = v["simple_value"]
    elif "tensor" in v:
        t = v["tensor"]
        plugin = v.get("metadata", {}).get("plugin_data", {}).get("plugin_name")
        if plugin != "text":
            raise Invalid("tensor value %r is not for the text plugin (plugin %r)" % (v["tag"], plugin))
        if t.get("dtype") != 7:
            raise Invalid("text tensor %r has dtype %r, expected DT_STRING (7)" % (v["tag"], t.get("dtype")))
        if t.get("tensor_shape") != {"dim": {"size": 1}}:
            raise Invalid("text tensor %r has shape %r, expected [1]" % (v["tag"], t.get("tensor_shape")))
        line["text"] = utf8(t.get("string_val", b""), "text")
    else:
        raise Invalid("Summary.Value %r has no value" % v["tag"])
    return line


def read_records(data):
    pos, n = 0, 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise Invalid("record %d: truncated header (%d bytes left)" % (n, len(data) - pos))
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if masked(crc32c(header)) != len_crc:
            raise Invalid("record %d at byte %d: length CRC mismatch" % (n, pos))
        start = pos + 12
        if start + length + 4 > len(data):
            raise Invalid("record %d: truncated data (needs %d bytes)" % (n, length + 4))
        body = data[start:start + length]
        (data_crc,) = struct.unpack("<I", data[start + length:start + length + 4])
        if masked(crc32c(body)) != data_crc:
            raise Invalid("record %d at byte %d: data CRC mismatch" % (n, pos))
        yield n, body
        pos = start + length + 4
        n += 1


def main(argv):
    args = argv[1:]
    if args == ["--selftest"]:
        selftest()
        return 0
    show_all = "--all" in args
    event_class = None
    if "--protobuf" in args:
        try:
            event_class = protobuf_event_class()
        except ImportError:
            sys.stderr.write("read_tfevents: --protobuf needs python3-protobuf (apt-get install python3-protobuf)\n")
            return 3
    args = [a for a in args if a not in ("--all", "--protobuf")]
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    with open(args[0], "rb") as f:
        data = f.read()
    count = 0
    for n, body in read_records(data):
        try:
            ev = decode_message(body, "Event", EVENT)
        except Invalid as e:
            raise Invalid("record %d: %s" % (n, e))
        whats = [k for k in ("file_version", "summary", "session_log") if k in ev]
        if len(whats) != 1:
            raise Invalid("record %d: expected exactly one of file_version/summary/session_log, got %r" % (n, whats))
        if n == 0 and not ev.get("file_version", "").startswith("brain.Event:"):
            raise Invalid("record 0 must carry file_version 'brain.Event:*', got %r" % ev)
        if n > 0 and "file_version" in ev:
            raise Invalid("record %d: file_version again after the first record" % n)
        base = {"step": ev.get("step", 0), "wall_time": ev.get("wall_time", 0.0)}
        if "file_version" in ev:
            lines = [dict(base, file_version=ev["file_version"])]
        elif "session_log" in ev:
            status = ev["session_log"].get("status", 0)
            lines = [dict(base, session_log=SESSION_STATUS.get(status, status))]
        else:
            lines = [value_line(ev, v) for v in ev["summary"]]
        if event_class is not None:
            theirs = protobuf_lines(event_class, body)
            if json.dumps(theirs) != json.dumps(lines):  # as text, so that NaN equals NaN
                raise Invalid("record %d: Google's protobuf decodes %r, the hand decoder %r" % (n, theirs, lines))
        for line in lines:
            if show_all or "tag" in line:
                print(json.dumps(line))
        count += 1
    if count == 0:
        raise Invalid("no records")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Invalid as e:
        sys.stderr.write("read_tfevents: %s\n" % e)
        sys.exit(1)
