"""The metric parsers of Katib's collectors: text (StdOut/File), JSON lines, TF event files.

The event files are written by the real TensorFlow (one module-scoped fixture, so that TF is
imported and run once). ``tf.summary.scalar`` lives in TensorBoard; where TensorBoard is not
installed the fixture writes what that function writes, ``tf.summary.write`` of a float32
scalar with the ``scalars`` plugin's metadata.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import random
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lumiflow.common.errors import ValidationFailed
from lumiflow.controllers.metrics.parsers import (
    KATIB_DEFAULT_PATTERN,
    MAX_LINE_BYTES,
    MAX_METRIC_NAMES,
    JsonLinesMetricsParser,
    MetricPoint,
    TextMetricsParser,
    check_pattern,
)
from lumiflow.controllers.metrics.tfevents import TFEventsReader, crc32c, masked_crc32c

KATIB_DOCS_FORMAT = r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}"


def text_points(data: bytes, **kwargs: Any) -> list[MetricPoint]:
    parser = TextMetricsParser(**kwargs)
    return parser.feed(data) + parser.finish()


def pairs(points: list[MetricPoint]) -> list[tuple[str, float, int]]:
    return [(p.name, p.value, p.step) for p in points]


# --- text: Katib's default pattern and metricsFormat -------------------------------------------


def test_default_pattern_on_katib_style_lines() -> None:
    log = (
        b"loss=0.3\n"
        b"accuracy=.98\n"
        b"Epoch 1/2 - loss = 1.5e-3\n"
        b"val-loss=-2\n"
        b"2024-01-01T00:00:00Z INFO batch|acc=+1E2\n"
        b"no metrics here\n"
    )
    assert pairs(text_points(log)) == [
        ("loss", 0.3, 1),
        ("accuracy", 0.98, 1),
        ("loss", 1.5e-3, 2),
        ("val-loss", -2.0, 1),
        ("batch|acc", 100.0, 1),
    ]
    assert all(p.timestamp is None for p in text_points(log))


def test_several_pairs_per_line_and_values_that_are_not_numbers() -> None:
    points = text_points(b"epoch=3 loss=0.25 accuracy=.98\nx= y=- z=nan w=inf v=1e999 u=.5e1 lr = 1e-4\n")
    assert pairs(points) == [
        ("epoch", 3.0, 1),
        ("loss", 0.25, 1),
        ("accuracy", 0.98, 1),
        ("u", 5.0, 1),
        ("lr", 1e-4, 1),
    ]


def test_custom_metrics_format_from_katibs_docs() -> None:
    check_pattern(KATIB_DOCS_FORMAT)
    log = b"{metricName: accuracy, metricValue: 0.8078}\n{metricName: loss, metricValue: -1}\nloss=7\n"
    assert pairs(text_points(log, patterns=[KATIB_DOCS_FORMAT])) == [
        ("accuracy", 0.8078, 1),
        ("loss", -1.0, 1),
    ]
    both = text_points(log, patterns=[KATIB_DOCS_FORMAT, KATIB_DEFAULT_PATTERN])
    assert ("loss", 7.0, 2) in pairs(both)


def test_patterns_are_ascii_as_in_re2() -> None:
    # Go's \w and \d are ASCII; Python's would take "٣" (Arabic-Indic three) for a digit.
    assert pairs(text_points("épocha=1 loss=٣ acc=2\n".encode())) == [("pocha", 1.0, 1), ("acc", 2.0, 1)]


def test_names_filter() -> None:
    log = b"epoch=1 loss=0.5 accuracy=0.7\nepoch=2 loss=0.4 accuracy=0.8\n"
    assert pairs(text_points(log, names=["accuracy"])) == [("accuracy", 0.7, 1), ("accuracy", 0.8, 2)]
    assert text_points(log, names=[]) == []


@pytest.mark.parametrize(
    "pattern", ["([\\w]+=(", "(\\w+)=\\d+", "no groups", "(?P<name>\\w+)=(?P=missing)", "(a)(b", "*x(a)(b)"]
)
def test_invalid_patterns_are_rejected_naming_the_pattern(pattern: str) -> None:
    with pytest.raises(ValueError, match="metricsFormat") as raised:
        check_pattern(pattern)
    assert repr(pattern) in str(raised.value)
    assert isinstance(raised.value, ValidationFailed)
    assert raised.value.field == "spec.metricsCollectorSpec.source.filter.metricsFormat"
    with pytest.raises(ValueError, match="metricsFormat"):
        TextMetricsParser(patterns=[KATIB_DEFAULT_PATTERN, pattern])


def test_valid_patterns_pass() -> None:
    check_pattern(KATIB_DEFAULT_PATTERN)
    check_pattern(r"(\w+):\s*([\d.]+)")
    assert pairs(text_points(b"loss: 0.5\n", patterns=r"(\w+):\s*([\d.]+)")) == [("loss", 0.5, 1)]


@pytest.mark.timeout(20)
def test_default_pattern_is_linear_on_hostile_lines() -> None:
    # re's backtracking on Katib's pattern takes minutes on 64 KiB of letters.
    started = time.monotonic()
    log = (
        b"a" * MAX_LINE_BYTES + b"\n" + b"a " * (MAX_LINE_BYTES // 2) + b"\n" + b"=a" * (MAX_LINE_BYTES // 2)
    )
    assert text_points(log + b"\nloss=1\n") == [MetricPoint("loss", 1.0, 1, None)]
    assert time.monotonic() - started < 10


# --- steps --------------------------------------------------------------------------------


def test_step_rules() -> None:
    log = (
        b"loss=0.9\n"  # no step yet: the count of "loss"
        b"loss=0.8 acc=0.1\n"
        b"loss=0.7 step=10 acc=0.2\n"  # the step holds for the whole line, before and after it
        b"loss=0.6\n"  # ... and for the lines after it
        b"step=12.0 loss=0.5\n"  # an integral float is a step
        b"step=12.5 loss=0.4\n"  # not integral: a value, no step
        b"step=-1 loss=0.3\n"
    )
    assert pairs(text_points(log, names=["loss", "acc"])) == [
        ("loss", 0.9, 1),
        ("loss", 0.8, 2),
        ("acc", 0.1, 1),
        ("loss", 0.7, 10),
        ("acc", 0.2, 10),
        ("loss", 0.6, 10),
        ("loss", 0.5, 12),
        ("loss", 0.4, 12),
        ("loss", 0.3, -1),
    ]
    with_step = pairs(text_points(log, names=["step", "acc"]))
    assert with_step == [
        ("acc", 0.1, 1),
        ("step", 10.0, 10),
        ("acc", 0.2, 10),
        ("step", 12.0, 12),
        ("step", 12.5, 12),
        ("step", -1.0, -1),
    ]
    assert ("step", 10.0, 10) in pairs(text_points(log))  # names=None: the step is a metric too


def test_custom_step_key() -> None:
    log = b"epoch=1 loss=0.5\nepoch=2 loss=0.4\nstep=7 loss=0.3\n"
    assert pairs(text_points(log, names=["loss"], step_key="epoch")) == [
        ("loss", 0.5, 1),
        ("loss", 0.4, 2),
        ("loss", 0.3, 2),
    ]


# --- chunks, lines, finish ----------------------------------------------------------------


def feed_in_chunks(
    parser: TextMetricsParser | JsonLinesMetricsParser, data: bytes, sizes: Iterator[int]
) -> list[MetricPoint]:
    points: list[MetricPoint] = []
    pos = 0
    while pos < len(data):
        size = next(sizes)
        points += parser.feed(data[pos : pos + size])
        pos += size
    return points


def test_chunks_split_inside_utf8_characters_and_crlf() -> None:
    log = "Époque 1 — loss=0.5 ✓\r\nтест acc=0.25\r\n日本 lr=1e-3\r\nstep=3 loss=0.1\r\n".encode()
    expected = text_points(log)
    assert pairs(expected) == [
        ("loss", 0.5, 1),
        ("acc", 0.25, 1),
        ("lr", 1e-3, 1),
        ("step", 3.0, 3),
        ("loss", 0.1, 3),
    ]
    for size in range(1, 8):
        parser = TextMetricsParser()
        assert feed_in_chunks(parser, log, itertools.repeat(size)) + parser.finish() == expected
    # a name around a character that is not ASCII is cut at it; "\r" inside a line stays
    assert pairs(text_points("tëst=1\rx=2\r\n".encode())) == [("st", 1.0, 1), ("x", 2.0, 1)]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert pairs(text_points(b"\xff\xfe loss=1 \xc3\n")) == [("loss", 1.0, 1)]


def test_finish_parses_a_last_unterminated_line_once() -> None:
    parser = TextMetricsParser()
    assert parser.feed(b"loss=1\nloss=2") == [MetricPoint("loss", 1.0, 1, None)]
    assert parser.feed(b"5") == []
    assert parser.finish() == [MetricPoint("loss", 25.0, 2, None)]
    assert parser.finish() == []
    assert parser.state()["buffer"] == ""
    assert parser.state()["offset"] == len(b"loss=1\nloss=25")


def test_a_line_over_64_kib_is_cut_and_never_buffered_whole() -> None:
    filler = b"x" * (MAX_LINE_BYTES - 20)
    # the pairs in the first 64 KiB count; the one cut by the cap ("acc=0.123456...") does not
    line = b"loss=0.5 " + filler + b" acc=0.123456789 tail=1" + b"y" * 100_000 + b" late=3"
    assert (
        len(b"loss=0.5 " + filler + b" acc=0.12")
        < MAX_LINE_BYTES
        < len(b"loss=0.5 " + filler + b" acc=0.123456789")
    )
    log = line + b"\nloss=0.25\n"
    expected = [MetricPoint("loss", 0.5, 1, None), MetricPoint("loss", 0.25, 2, None)]
    assert text_points(log) == expected
    for size in (1000, 4096, 65_535, 65_536, 65_537, 200_000):
        parser = TextMetricsParser()
        points = []
        for start in range(0, len(log), size):
            points += parser.feed(log[start : start + size])
            assert len(base64.b64decode(parser.state()["buffer"])) <= MAX_LINE_BYTES + 1
        assert points + parser.finish() == expected
    # without a newline, the cut line is what finish() sees
    parser = TextMetricsParser()
    parser.feed(b"a=1 " + b"z" * (3 * MAX_LINE_BYTES))
    assert len(json.dumps(parser.state())) < 2 * MAX_LINE_BYTES
    assert parser.finish() == [MetricPoint("a", 1.0, 1, None)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 65_535, 65_536, 65_537, 1 << 20])
def test_the_line_cap_does_not_depend_on_chunk_boundaries(size: int) -> None:
    exact = b"k=1 " + b"p" * (MAX_LINE_BYTES - 8) + b" v=2"  # exactly 64 KiB: not cut
    longer = b"k=3 " + b"p" * (MAX_LINE_BYTES - 8) + b" v=45"  # one byte more: "v=45" is dropped
    assert len(exact) == MAX_LINE_BYTES
    continued = exact + b"\rmore"  # the "\r" past the cap is no line end: cut, "v=2" dropped
    log = exact + b"\r\n" + exact + b"\n" + continued + b"\n" + longer + b"\r\n" + longer + b"\n"
    expected = [
        ("k", 1.0, 1),
        ("v", 2.0, 1),
        ("k", 1.0, 2),
        ("v", 2.0, 2),
        ("k", 1.0, 3),
        ("k", 3.0, 4),
        ("k", 3.0, 5),
    ]
    parser = TextMetricsParser()
    assert pairs(feed_in_chunks(parser, log, itertools.repeat(size)) + parser.finish()) == expected


def test_distinct_names_are_capped_without_a_filter() -> None:
    log = b"".join(b"m%d=1\n" % i for i in range(MAX_METRIC_NAMES + 50))
    points = text_points(log)
    assert len(points) == MAX_METRIC_NAMES
    assert (
        len(text_points(log, names=[f"m{i}" for i in range(MAX_METRIC_NAMES, MAX_METRIC_NAMES + 50)])) == 50
    )


# --- state: resuming after a restart ----------------------------------------------------------


def random_text_log(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(50, 200)):
        kind = rng.random()
        if kind < 0.1:
            lines.append(f"step={rng.randint(0, 1000)}")
        elif kind < 0.15:
            lines.append("é" * rng.randint(1, 5) + " ✓ " + "x" * rng.randint(0, MAX_LINE_BYTES + 10))
        else:
            fields = [
                f"{rng.choice(['loss', 'acc', 'val-loss', 'lr'])}={rng.uniform(-5, 5):.6g}" for _ in range(3)
            ]
            lines.append(f"Épocha {rng.randint(1, 9)} — " + " ".join(fields))
    return "\r\n".join(lines).encode() + rng.choice([b"", b"\n", b"\r\n", b" loss=9"])


def random_json_log(rng: random.Random) -> bytes:
    lines = []
    for i in range(rng.randint(50, 200)):
        kind = rng.random()
        if kind < 0.1:
            lines.append("{not json")
        elif kind < 0.15:
            lines.append("[1, 2]")
        else:
            obj: dict[str, Any] = {"loss": f"{rng.uniform(0, 1):.6g}", "acc": rng.uniform(0, 1), "note": "é✓"}
            if rng.random() < 0.3:
                obj["step"] = i
            if rng.random() < 0.5:
                obj["timestamp"] = 1_700_000_000 + i
            lines.append(json.dumps(obj, ensure_ascii=False))
    return "\n".join(lines).encode()


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(
    ("factory", "make_log"),
    [
        (TextMetricsParser, random_text_log),
        (lambda **kw: TextMetricsParser(names=["loss", "acc", "step"], **kw), random_text_log),
        (JsonLinesMetricsParser, random_json_log),
    ],
    ids=["text", "text-names", "jsonlines"],
)
def test_state_round_trip_continues_exactly(
    seed: int,
    factory: Callable[..., TextMetricsParser | JsonLinesMetricsParser],
    make_log: Callable[[random.Random], bytes],
) -> None:
    rng = random.Random(seed)
    log = make_log(rng)
    single = factory()
    expected = single.feed(log) + single.finish()
    assert expected

    def sizes() -> int:
        return rng.choice([1, 2, 3, 5, 64, 1000, 70_000])

    cut = rng.randrange(len(log))
    parser = factory()
    points = feed_in_chunks(parser, log[:cut], iter(sizes, None))
    state = json.loads(json.dumps(parser.state()))
    assert state["offset"] == cut
    resumed = factory(state=state)
    points += feed_in_chunks(resumed, log[cut:], iter(sizes, None)) + resumed.finish()
    assert points == expected
    assert resumed.state()["offset"] == len(log)


def test_state_of_another_kind_or_garbage_is_refused() -> None:
    text_state = TextMetricsParser().state()
    with pytest.raises(ValueError, match="jsonlines"):
        JsonLinesMetricsParser(state=text_state)
    for bad in (
        {},
        {**text_state, "version": 99},
        {**text_state, "buffer": "!!"},
        {**text_state, "counts": []},
    ):
        with pytest.raises(ValueError, match="not a state"):
            TextMetricsParser(state=bad)


# --- JSON lines ----------------------------------------------------------------------------


def test_json_lines_katib_example() -> None:
    line = (
        b'{"checkpoint_path": "", "global_step": "0", "loss": "0.22082142531871796", '
        b'"timestamp": 1638422847.28721, "trial": "0"}\n'
    )
    parser = JsonLinesMetricsParser(names=["loss"])
    assert parser.feed(line) == [MetricPoint("loss", 0.22082142531871796, 1, 1638422847.28721)]
    everything = JsonLinesMetricsParser().feed(line)
    assert [p.name for p in everything] == ["global_step", "loss", "trial"]


def test_json_lines_steps_and_timestamps() -> None:
    log = (
        b'{"step": 5, "loss": 0.5, "timestamp": "2021-12-02T05:27:27.5Z"}\n'
        b'{"loss": 0.4, "timestamp": "1638422847"}\n'
        b'{"step": "6.0", "loss": 0.3, "timestamp": "2021-12-02T06:27:27.123456789+01:00"}\n'
        b'{"step": 7.5, "loss": 0.2, "timestamp": "yesterday"}\n'
        b'{"epoch": 2, "loss": 0.1, "timestamp": "2021-12-02T05:27:27"}\n'
    )
    points = JsonLinesMetricsParser(names=["loss", "step"]).feed(log)
    assert [(p.name, p.value, p.step) for p in points] == [
        ("step", 5.0, 5),
        ("loss", 0.5, 5),
        ("loss", 0.4, 5),
        ("step", 6.0, 6),
        ("loss", 0.3, 6),
        ("step", 7.5, 6),
        ("loss", 0.2, 6),
        ("loss", 0.1, 6),
    ]
    stamps = [p.timestamp for p in points if p.name == "loss"]
    assert stamps[0] == 1638422847.5
    assert stamps[1] == 1638422847.0
    assert stamps[2] == pytest.approx(1638422847.123456)
    assert stamps[3] is None
    assert stamps[4] == 1638422847.0  # no offset: UTC
    by_epoch = JsonLinesMetricsParser(names=["loss"], step_key="epoch").feed(log)
    assert [p.step for p in by_epoch] == [1, 2, 3, 4, 2]


def test_json_lines_skip_what_is_not_a_metric() -> None:
    log = (
        b'not json\n[1, 2]\n42\n"loss"\n\n{bad\n'
        + b"[" * 60_000  # deeper than json can recurse
        + b"\n"
        + b'{"a": true, "b": {"x": 1}, "c": NaN, "d": "abc", "e": 1e400, "f": null, "g": [1], "h": " 2.5 ", "i": 3}\n'
        + b'{"big": '
        + b"9" * 5000
        + b', "j": 1}\n'
    )
    assert [(p.name, p.value) for p in JsonLinesMetricsParser().feed(log)] == [("h", 2.5), ("i", 3.0)]


# --- TensorFlow event files: framing and CRC without TensorFlow ---------------------------------


def test_crc32c_known_values() -> None:
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720, B.4
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(b"6789", crc32c(b"12345")) == 0xE3069283
    crc = crc32c(b"abc")
    assert masked_crc32c(b"abc") == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def test_missing_directory_has_no_points(tmp_path: Path) -> None:
    reader = TFEventsReader(tmp_path / "not-yet")
    assert reader.read_new() == []
    assert reader.state() == {"version": 1, "offsets": {}}
    with pytest.raises(ValueError, match="not a state"):
        TFEventsReader(tmp_path, state={"version": 1, "offsets": {"a": -1}})


# --- TensorFlow event files written by TensorFlow -------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, wire_type: int, payload: bytes) -> bytes:
    key = varint(number << 3 | wire_type)
    return key + (varint(len(payload)) + payload if wire_type == 2 else payload)


def unpacked_summary(tag: str, tensor: bytes) -> bytes:
    """An Event's field 5 (Summary{1: Value{1: tag, 8: tensor}}), written by hand."""
    value = field(1, 2, tag.encode()) + field(8, 2, tensor)
    return field(5, 2, field(1, 2, value))


