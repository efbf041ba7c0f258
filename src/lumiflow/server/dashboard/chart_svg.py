"""The pieces the dashboard's charts (``charts.py``) are drawn from: escaping, number formats,
round axis ticks, linear scales, a cartesian frame and a legend.

Everything here builds plain strings; the only way user text gets in is :func:`esc`, which
escapes it for both element content and attribute values (quotes included) and drops the
characters XML cannot carry. Colours that depend on the data are SVG presentation attributes,
never ``style=""``: the dashboard's Content-Security-Policy (``style-src 'self'``) would block
inline styles, and ``dashboard.css`` still overrides presentation attributes where it wants to.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

SVG_NS = "http://www.w3.org/2000/svg"
#: Okabe & Ito's colour-blind-safe palette, less its yellow (unreadable on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#1d2330")
#: Rough advance of one character of the charts' 12px sans-serif text, for layout only.
CHAR_WIDTH = 6.6

_UNSAFE_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def esc(value: object, limit: int | None = None) -> str:
    """``value`` as text safe inside an element or a double-quoted attribute, cut to ``limit``."""
    text = _UNSAFE_XML.sub("", str(value))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return str(escape(text))


def fmt(value: float) -> str:
    """A coordinate, compactly: two decimals at most, no trailing zeros, never ``-0``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def num(value: float) -> str:
    """A data value for people: integers as such, anything else to six significant digits."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def as_float(value: object) -> float | None:
    """``value`` as a finite float, or None (missing, not a number, NaN or infinite)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Ticks:
    """Round tick values covering a data range; ``lo``/``hi`` is the axis's domain."""

    lo: float
    hi: float
    step: float
    values: tuple[float, ...]

    def label(self, value: float) -> str:
        if abs(value) < self.step / 2:
            return "0"
        if self.step >= 1e-4 and abs(value) < 1e6:
            decimals = max(0, math.ceil(-math.log10(self.step) - 1e-9))
            return f"{value:.{decimals}f}"
        return f"{value:.3g}"


def nice_ticks(lo: float, hi: float, *, count: int = 5, integer: bool = False) -> Ticks:
    """About ``count`` ticks at 1, 2 or 5 times a power of ten; the domain is widened to the
    outer ticks. A single value gets a range around it; ``integer`` keeps steps >= 1."""
    lo, hi = min(lo, hi), max(lo, hi)
    if hi == lo:
        pad = max(abs(lo) * 0.1, 1.0) if integer else (abs(lo) * 0.1 or 1.0)
        lo, hi = lo - pad, hi + pad
    span = hi - lo
    if not math.isfinite(span):
        return Ticks(lo, hi, math.inf, (lo, hi))
    raw = span / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if integer:
        step = max(step, 1.0)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    if last - first > 50:  # float trouble at extreme magnitudes: just the ends
        return Ticks(lo, hi, span, (lo, hi))
    values = tuple(i * step for i in range(first, last + 1))
    return Ticks(values[0], values[-1], step, values)


def scale(d0: float, d1: float, r0: float, r1: float) -> Callable[[float], float]:
    """The linear map of ``d0..d1`` onto ``r0..r1``; a point domain maps to the middle."""
    if d1 == d0:
        middle = (r0 + r1) / 2
        return lambda _value: middle
    factor = (r1 - r0) / (d1 - d0)
    return lambda value: r0 + (value - d0) * factor


def check_size(width: int, height: int) -> None:
    if width < 200 or height < 120:
        raise ValueError(f"a chart needs width >= 200 and height >= 120, got {width}x{height}")


def svg(kind: str, label: str, width: int, height: int, body: Sequence[str]) -> Markup:
    """The root element: scales down through ``viewBox`` (CSS gives it ``height: auto``)."""
    head = (
        f'<svg xmlns="{SVG_NS}" class="chart {kind}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{esc(label)}">'
    )
    return Markup(head + "".join(body) + "</svg>")


def empty(kind: str, label: str, width: int, height: int, message: str) -> Markup:
    text = (
        f'<text class="empty" x="{width / 2:g}" y="{height / 2:g}" text-anchor="middle">{esc(message)}</text>'
    )
    return svg(f"{kind} chart-empty", label, width, height, [text])


def line_swatch(colour: str, dash: str = "", css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line{klass} x1="0" y1="-4" x2="14" y2="-4" stroke="{colour}" stroke-width="2"{dashed}/>'


def legend(
    items: Sequence[tuple[str, str]], *, x0: float, y0: float, right: float, max_rows: int = 3
) -> tuple[str, float]:
    """A row of (label, swatch) entries from ``(x0, y0)``, wrapping before ``right``, ending in
    "+N more" past ``max_rows`` rows. Returns the markup and the baseline of its last row."""
    parts, x, y = ['<g class="legend">'], x0, y0
    for shown, (label, swatch) in enumerate(items):
        width = 18 + CHAR_WIDTH * min(len(label), 28) + 14
        if x > x0 and x + width > right:
            if y >= y0 + 16 * (max_rows - 1):
                parts.append(f'<text x="{fmt(x)}" y="{fmt(y)}">+{len(items) - shown} more</text>')
                break
            x, y = x0, y + 16
        parts.append(
            f'<g class="legend-item" transform="translate({fmt(x)},{fmt(y)})">{swatch}'
            f'<text x="18" y="0">{esc(label, 28)}</text></g>'
        )
        x += width
    parts.append("</g>")
    return "".join(parts), y


@dataclass(frozen=True)
class Frame:
    """A cartesian plot area with its axes drawn: ``x``/``y`` map data to SVG coordinates."""

    markup: str
    x: Callable[[float], float]
    y: Callable[[float], float]
    left: float
    right: float
    top: float
    bottom: float


def frame(*, width: int, height: int, top: float, xt: Ticks, yt: Ticks, x_label: str, y_label: str) -> Frame:
    """Grid lines, axes, tick labels and axis labels for a plot between ``top`` and the
    bottom margin; the left margin leaves room for y tick labels."""
    left, right, bottom = 62.0, width - 24.0, height - 40.0
    sx, sy = scale(xt.lo, xt.hi, left, right), scale(yt.lo, yt.hi, bottom, top)
    parts = ['<g class="grid">']
    parts += [
        f'<line x1="{fmt(left)}" x2="{fmt(right)}" y1="{fmt(sy(v))}" y2="{fmt(sy(v))}"/>' for v in yt.values
    ]
    parts.append('</g><g class="ticks y">')
    parts += [
        f'<text x="{fmt(left - 6)}" y="{fmt(sy(v) + 4)}" text-anchor="end">{yt.label(v)}</text>'
        for v in yt.values
    ]
    parts.append('</g><g class="ticks x">')
    parts += [
        f'<text x="{fmt(sx(v))}" y="{fmt(bottom + 16)}" text-anchor="middle">{xt.label(v)}</text>'
        for v in xt.values
    ]
    parts.append("</g>")
    parts.append(
        f'<path class="axis" d="M{fmt(left)},{fmt(top)}V{fmt(bottom)}H{fmt(right)}" fill="none"/>'
        f'<text class="axis-label x" x="{fmt((left + right) / 2)}" y="{height - 6}" '
        f'text-anchor="middle">{esc(x_label, 60)}</text>'
        f'<text class="axis-label y" x="14" y="{fmt((top + bottom) / 2)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {fmt((top + bottom) / 2)})">{esc(y_label, 40)}</text>'
    )
    return Frame("".join(parts), sx, sy, left, right, top, bottom)
