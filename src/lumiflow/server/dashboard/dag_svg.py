"""Pipeline graphs as server-rendered SVG: a run's DAG with its steps' states, and an
artifact's lineage. The layout is :mod:`dag_layout`'s; this module only draws.

As with the charts (:mod:`chart_svg`), every piece of user text (task and display names,
messages, parameter values, artifact names) goes through :func:`chart_svg.esc`, colours
come from ``dashboard.css`` through classes (``state-failed``, ``cached``, ``kind-loop``),
never ``style=""``, and each box carries ``data-node``/``data-state`` for tests and scripts.
A box links where the page says (a step's section, a run, another artifact's lineage).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup

from lumiflow.server.dashboard.chart_svg import SVG_NS, esc, fmt
from lumiflow.server.dashboard.dag_layout import Item, Placement, Rect, layout_tree, place

NODE_W = 190.0
NODE_H = 50.0
MARGIN = 12.0
#: Rough advance of a character of a box's name (bold 12px) and of its other lines (11px).
NAME_CHAR_WIDTH = 7.4
META_CHAR_WIDTH = 6.3
#: The characters that fit in a box (its width less its padding).
LABEL_CHARS = int((NODE_W - 22) / NAME_CHAR_WIDTH)
META_CHARS = int((NODE_W - 22) / META_CHAR_WIDTH)
GROUP_KINDS = ("condition", "loop", "exit-handler", "group", "iteration")


@dataclass
class GraphNode:
    """A box of a run's graph: a step, or a group (``kind`` in GROUP_KINDS) with children.

    ``id`` is the node's path in the run's status; a loop drawn compactly has one body for all
    its iterations, whose boxes have ids with ``[*]`` and ``count`` iterations summed up in
    ``summary``; ``link`` is the node a click selects (for a compact box, one of its instances).
    """

    id: str
    label: str
    kind: str = "step"
    state: str = "PENDING"
    cached: bool = False
    attempts: int = 0
    message: str = ""
    detail: str = ""
    link: str | None = None
    count: int | None = None
    summary: str = ""
    children: list[GraphNode] = field(default_factory=list)

    @property
    def is_group(self) -> bool:
        return self.kind in GROUP_KINDS


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    #: ``data`` (an argument reads an output), ``after`` (dependsOn), ``exit`` (an exit handler).
    kind: str = "after"


def _walk(nodes: Sequence[GraphNode]) -> list[GraphNode]:
    """Pre-order: a group before what it holds (so frames are drawn under their children)."""
    out: list[GraphNode] = []
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        out.append(node)
        stack += list(reversed(node.children))
    return out


def _state_class(state: str) -> str:
    return "state-" + "".join(ch for ch in state.lower() if ch.isalnum() or ch == "-") if state else ""


def _rect(css: str, r: Rect, rx: str) -> str:
    size = f'width="{fmt(r.w)}" height="{fmt(r.h)}"'
    return f'<rect class="{css}" x="{fmt(r.x)}" y="{fmt(r.y)}" {size} rx="{rx}"/>'


def _text(css: str, x: float, y: float, content: str) -> str:
    """``content`` must be escaped already."""
    return f'<text class="{css}" x="{fmt(x)}" y="{fmt(y)}">{content}</text>'


def _edge_path(a: Rect, b: Rect) -> str:
    x1, y1, x2, y2 = a.cx, a.bottom, b.cx, b.y
    bend = max(18.0, abs(y2 - y1) / 2)
    return f"M{fmt(x1)},{fmt(y1)} C{fmt(x1)},{fmt(y1 + bend)} {fmt(x2)},{fmt(y2 - bend)} {fmt(x2)},{fmt(y2)}"


def _svg(kind: str, label: str, placement: Placement, body: Sequence[str]) -> Markup:
    width = placement.width + 2 * MARGIN
    height = placement.height + 2 * MARGIN
    head = (
        f'<svg xmlns="{SVG_NS}" class="dag {kind}" viewBox="0 0 {fmt(width)} {fmt(height)}" '
        f'width="{fmt(width)}" height="{fmt(height)}" role="img" aria-label="{esc(label)}">'
        '<defs><marker id="dag-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0L10,5L0,10z" class="arrow"/></marker></defs>'
        f'<g transform="translate({fmt(MARGIN)},{fmt(MARGIN)})">'
    )
    return Markup(head + "".join(body) + "</g></svg>")


def _empty(kind: str, label: str, message: str) -> Markup:
    text = f'<text class="empty" x="12" y="24">{esc(message)}</text>'
    return Markup(
        f'<svg xmlns="{SVG_NS}" class="dag {kind} dag-empty" viewBox="0 0 400 40" width="400" height="40" '
        f'role="img" aria-label="{esc(label)}">{text}</svg>'
    )


# --- a run's graph -------------------------------------------------------------------------------


def _group_label(node: GraphNode) -> str:
    head = node.label
    if node.kind == "loop" and node.count is not None:
        head += f" ×{node.count}"
    return f"{head}: {node.detail}" if node.detail else head


def _group_width(node: GraphNode) -> float:
    text = len(_group_label(node)[:70]) + len(node.state) + 2
    return min(NAME_CHAR_WIDTH * text + 24, 600.0)


def _meta(node: GraphNode) -> str:
    if node.summary:
        return node.summary
    parts = [node.state.lower() if node.state else "not started"]
    if node.attempts > 1:
        parts.append(f"{node.attempts} attempts")
    return " · ".join(parts)


def run_graph(
    roots: Sequence[GraphNode], edges: Sequence[GraphEdge], *, href: Callable[[str], str], label: str
) -> Markup:
    """The DAG of a run: one box per step, groups as labelled frames around their children,
    arrows from ``edges``; ``href(node)`` is where a box leads."""
    if not roots:
        return _empty("run-graph", label, "this pipeline has no tasks")

    def item(node: GraphNode) -> Item:
        if node.is_group:
            return Item(node.id, (_group_width(node), 0.0), [item(c) for c in node.children], group=True)
        return Item(node.id, (NODE_W, NODE_H))

    placement = layout_tree([item(n) for n in roots], [(e.source, e.target) for e in edges])
    everything = _walk(roots)
    frames, boxes = ['<g class="groups">'], ['<g class="nodes">']
    for node in everything:
        r = placement.rects[node.id]
        state = _state_class(node.state)
        if node.is_group:
            frames.append(
                f'<g class="group kind-{node.kind} {state}" data-node="{esc(node.id)}" '
                f'data-state="{esc(node.state)}"><title>{esc(node.id)} {esc(node.state)}'
                f"{(' – ' + esc(node.message)) if node.message else ''}</title>"
                + _rect("frame", r, "8")
                + _text(
                    "group-label",
                    r.x + 10,
                    r.y + 17,
                    f'{esc(_group_label(node), 70)}<tspan class="group-state" dx="8">'
                    f"{esc(node.state.lower())}</tspan>",
                )
                + "</g>"
            )
            continue
        classes = f"node {state}" + (" cached" if node.cached else "") + (" compact" if node.count else "")
        title = f"{node.id}: {node.state}" + (f" – {node.message}" if node.message else "")
        badge = ""
        if node.cached:
            badge = (
                f'<g class="badge badge-cached"><rect x="{fmt(r.right - 52)}" y="{fmt(r.y + 5)}" width="46" '
                f'height="15" rx="7"/><text x="{fmt(r.right - 29)}" y="{fmt(r.y + 16)}" '
                'text-anchor="middle">cached</text></g>'
            )
        elif node.count is not None:
            badge = (
                f'<g class="badge badge-count"><rect x="{fmt(r.right - 42)}" y="{fmt(r.y + 5)}" width="36" '
                f'height="15" rx="7"/><text x="{fmt(r.right - 24)}" y="{fmt(r.y + 16)}" '
                f'text-anchor="middle">×{node.count}</text></g>'
            )
        name_chars = LABEL_CHARS - (7 if badge else 0)
        link = node.link if node.link is not None else node.id
        boxes.append(
            f'<a class="node-link" href="{esc(href(link))}"><g class="{classes}" data-node="{esc(node.id)}" '
            f'data-state="{esc(node.state)}"><title>{esc(title)}</title>'
            + _rect("box", r, "5")
            + _rect("stripe", Rect(r.x, r.y, 5, r.h), "2")
            + _text("node-name", r.x + 12, r.y + 20, esc(node.label, name_chars))
            + _text("node-meta", r.x + 12, r.y + 38, esc(_meta(node), META_CHARS))
            + f"{badge}</g></a>"
        )
    lines = ['<g class="edges">']
    for e in edges:
        if e.source in placement.rects and e.target in placement.rects:
            a, b = placement.rects[e.source], placement.rects[e.target]
            lines.append(
                f'<path class="edge edge-{esc(e.kind)}" data-from="{esc(e.source)}" '
                f'data-to="{esc(e.target)}" d="{_edge_path(a, b)}" fill="none" marker-end="url(#dag-arrow)"/>'
            )
    body = [*frames, "</g>", *lines, "</g>", *boxes, "</g>"]
    return _svg("run-graph", label, placement, body)


# --- lineage ---------------------------------------------------------------------------------------


@dataclass
class LineageBox:
    """An artifact (``kind="artifact"``, a rounded box) or an execution (a rectangle)."""

    id: str
    kind: str
    title: str
    lines: list[str] = field(default_factory=list)
    href: str | None = None
    state: str = ""
    focus: bool = False
    tooltip: str = ""


@dataclass(frozen=True)
class LineageEdge:
    source: str
    target: str
    kind: str  # INPUT (artifact -> execution) or OUTPUT (execution -> artifact)
    name: str = ""


LINEAGE_W = 240.0
LINE_H = 15.0
LINEAGE_NAME_CHARS = int((LINEAGE_W - 22) / NAME_CHAR_WIDTH)
LINEAGE_CHARS = int((LINEAGE_W - 22) / META_CHAR_WIDTH)


def lineage_graph(
    boxes: Sequence[LineageBox], edges: Sequence[LineageEdge], *, label: str, gap_y: float = 46.0
) -> Markup:
    if not boxes:
        return _empty("lineage-graph", label, "no lineage recorded")
    sizes = {b.id: (LINEAGE_W, 28.0 + LINE_H * len(b.lines)) for b in boxes}
    placement = place([b.id for b in boxes], [(e.source, e.target) for e in edges], sizes, gap_y=gap_y)
    body = ['<g class="edges">']
    for e in edges:
        if e.source in placement.rects and e.target in placement.rects:
            a, b = placement.rects[e.source], placement.rects[e.target]
            body.append(
                f'<path class="edge edge-{esc(e.kind.lower())}" data-from="{esc(e.source)}" '
                f'data-to="{esc(e.target)}" d="{_edge_path(a, b)}" fill="none" marker-end="url(#dag-arrow)"/>'
            )
            if e.name:
                body.append(
                    f'<text class="edge-label" x="{fmt((a.cx + b.cx) / 2 + 6)}" '
                    f'y="{fmt((a.bottom + b.y) / 2 + 4)}">{esc(e.name, 24)}</text>'
                )
    body.append('</g><g class="nodes">')
    for box in boxes:
        r = placement.rects[box.id]
        classes = f"{box.kind} {_state_class(box.state)}" + (" focus" if box.focus else "")
        rx = "14" if box.kind == "artifact" else "2"
        text = [_text("node-name", r.x + 12, r.y + 19, esc(box.title, LINEAGE_NAME_CHARS))]
        for i, line in enumerate(box.lines):
            text.append(
                f'<text class="node-meta" x="{fmt(r.x + 12)}" y="{fmt(r.y + 19 + LINE_H * (i + 1))}">'
                f"{esc(line, LINEAGE_CHARS)}</text>"
            )
        shape = (
            f'<g class="{classes}" data-node="{esc(box.id)}" data-kind="{esc(box.kind)}">'
            f"<title>{esc(box.tooltip or box.title)}</title>" + _rect("box", r, rx) + f"{''.join(text)}</g>"
        )
        body.append(f'<a class="node-link" href="{esc(box.href)}">{shape}</a>' if box.href else shape)
    body.append("</g>")
    return _svg("lineage-graph", label, placement, body)