@pytest.fixture(scope="module")
def tf_events(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tf = pytest.importorskip("tensorflow")
    np = pytest.importorskip("numpy")
    root = tmp_path_factory.mktemp("tfevents")
    metadata = tf.compat.v1.SummaryMetadata(
        plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
    )

    def scalar(tag: str, value: float, step: int) -> None:
        try:
            tf.summary.scalar(tag, value, step=step)
        except Exception as exc:  # TBNotInstalledError: what TensorBoard's scalar() writes
            if "TensorBoard" not in str(exc):
                raise
            tf.summary.write(tag, tf.cast(value, tf.float32), step=step, metadata=metadata)

    started = time.time()
    logdir = root / "logdir"
    expected: dict[str, list[tuple[float, int]]] = {"train/loss": [], "validation/loss": [], "accuracy": []}
    for sub, values in (("train", [0.9, 0.5, 0.25, 0.1]), ("validation", [1.1, 0.7, 1 / 3, 0.2])):
        writer = tf.summary.create_file_writer(str(logdir / sub))
        with writer.as_default():
            for step, v in enumerate(values):
                scalar("loss", v, step)
                expected[f"{sub}/loss"].append((v, step))
        writer.close()
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for step in (10, 20):
            scalar("accuracy", step / 100, step)
            expected["accuracy"].append((step / 100, step))
        tf.summary.write("vector", tf.constant([1.0, 2.0]), step=1)  # not a scalar: skipped
    writer.close()

    tf1: tuple[str, float, int] | None = None
    try:
        with tf.Graph().as_default():
            file_writer = tf.compat.v1.summary.FileWriter(str(logdir / "tf1"))
            summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag="acc", simple_value=0.625)])
            file_writer.add_summary(summary, global_step=4)
            file_writer.close()
        tf1 = ("acc", 0.625, 4)
    except (AttributeError, RuntimeError, NotImplementedError):
        pass

    # Every TensorProto encoding a scalar can take, in one Event written by TFRecordWriter.
    value = tf.compat.v1.Summary.Value
    protos = {
        "float_val": tf.make_tensor_proto(np.float32(2.5)),
        "double_val": tf.make_tensor_proto(np.float64(0.1)),
        "int_val": tf.make_tensor_proto(np.int32(-3)),
        "int64_val": tf.make_tensor_proto(np.int64(-(2**40))),
        "half_val": tf.make_tensor_proto(np.float16(1.5)),
        "one_element": tf.make_tensor_proto(np.array([[4.0]], dtype=np.float64)),
        "vector": tf.make_tensor_proto(np.array([1.0, 2.0], dtype=np.float32)),
        "empty": tf.make_tensor_proto(np.array([], dtype=np.float32)),
    }
    content = {"content_int32": (np.int32, 3, -7), "content_double": (np.float64, 2, 0.3)}
    for tag, (dtype, enum, v) in content.items():
        protos[tag] = tf.make_tensor_proto(np.array([0], dtype=dtype))
        protos[tag].ClearField("int_val" if enum == 3 else "double_val")
        protos[tag].tensor_shape.ClearField("dim")
        protos[tag].tensor_content = np.array(v, dtype=dtype).tobytes()
    event = tf.compat.v1.Event(
        wall_time=1_700_000_000.25,
        step=9,
        summary=tf.compat.v1.Summary(
            value=[value(tag="simple", simple_value=-0.75)]
            + [value(tag=t, tensor=p) for t, p in protos.items()]
        ),
    ).SerializeToString()
    # and repeated fields not packed (older writers), which protobuf no longer writes itself
    event += unpacked_summary("unpacked_float", field(1, 0, varint(1)) + field(5, 5, struct.pack("<f", 0.5)))
    event += unpacked_summary("unpacked_double", field(1, 0, varint(2)) + field(6, 1, struct.pack("<d", 0.2)))
    event += unpacked_summary("unpacked_int64", field(1, 0, varint(9)) + field(10, 0, varint(-5)))
    crafted = root / "crafted"
    crafted.mkdir()
    with tf.io.TFRecordWriter(str(crafted / "events.out.tfevents.crafted")) as record_writer:
        record_writer.write(
            tf.compat.v1.Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString()
        )
        record_writer.write(event)

    # A file that grows: its bytes after two steps and after five.
    grow = root / "grow"
    writer = tf.summary.create_file_writer(str(grow))
    with writer.as_default():
        for step in range(5):
            scalar("loss", 1 / (step + 1), step)
            if step == 1:
                writer.flush()
                (grow_file,) = grow.iterdir()
                first = grow_file.read_bytes()
    writer.close()
    return {
        "logdir": logdir,
        "expected": expected,
        "tf1": tf1,
        "crafted": crafted,
        "grow_name": grow_file.name,
        "grow_first": first,
        "grow_all": grow_file.read_bytes(),
        "written_between": (started, time.time()),
    }


