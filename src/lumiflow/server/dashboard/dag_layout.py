"""A layered layout of a DAG, and of DAGs nested in groups, written by hand (no graph library).

It follows the frame of Sugiyama's method, kept simple enough to read in one sitting:

1. **Layers** by longest path from the sources: a node sits one row below its lowest
   predecessor, so every edge points downward. Edges that would close a cycle (found by a
   depth-first search in the nodes' given order) are left out of the layering; a pipeline
   has none, a lineage graph should have none, but a drawing must not loop forever if it does.
2. **Order in a row**: the given order, then one downward barycentre sweep (a node moves
   towards the mean position of its predecessors), ties kept in the given order. The result
   is stable: the same graph is always drawn the same way, so a live page does not jump.
3. **Placement**: rows stacked top to bottom, boxes top-aligned, in their order with fixed
   gaps; a box goes under its predecessors (sweeps down) and over its successors (a sweep
   up) as near as the gaps allow, found by isotonic regression (pool adjacent
   violators), so edges run short.

Long edges are not routed around boxes (no dummy nodes): the drawing bends them as curves.

Groups (a pipeline's conditions, loops and exit handlers) are laid out bottom-up: a group's
children are placed as a DAG of their own, and the group becomes a box just big enough for
them, its label and a padding. An edge between nodes in different groups counts, for layering,
between the two ancestors that are siblings (``a/x -> b/y`` orders ``a`` before ``b``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

GAP_X = 24.0
GAP_Y = 40.0
#: A group's label band above its children, and its padding on the other sides.
HEADER = 26.0
PAD = 12.0


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    def overlaps(self, other: Rect) -> bool:
        """Whether the two share any area (touching edges do not count)."""
        return (
            self.x < other.right and other.x < self.right and self.y < other.bottom and other.y < self.bottom
        )

    def contains(self, other: Rect) -> bool:
        return (
            self.x <= other.x
            and self.y <= other.y
            and other.right <= self.right
            and other.bottom <= self.bottom
        )

    def moved(self, dx: float, dy: float) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.w, self.h)


@dataclass(frozen=True)
class Placement:
    rects: dict[str, Rect]
    width: float
    height: float


def _edges_between(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    known = set(nodes)
    seen: set[tuple[str, str]] = set()
    out = []
    for a, b in edges:
        if a in known and b in known and a != b and (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


def acyclic(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The edges between ``nodes`` less those closing a cycle, found by an iterative
    depth-first search visiting nodes and successors in the given order."""
    kept = _edges_between(nodes, edges)
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in kept:
        succ[a].append(b)
    back: set[tuple[str, str]] = set()
    colour: dict[str, int] = {}  # 1: on the stack, 2: done
    for start in nodes:
        if start in colour:
            continue
        colour[start] = 1
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, i = stack[-1]
            if i < len(succ[node]):
                stack[-1] = (node, i + 1)
                nxt = succ[node][i]
                state = colour.get(nxt)
                if state == 1:
                    back.add((node, nxt))
                elif state is None:
                    colour[nxt] = 1
                    stack.append((nxt, 0))
            else:
                colour[node] = 2
                stack.pop()
    return [e for e in kept if e not in back]


