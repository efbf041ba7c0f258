"""Reading scalars from TensorFlow event files (Katib's ``TensorFlowEvent`` collector).

Standard library only: the platform must not import TensorFlow (seconds to import, and
gigabytes) to read a few floats, so the TFRecord framing, its CRC32C and the handful of
protobuf messages involved (``Event``, ``Summary``, ``Summary.Value``, ``TensorProto``,
``TensorShapeProto``) are decoded here by hand, from the protobuf wire format.

A TFRecord is ``uint64 length | uint32 masked CRC32C(length) | data | uint32 masked
CRC32C(data)``, little-endian. The writer appends while the job runs, so a record that is
not complete yet is left for the next :meth:`TFEventsReader.read_new`; a record whose CRC is
wrong stops the reading of that file before it (logged once, never raised): the next call
tries again from there. Records over :data:`MAX_RECORD_BYTES` (images, graphs) are stepped over
unread. State format::

    {"version": 1, "offsets": {<file path relative to the directory, "/"-separated>: <bytes read>}}

Names: Katib matches an experiment's ``metricNames`` against the tags and against
``dir/tag`` for event files in a subdirectory (TensorBoard's ``train/``, ``validation/``).
With ``names``, a value is emitted under each of ``tag``, ``<parent>/tag``,
``<grandparent>/<parent>/tag``, ... (the directory relative to the one read) that is in
``names``, the bare tag first (with both ``loss`` and ``train/loss`` asked for, each gets
its points; choosing one would leave the other without any); with ``names=None``, under the
tag alone. Values that are not finite (a diverged loss) are skipped, as in the text parsers;
tensors of more than one element are skipped; links to files are not followed.

Not thread-safe: one reader per directory, used by one thread at a time.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import struct
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from lumiflow.controllers.metrics.parsers import MetricPoint

log = logging.getLogger(__name__)

STATE_VERSION = 1
#: Scalar events are tens of bytes; a bigger record is an image, audio or a graph.
MAX_RECORD_BYTES = 32 << 20

_HEADER = struct.Struct("<QI")
_U32 = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8

# TensorFlow's DataType enum (types.proto), for the dtypes a scalar summary is written in.
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64, DT_BFLOAT16, DT_HALF = 1, 2, 3, 9, 14, 19
_CONTENT_FORMATS = {
    DT_FLOAT: "<f",
    DT_DOUBLE: "<d",
    DT_INT32: "<i",
    DT_INT64: "<q",
    4: "<B",  # DT_UINT8
    5: "<h",  # DT_INT16
    6: "<b",  # DT_INT8
    17: "<H",  # DT_UINT16
    22: "<I",  # DT_UINT32
    23: "<Q",  # DT_UINT64
    DT_HALF: "<e",
}


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses it; ``crc`` continues an earlier value."""
    table = _CRC32C_TABLE
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class TFEventsReader:
    """Reads the scalars that are new in the event files (``*tfevents*``) under a directory."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        names: Collection[str] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self._directory = Path(directory)
        self._names = frozenset(names) if names is not None else None
        self._offsets: dict[str, int] = {}
        self._reported: set[tuple[str, int, str]] = set()
        if state is not None:
            self._restore(state)

    def read_new(self) -> list[MetricPoint]:
        """The points of the complete records past each file's offset; moves the offsets.
        Files are read in path order; a directory that does not exist (yet) has none."""
        points: list[MetricPoint] = []
        for relative, path in self._event_files():
            points += self._read_file(relative, path)
        return points

    def state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "offsets": dict(self._offsets)}

    def _restore(self, state: Mapping[str, Any]) -> None:
        offsets = state.get("offsets")
        if (
            state.get("version") != STATE_VERSION
            or not isinstance(offsets, Mapping)
            or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in offsets.items()
            )
        ):
            raise ValueError(f"not a state of a TensorFlow event reader: {dict(state)!r:.200}")
        self._offsets = dict(offsets)

    def _event_files(self) -> Iterator[tuple[str, str]]:
        # os.walk does not follow links to directories; links to files are skipped below, so
        # a job cannot point the reader at files outside its directory.
        for root, dirs, files in os.walk(self._directory):
            dirs.sort()
            for name in sorted(files):
                if "tfevents" not in name:
                    continue
                path = os.path.join(root, name)
                try:
                    if not stat.S_ISREG(os.lstat(path).st_mode):
                        continue
                except OSError:
                    continue
                yield Path(os.path.relpath(path, self._directory)).as_posix(), path

    def _read_file(self, relative: str, path: str) -> list[MetricPoint]:
        offset = self._offsets.get(relative, 0)
        points: list[MetricPoint] = []
        parents = relative.split("/")[:-1]
        prefixes = ["/".join(parents[i:]) + "/" for i in range(len(parents) - 1, -1, -1)]
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below; a vanished file is no error
        except OSError:
            return points
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size < offset:
                self._report(relative, offset, "shrank below the offset already read; it is not read again")
                return points
            fh.seek(offset)
            while size - offset >= _HEADER.size:
                header = fh.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break
                length, length_crc = _HEADER.unpack(header)
                if masked_crc32c(header[:8]) != length_crc:
                    self._report(relative, offset, "has a corrupt record (length CRC); reading stops there")
                    break
                end = offset + _HEADER.size + length + _U32.size
                if end > size:
                    break  # being written
                if length > MAX_RECORD_BYTES:
                    self._report(relative, offset, f"has a record of {length} bytes; stepped over")
                    fh.seek(end)
                    offset = end
                    continue
                body = fh.read(length + _U32.size)
                if len(body) < length + _U32.size:
                    break
                data = memoryview(body)[:length]
                if masked_crc32c(data) != _U32.unpack_from(body, length)[0]:
                    self._report(relative, offset, "has a corrupt record (data CRC); reading stops there")
                    break
                try:
                    wall_time, step, values = _decode_event(data)
                except _DecodeError as exc:
                    self._report(relative, offset, f"has a record that is not an Event ({exc}); skipped")
                else:
                    for tag, value in values:
                        for name in self._names_of(tag, prefixes):
                            points.append(MetricPoint(name, value, step, wall_time))
                offset = end
        self._offsets[relative] = offset
        return points

    def _names_of(self, tag: str, prefixes: list[str]) -> list[str]:
        if self._names is None:
            return [tag]
        candidates = dict.fromkeys([tag, *(prefix + tag for prefix in prefixes)])
        return [name for name in candidates if name in self._names]

    def _report(self, relative: str, offset: int, what: str) -> None:
        key = (relative, offset, what)
        if key not in self._reported:
            self._reported.add(key)
            log.warning("event file %s under %s %s (offset %d)", relative, self._directory, what, offset)


# --- the protobuf wire format -------------------------------------------------------------


class _DecodeError(Exception):
    pass


_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _DecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _DecodeError("varint too long")


def _signed(value: int, bits: int = 64) -> int:
    """A varint's two's-complement value (int32 and int64 negatives take ten bytes)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): an int for varints, a memoryview otherwise."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        value: Any
        if wire_type == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire_type in (_FIXED64, _FIXED32, _LENGTH_DELIMITED):
            if wire_type == _LENGTH_DELIMITED:
                size, pos = _varint(buf, pos)
            else:
                size = 8 if wire_type == _FIXED64 else 4
            if pos + size > end:
                raise _DecodeError(f"field {number} runs past the end")
            value = buf[pos : pos + size]
            pos += size
        else:
            raise _DecodeError(f"wire type {wire_type} of field {number}")
        if number == 0:
            raise _DecodeError("field number 0")
        yield number, wire_type, value