def f32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def by_name(points: list[MetricPoint]) -> dict[str, list[tuple[float, int]]]:
    out: dict[str, list[tuple[float, int]]] = {}
    for p in points:
        out.setdefault(p.name, []).append((p.value, p.step))
    return out


@pytest.mark.tensorflow
def test_tf2_scalars_values_steps_names_and_times(tf_events: dict[str, Any]) -> None:
    expected = {name: [(f32(v), s) for v, s in pts] for name, pts in tf_events["expected"].items()}
    points = TFEventsReader(
        tf_events["logdir"], names=["train/loss", "validation/loss", "accuracy"]
    ).read_new()
    assert by_name(points) == expected
    low, high = tf_events["written_between"]
    assert all(low <= (p.timestamp or 0) <= high for p in points)

    # names=None: under the tag
    everything = by_name(TFEventsReader(tf_events["logdir"]).read_new())
    assert everything["accuracy"] == expected["accuracy"]
    assert sorted(everything["loss"]) == sorted(expected["train/loss"] + expected["validation/loss"])
    assert "vector" not in everything

    # "loss" is the tag in both subdirectories; asking for both forms gets both
    train_and_tag = by_name(TFEventsReader(tf_events["logdir"], names=["loss", "train/loss"]).read_new())
    assert train_and_tag["train/loss"] == expected["train/loss"]
    assert sorted(train_and_tag["loss"]) == sorted(expected["train/loss"] + expected["validation/loss"])