def layers(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Each node's row: 0 for a node without predecessors, else one more than the deepest."""
    kept = acyclic(nodes, edges)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in kept:
        preds[b].append(a)
        succ[a].append(b)
    waiting = {n: len(preds[n]) for n in nodes}
    ready = [n for n in nodes if waiting[n] == 0]
    layer: dict[str, int] = {}
    while ready:
        node = ready.pop(0)
        layer[node] = max((layer[p] + 1 for p in preds[node]), default=0)
        for nxt in succ[node]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    return layer


def rows(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The nodes by row, each row in drawing order (see the module's notes)."""
    kept = acyclic(nodes, edges)
    layer = layers(nodes, kept)
    out: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for n in nodes:
        out[layer[n]].append(n)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in kept:
        preds[b].append(a)
    where: dict[str, float] = {}
    for row in out:
        keys = {}
        for i, n in enumerate(row):
            own = (i + 0.5) / len(row)
            placed = [where[p] for p in preds[n] if p in where]
            keys[n] = sum(placed) / len(placed) if placed else own
        row.sort(key=lambda n: keys[n])  # stable: ties stay in the given order
        for i, n in enumerate(row):
            where[n] = (i + 0.5) / len(row)
    return out


def _fit(wanted: Sequence[float], widths: Sequence[float], gap: float) -> list[float]:
    """Left edges as close as possible (least squares) to ``wanted``, in the given order,
    ``gap`` apart: an isotonic regression by pool-adjacent-violators. With ``offset[i]`` the
    room the boxes before ``i`` take, ``x[i] - offset[i]`` must not decrease."""
    offsets, total = [], 0.0
    for w in widths:
        offsets.append(total)
        total += w + gap
    blocks: list[list[float]] = []  # [mean, count]
    for want, offset in zip(wanted, offsets, strict=True):
        blocks.append([want - offset, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            blocks[-1][0] = (blocks[-1][0] * blocks[-1][1] + mean * count) / (blocks[-1][1] + count)
            blocks[-1][1] += count
    out: list[float] = []
    for mean, count in blocks:
        out += [mean] * int(count)
    return [c + offset for c, offset in zip(out, offsets, strict=True)]


def place(
    nodes: Sequence[str],
    edges: Iterable[tuple[str, str]],
    sizes: Mapping[str, tuple[float, float]],
    *,
    gap_x: float = GAP_X,
    gap_y: float = GAP_Y,
) -> Placement:
    """Boxes of the given sizes in rows (top-down); coordinates from 0,0.

    Each row starts centred; then a sweep down puts each box under the mean centre of its
    predecessors, a sweep up over the mean centre of its successors and a last sweep down
    under its predecessors again (a box is nearest what feeds it), as close as the row's
    order and gaps allow (:func:`_fit`) within the widest row's width, so that edges run short
    and mostly straight and the drawing is no wider than it must be."""
    ordered = rows(nodes, edges)
    kept = acyclic(nodes, edges)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in kept:
        preds[b].append(a)
        succ[a].append(b)
    x: dict[str, float] = {}
    widths = [sum(sizes[n][0] for n in row) + gap_x * (len(row) - 1) for row in ordered]
    bound = max(widths, default=0.0) / 2
    for row, width in zip(ordered, widths, strict=True):
        left = -width / 2
        for n in row:
            x[n] = left
            left += sizes[n][0] + gap_x

    def centre(n: str) -> float:
        return x[n] + sizes[n][0] / 2

    def sweep(sequence: Sequence[list[str]], towards: Mapping[str, list[str]]) -> None:
        for row in sequence:
            wanted = [
                sum(centre(m) for m in towards[n]) / len(towards[n]) - sizes[n][0] / 2 if towards[n] else x[n]
                for n in row
            ]
            fitted = _fit(wanted, [sizes[n][0] for n in row], gap_x)
            # Never wider than the widest row: push back what spills over either side.
            for i in range(len(row)):
                low = -bound if i == 0 else fitted[i - 1] + sizes[row[i - 1]][0] + gap_x
                fitted[i] = max(fitted[i], low)
            for i in range(len(row) - 1, -1, -1):
                high = bound if i == len(row) - 1 else fitted[i + 1] - gap_x
                fitted[i] = min(fitted[i], high - sizes[row[i]][0])
            for n, value in zip(row, fitted, strict=True):
                x[n] = value

    sweep(ordered[1:], preds)
    sweep(ordered[-2::-1], succ)
    sweep(ordered[1:], preds)
    left_edge = min(x.values(), default=0.0)
    rects: dict[str, Rect] = {}
    y = 0.0
    for row in ordered:
        for n in row:
            w, h = sizes[n]
            rects[n] = Rect(x[n] - left_edge, y, w, h)
        y += max(sizes[n][1] for n in row) + gap_y
    width = max((r.right for r in rects.values()), default=0.0)
    return Placement(rects, width, max(y - gap_y, 0.0))


@dataclass
class Item:
    """A box to lay out: a leaf of ``size``, or a group whose ``size`` is its smallest (the
    label's width, the header's height) and whose children are laid out inside it."""

    id: str
    size: tuple[float, float]
    children: list[Item] = field(default_factory=list)
    group: bool = False


def _parents(items: Sequence[Item]) -> dict[str, str | None]:
    parent: dict[str, str | None] = {}
    stack: list[tuple[Item, str | None]] = [(i, None) for i in items]
    while stack:
        item, up = stack.pop()
        parent[item.id] = up
        stack += [(c, item.id) for c in item.children]
    return parent


def lifted(
    items: Sequence[Item], edges: Iterable[tuple[str, str]]
) -> dict[str | None, list[tuple[str, str]]]:
    """Each edge as an edge between the two siblings that hold its ends, by their parent
    (None: the top level); an edge between a group and something inside it is dropped."""
    parent = _parents(items)

    def chain(node: str) -> list[str]:
        out: list[str] = []
        current: str | None = node
        while current is not None:
            out.append(current)
            current = parent[current]
        return out[::-1]

    by_scope: dict[str | None, list[tuple[str, str]]] = {}
    for a, b in edges:
        if a not in parent or b not in parent:
            continue
        ca, cb = chain(a), chain(b)
        i = 0
        while i < min(len(ca), len(cb)) and ca[i] == cb[i]:
            i += 1
        if i == len(ca) or i == len(cb):
            continue
        by_scope.setdefault(ca[i - 1] if i else None, []).append((ca[i], cb[i]))
    return by_scope


def layout_tree(
    items: Sequence[Item],
    edges: Iterable[tuple[str, str]],
    *,
    header: float = HEADER,
    pad: float = PAD,
    gap_x: float = GAP_X,
    gap_y: float = GAP_Y,
) -> Placement:
    """Every item (groups and what they hold) placed; coordinates from 0,0."""
    scoped = lifted(items, edges)
    inner: dict[str, Placement] = {}
    sizes: dict[str, tuple[float, float]] = {}

    def measure(item: Item) -> tuple[float, float]:
        if not item.group:
            sizes[item.id] = item.size
            return item.size
        for child in item.children:
            measure(child)
        placed = place(
            [c.id for c in item.children],
            scoped.get(item.id, []),
            sizes,
            gap_x=gap_x,
            gap_y=gap_y,
        )
        inner[item.id] = placed
        body = placed.height + pad if item.children else 0.0
        size = (max(item.size[0], placed.width + 2 * pad), max(item.size[1], header) + body)
        sizes[item.id] = size
        return size

    for item in items:
        measure(item)
    top = place([i.id for i in items], scoped.get(None, []), sizes, gap_x=gap_x, gap_y=gap_y)
    rects: dict[str, Rect] = {}

    def settle(item: Item, rect: Rect) -> None:
        rects[item.id] = rect
        if not item.group:
            return
        placed = inner[item.id]
        dx = rect.x + (rect.w - placed.width) / 2
        dy = rect.y + max(item.size[1], header)
        for child in item.children:
            settle(child, placed.rects[child.id].moved(dx, dy))

    for item in items:
        settle(item, top.rects[item.id])
    return Placement(rects, top.width, top.height)
