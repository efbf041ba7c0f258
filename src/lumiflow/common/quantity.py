"""Kubernetes resource quantities (``500m``, ``2Gi``, ``1e9``) and resource vectors.

The grammar is Kubernetes' own (``k8s.io/apimachinery/pkg/api/resource``): a signed decimal
number with an optional binary suffix (Ki Mi Gi Ti Pi Ei), decimal suffix (n u m k M G T P E)
or exponent. CPU is kept as a float number of cores, memory as an integer number of bytes,
GPUs as an integer count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")

# Larger than any machine; keeps hostile values ("1e300") from turning into inf/overflow.
MAX_QUANTITY = Decimal(2) ** 70

GPU_KEYS = ("nvidia.com/gpu", "amd.com/gpu", "gpu")


class QuantityError(ValueError):
    """A value is not a Kubernetes quantity."""


def parse_quantity(value: str | int | float) -> Decimal:
    """Parse a quantity into an exact decimal; raise :class:`QuantityError` with the reason."""
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise QuantityError(f"{value!r} is not a finite quantity")
        number = Decimal(str(value))
    else:
        text = str(value).strip()
        if len(text) > 64:
            raise QuantityError("quantity is longer than 64 characters")
        match = _QUANTITY.match(text)
        if not match:
            raise QuantityError(f"{value!r} is not a quantity (examples: 500m, 2, 1.5, 512Mi, 4Gi, 1e9)")
        digits, suffix = match.group(1), match.group(2) or ""
        try:
            base = Decimal(digits)
        except InvalidOperation as exc:  # pragma: no cover - the regex already guards
            raise QuantityError(f"{value!r} is not a number") from exc
        if suffix in _BINARY:
            number = base * _BINARY[suffix]
        elif suffix in _DECIMAL:
            number = base * _DECIMAL[suffix]
        else:
            exponent = int(suffix[1:])
            if abs(exponent) > 30:
                raise QuantityError(f"{value!r}: exponent out of range")
            number = base * (Decimal(10) ** exponent)
    if number < 0:
        raise QuantityError(f"{value!r} is negative")
    if number > MAX_QUANTITY:
        raise QuantityError(f"{value!r} is too large")
    return number


def parse_cpu(value: str | int | float) -> float:
    return float(parse_quantity(value))


def parse_memory(value: str | int | float) -> int:
    return int(parse_quantity(value).to_integral_value(rounding="ROUND_CEILING"))


def parse_count(value: str | int | float) -> int:
    number = parse_quantity(value)
    if number != number.to_integral_value():
        raise QuantityError(f"{value!r} must be a whole number")
    return int(number)


def format_cpu(cores: float) -> str:
    if cores == int(cores):
        return str(int(cores))
    millis = round(cores * 1000)
    return f"{millis}m"


def format_memory(num_bytes: int) -> str:
    """Binary units: exact when the value is a whole number of them (``512Mi``), else one
    decimal of the largest unit that fits (``23.6Gi``)."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if num_bytes >= unit:
            if num_bytes % unit == 0:
                return f"{num_bytes // unit}{suffix}"
            return f"{num_bytes / unit:.1f}{suffix}"
    return str(num_bytes)


@dataclass(frozen=True, slots=True)
class Resources:
    """A resource vector: cpu cores, memory bytes, GPUs, and a count of workloads."""

    cpu: float = 0.0
    memory: int = 0
    gpu: int = 0
    workloads: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            cpu=self.cpu + other.cpu,
            memory=self.memory + other.memory,
            gpu=self.gpu + other.gpu,
            workloads=self.workloads + other.workloads,
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            cpu=self.cpu - other.cpu,
            memory=self.memory - other.memory,
            gpu=self.gpu - other.gpu,
            workloads=self.workloads - other.workloads,
        )

    def scaled(self, factor: int) -> Resources:
        return Resources(
            cpu=self.cpu * factor,
            memory=self.memory * factor,
            gpu=self.gpu * factor,
            workloads=self.workloads * factor,
        )

    def as_dict(self) -> dict[str, str]:
        return {
            "cpu": format_cpu(self.cpu),
            "memory": format_memory(self.memory),
            "nvidia.com/gpu": str(self.gpu),
            "workloads": str(self.workloads),
        }


_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds for a resource vector; ``None`` means unbounded for that resource."""

    cpu: float | None = None
    memory: int | None = None
    gpu: int | None = None
    workloads: int | None = None

    def exceeded_by(self, used: Resources) -> list[str]:
        """Names the resources whose bound ``used`` exceeds, with used/limit figures."""
        over: list[str] = []
        if self.cpu is not None and used.cpu > self.cpu + _EPS:
            over.append(f"cpu {format_cpu(used.cpu)}/{format_cpu(self.cpu)}")
        if self.memory is not None and used.memory > self.memory:
            over.append(f"memory {format_memory(used.memory)}/{format_memory(self.memory)}")
        if self.gpu is not None and used.gpu > self.gpu:
            over.append(f"gpu {used.gpu}/{self.gpu}")
        if self.workloads is not None and used.workloads > self.workloads:
            over.append(f"workloads {used.workloads}/{self.workloads}")
        return over

    def dominant_share(self, used: Resources) -> float:
        """The largest fraction of any bounded resource that ``used`` takes (DRF's measure)."""
        shares = [0.0]
        for limit, value in (
            (self.cpu, used.cpu),
            (self.memory, used.memory),
            (self.gpu, used.gpu),
            (self.workloads, used.workloads),
        ):
            if limit is not None and limit > 0:
                shares.append(float(value) / float(limit))
        return max(shares)