@pytest.mark.tensorflow
def test_tf1_simple_value(tf_events: dict[str, Any]) -> None:
    if tf_events["tf1"] is None:
        pytest.skip("tf.compat.v1.summary.FileWriter is not available in this TensorFlow")
    tag, value, step = tf_events["tf1"]
    points = TFEventsReader(tf_events["logdir"], names=[tag, f"tf1/{tag}"]).read_new()
    assert pairs(points) == [(tag, value, step), (f"tf1/{tag}", value, step)]


@pytest.mark.tensorflow
def test_every_scalar_encoding(tf_events: dict[str, Any]) -> None:
    points = TFEventsReader(tf_events["crafted"]).read_new()
    assert {p.step for p in points} == {9}
    assert {p.timestamp for p in points} == {1_700_000_000.25}
    assert dict((p.name, p.value) for p in points) == {
        "simple": -0.75,
        "float_val": 2.5,
        "double_val": 0.1,
        "int_val": -3.0,
        "int64_val": -(2.0**40),
        "half_val": 1.5,
        "one_element": 4.0,
        "content_int32": -7.0,
        "content_double": 0.3,
        "unpacked_float": 0.5,
        "unpacked_double": 0.2,
        "unpacked_int64": -5.0,
    }


def copy_events(tf_events: dict[str, Any], directory: Path, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / tf_events["grow_name"]
    path.write_bytes(data)
    return path


@pytest.mark.tensorflow
def test_appended_events_come_once_and_a_partial_record_waits(
    tf_events: dict[str, Any], tmp_path: Path
) -> None:
    first, everything = tf_events["grow_first"], tf_events["grow_all"]
    assert everything.startswith(first)
    expected = [("loss", f32(1 / (s + 1)), s) for s in range(5)]

    path = copy_events(tf_events, tmp_path / "run" / "train", first)
    reader = TFEventsReader(tmp_path / "run", names=["loss"])
    assert pairs(reader.read_new()) == expected[:2]
    assert reader.read_new() == []
    assert reader.state()["offsets"] == {f"train/{path.name}": len(first)}

    # the rest arrives in pieces: inside a header, inside the data, inside the last CRC
    seen: list[MetricPoint] = []
    for end in (len(first) + 5, len(first) + 20, len(everything) - 1, len(everything)):
        path.write_bytes(everything[:end])
        seen += reader.read_new()
        if end == len(everything) - 1:
            assert pairs(seen) == expected[2:4]  # the last record lacks one byte of its CRC
        elif end < len(everything):
            assert seen == []
    assert pairs(seen) == expected[2:]

    # a state through JSON continues where it was: nothing again, then only what is new
    state = json.loads(json.dumps(reader.state()))
    with path.open("ab") as fh:
        fh.write(everything[len(first) :])  # the same three records once more
    resumed = TFEventsReader(tmp_path / "run", names=["loss"], state=state)
    assert pairs(resumed.read_new()) == expected[2:]
    assert resumed.read_new() == []


@pytest.mark.tensorflow
def test_a_corrupt_record_stops_its_file_and_is_logged_once(
    tf_events: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    everything = bytearray(tf_events["grow_all"])
    good = copy_events(tf_events, tmp_path / "good", bytes(everything))
    first = len(tf_events["grow_first"])
    everything[first + 14] ^= 0x01  # a data byte of the third scalar's record
    bad = copy_events(tf_events, tmp_path / "bad", bytes(everything))
    os.symlink(good, tmp_path / "bad" / "events.out.tfevents.link")  # links are not followed

    reader = TFEventsReader(tmp_path, names=["bad/loss", "good/loss"])
    with caplog.at_level(logging.WARNING, logger="lumiflow.controllers.metrics.tfevents"):
        first_read = by_name(reader.read_new())
        assert reader.read_new() == []
    assert [step for _value, step in first_read["bad/loss"]] == [0, 1]
    assert [step for _value, step in first_read["good/loss"]] == [0, 1, 2, 3, 4]
    assert reader.state()["offsets"][f"bad/{bad.name}"] == first
    warnings = [r for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(warnings) == 1
    assert "bad/" in warnings[0].getMessage()


def test_tensorboardx_writes_are_read(tmp_path: Path) -> None:
    tbx = pytest.importorskip("tensorboardX")
    writer = tbx.SummaryWriter(str(tmp_path / "tbx"))
    for step in range(3):
        writer.add_scalar("loss", 0.125 * step, step)
    writer.close()
    points = TFEventsReader(tmp_path, names=["loss", "tbx/loss"]).read_new()
    assert pairs(points) == [(name, 0.125 * step, step) for step in range(3) for name in ("loss", "tbx/loss")]
