"""Kubernetes quantities as lumiflow reads them."""

from __future__ import annotations

import pytest

from lumiflow.common.quantity import (
    Limits,
    QuantityError,
    Resources,
    format_cpu,
    format_memory,
    parse_count,
    parse_cpu,
    parse_memory,
)

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(("text", "cores"), [("500m", 0.5), ("2", 2.0), (1.5, 1.5), ("0.25", 0.25)])
def test_cpu(text: str, cores: float) -> None:
    assert parse_cpu(text) == pytest.approx(cores)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512Mi", 512 * 2**20),
        ("2Gi", 2 * 2**30),
        ("1G", 10**9),
        ("1e9", 10**9),
        ("100", 100),
        ("1.5Ki", 1536),
    ],
)
def test_memory(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("bad", ["lots", "-1", "1.5.2", "2XB", "", "1e400", "9" * 80, True, float("nan")])
def test_bad_quantities_are_refused(bad: object) -> None:
    with pytest.raises(QuantityError):
        parse_memory(bad)  # type: ignore[arg-type]


def test_counts_are_whole() -> None:
    assert parse_count("2") == 2
    with pytest.raises(QuantityError):
        parse_count("1.5")


def test_formatting_round_trips_common_values() -> None:
    assert format_cpu(0.5) == "500m"
    assert format_cpu(2.0) == "2"
    assert format_memory(512 * 2**20) == "512Mi"
    assert format_memory(int(23.6 * 2**30)) == "23.6Gi"


def test_limits_name_what_is_exceeded() -> None:
    limits = Limits(cpu=4, memory=2**30, workloads=2)
    assert limits.exceeded_by(Resources(cpu=3, memory=2**30, workloads=2)) == []
    over = limits.exceeded_by(Resources(cpu=5, memory=2**31, workloads=3))
    assert over == ["cpu 5/4", "memory 2Gi/1Gi", "workloads 3/2"]
    assert limits.dominant_share(Resources(cpu=2, workloads=2)) == 1.0