def _decode_event(data: memoryview) -> tuple[float | None, int, list[tuple[str, float]]]:
    """Event{1: wall_time double, 2: step int64, 5: summary Summary{1: repeated Value}}."""
    wall_time: float | None = None
    step = 0
    values: list[tuple[str, float]] = []
    for number, wire_type, value in _fields(data):
        if number == 1 and wire_type == _FIXED64:
            wall_time = struct.unpack("<d", value)[0]
        elif number == 2 and wire_type == _VARINT:
            step = _signed(value)
        elif number == 5 and wire_type == _LENGTH_DELIMITED:
            for field, field_type, summary_value in _fields(value):
                if field == 1 and field_type == _LENGTH_DELIMITED:
                    scalar = _decode_value(summary_value)
                    if scalar is not None:
                        values.append(scalar)
    if wall_time is not None and not math.isfinite(wall_time):
        wall_time = None
    return wall_time, step, values


def _decode_value(buf: memoryview) -> tuple[str, float] | None:
    """Summary.Value{1: tag, 2: simple_value float, 7: node_name (TF1), 8: tensor}."""
    tag = node_name = ""
    simple: float | None = None
    tensor: memoryview | None = None
    for number, wire_type, value in _fields(buf):
        if number == 1 and wire_type == _LENGTH_DELIMITED:
            tag = bytes(value).decode("utf-8", errors="replace")
        elif number == 2 and wire_type == _FIXED32:
            simple = struct.unpack("<f", value)[0]
        elif number == 7 and wire_type == _LENGTH_DELIMITED:
            node_name = bytes(value).decode("utf-8", errors="replace")
        elif number == 8 and wire_type == _LENGTH_DELIMITED:
            tensor = value
    scalar = simple if simple is not None else _tensor_scalar(tensor) if tensor is not None else None
    name = tag or node_name
    if scalar is None or not name or not math.isfinite(scalar):
        return None
    return name, scalar


def _tensor_scalar(buf: memoryview) -> float | None:
    """The value of a one-element TensorProto{1: dtype, 2: tensor_shape, 4: tensor_content,
    5: float_val, 6: double_val, 7: int_val, 10: int64_val, 13: half_val}, else None."""
    dtype = 0
    content: bytes | None = None
    one_element = True
    numbers: list[float] = []
    halves: list[int] = []
    for number, wire_type, value in _fields(buf):
        if number == 1 and wire_type == _VARINT:
            dtype = value
        elif number == 2 and wire_type == _LENGTH_DELIMITED:
            one_element = _elements(value) == 1
        elif number == 4 and wire_type == _LENGTH_DELIMITED:
            content = bytes(value)
        elif number == 5:
            numbers += _repeated(value, wire_type, "<f")
        elif number == 6:
            numbers += _repeated(value, wire_type, "<d")
        elif number in (7, 10):
            numbers += _repeated(value, wire_type, "")
        elif number == 13:
            halves += (int(v) for v in _repeated(value, wire_type, ""))
    if not one_element:
        return None
    if content:
        fmt = _CONTENT_FORMATS.get(dtype)
        if dtype == DT_BFLOAT16 and len(content) == 2:
            return float(struct.unpack("<f", b"\0\0" + content)[0])
        if fmt is None or len(content) != struct.calcsize(fmt):
            return None
        return float(struct.unpack(fmt, content)[0])
    if numbers:
        return numbers[0]
    if halves:
        bits = halves[0] & 0xFFFF
        if dtype == DT_BFLOAT16:
            return float(struct.unpack("<f", struct.pack("<I", bits << 16))[0])
        return float(struct.unpack("<e", struct.pack("<H", bits))[0])
    return None


def _repeated(value: Any, wire_type: int, fmt: str) -> list[float]:
    """A repeated scalar field's values, packed (one length-delimited run) or not (one
    value per occurrence); ``fmt`` "" for varints, else the struct format of fixed values."""
    if wire_type == _LENGTH_DELIMITED:
        if not fmt:
            out: list[float] = []
            pos = 0
            while pos < len(value):
                item, pos = _varint(value, pos)
                out.append(_signed(item))
            return out
        size = struct.calcsize(fmt)
        if len(value) % size:
            raise _DecodeError("packed field of a wrong length")
        return [float(v) for (v,) in struct.iter_unpack(fmt, value)]
    if wire_type == _VARINT and not fmt:
        return [_signed(value)]
    if wire_type in (_FIXED32, _FIXED64) and fmt and len(value) == struct.calcsize(fmt):
        return [float(struct.unpack(fmt, value)[0])]
    raise _DecodeError(f"a repeated field in wire type {wire_type}")


def _elements(buf: memoryview) -> int | None:
    """TensorShapeProto{2: repeated Dim{1: size}, 3: unknown_rank}: the number of elements,
    None where unknown."""
    count = 1
    for number, wire_type, value in _fields(buf):
        if number == 3 and wire_type == _VARINT and value:
            return None
        if number == 2 and wire_type == _LENGTH_DELIMITED:
            size = 0  # proto3 leaves a zero size out
            for field, field_type, dim in _fields(value):
                if field == 1 and field_type == _VARINT:
                    size = _signed(dim)
            if size < 0:
                return None
            count *= size
    return count
