"""The hand-written layered layout: rows follow the edges, boxes never overlap, groups hold
their children, cycles do not hang it, and the same graph is always drawn the same way."""

from __future__ import annotations

import itertools
import random

import pytest

from lumiflow.server.dashboard.dag_layout import (
    GAP_X,
    GAP_Y,
    Item,
    Rect,
    _fit,
    acyclic,
    layers,
    layout_tree,
    lifted,
    place,
    rows,
)

pytestmark = pytest.mark.timeout(60)


def random_dag(rng: random.Random, n: int, p: float) -> tuple[list[str], list[tuple[str, str]]]:
    """Nodes in a shuffled order, edges only from a lower to a higher hidden rank."""
    nodes = [f"n{i}" for i in range(n)]
    edges = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :] if rng.random() < p]
    rng.shuffle(nodes)
    rng.shuffle(edges)
    return nodes, edges


def assert_no_overlaps(rects: dict[str, Rect]) -> None:
    for (a, ra), (b, rb) in itertools.combinations(rects.items(), 2):
        assert not ra.overlaps(rb), (a, ra, b, rb)


@pytest.mark.parametrize("seed", range(25))
def test_random_dags_keep_edges_downward_and_boxes_apart(seed: int) -> None:
    rng = random.Random(seed)
    nodes, edges = random_dag(rng, rng.randint(1, 30), rng.choice([0.05, 0.15, 0.4]))
    sizes = {n: (rng.choice([120.0, 190.0, 300.0]), rng.choice([40.0, 50.0, 90.0])) for n in nodes}
    layer = layers(nodes, edges)
    placed = place(nodes, edges, sizes)
    assert set(placed.rects) == set(nodes)
    for a, b in edges:
        assert layer[a] < layer[b], (a, b)
        assert placed.rects[a].bottom + GAP_Y <= placed.rects[b].y + 1e-9, (a, b)
    # Longest path: a node not at the top has a predecessor exactly one row up.
    for n in nodes:
        if layer[n]:
            assert any(layer[a] == layer[n] - 1 for a, b in edges if b == n), n
    assert_no_overlaps(placed.rects)
    widest = max(sum(sizes[n][0] for n in row) + GAP_X * (len(row) - 1) for row in rows(nodes, edges))
    assert placed.width == pytest.approx(widest)  # no wider than it must be
    for r in placed.rects.values():
        assert (
            r.x >= -1e-9 and r.y >= 0 and r.right <= placed.width + 1e-9 and r.bottom <= placed.height + 1e-9
        )
    # Stable: the same input draws the same picture.
    assert place(nodes, edges, sizes) == placed


def test_boxes_in_a_row_keep_their_gap_and_order() -> None:
    nodes = ["root", "a", "b", "c"]
    edges = [("root", "a"), ("root", "b"), ("root", "c")]
    placed = place(nodes, edges, {n: (100.0, 40.0) for n in nodes})
    assert rows(nodes, edges) == [["root"], ["a", "b", "c"]]
    a, b, c = (placed.rects[n] for n in "abc")
    assert b.x - a.right == pytest.approx(GAP_X) and c.x - b.right == pytest.approx(GAP_X)
    # The root sits over the middle of its children, the chain straight under it.
    assert placed.rects["root"].cx == pytest.approx(b.cx)


def test_a_chain_is_one_straight_column() -> None:
    nodes = ["x", "y", "z"]
    placed = place(
        nodes, [("x", "y"), ("y", "z")], {"x": (100.0, 40.0), "y": (200.0, 40.0), "z": (60.0, 40.0)}
    )
    centres = {placed.rects[n].cx for n in nodes}
    assert len(centres) == 1


def test_fit_is_the_closest_ordered_placement() -> None:
    # Wanted all at 0: the three spread around it, the gaps kept.
    assert _fit([0.0, 0.0, 0.0], [10.0, 10.0, 10.0], 5.0) == pytest.approx([-15.0, 0.0, 15.0])
    # Far apart: each where it wants to be.
    assert _fit([0.0, 100.0], [10.0, 10.0], 5.0) == pytest.approx([0.0, 100.0])


def test_cycles_are_broken_not_followed() -> None:
    nodes = ["a", "b", "c"]
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "a")]
    assert acyclic(nodes, edges) == [("a", "b"), ("b", "c")]
    assert layers(nodes, edges) == {"a": 0, "b": 1, "c": 2}
    assert set(place(nodes, edges, {n: (10.0, 10.0) for n in nodes}).rects) == set(nodes)


def test_edges_to_unknown_nodes_are_ignored() -> None:
    placed = place(["a"], [("a", "ghost"), ("ghost", "a")], {"a": (10.0, 10.0)})
    assert placed.rects == {"a": Rect(0.0, 0.0, 10.0, 10.0)}
    assert place([], [], {}).rects == {}


def tree() -> list[Item]:
    """``start -> group(g1: x -> loop(l: [i0: s], [i1: s])) -> end`` with an edge into the loop."""
    leaf = (100.0, 40.0)
    iterations = [Item(f"l[{i}]", (60.0, 0.0), [Item(f"l[{i}]/s", leaf)], group=True) for i in range(2)]
    group = Item(
        "g", (80.0, 0.0), [Item("g/x", leaf), Item("g/l", (40.0, 0.0), iterations, group=True)], group=True
    )
    return [Item("start", leaf), group, Item("end", leaf)]


EDGES = [("start", "g/x"), ("g/x", "l[0]/s"), ("g/x", "l[1]/s"), ("g", "end")]


def test_edges_are_lifted_to_the_siblings_that_hold_their_ends() -> None:
    by_scope = lifted(tree(), EDGES)
    assert by_scope[None] == [("start", "g"), ("g", "end")]
    assert by_scope["g"] == [("g/x", "g/l"), ("g/x", "g/l")]
    assert "g/l" not in by_scope  # nothing links one iteration to another


def test_groups_hold_their_children_and_siblings_never_overlap() -> None:
    items = tree()
    placed = layout_tree(items, EDGES)

    def check(group: list[Item], frame: Rect | None) -> None:
        assert_no_overlaps({i.id: placed.rects[i.id] for i in group})
        for item in group:
            rect = placed.rects[item.id]
            if frame is not None:
                assert frame.contains(rect), (item.id, frame, rect)
                assert rect.y >= frame.y + 20  # below the group's label
            check(item.children, rect)

    check(items, None)
    r = placed.rects
    assert r["start"].bottom < r["g"].y < r["g"].bottom < r["end"].y
    assert r["g/x"].bottom < r["g/l"].y
    # The loop's iterations sit side by side.
    assert r["l[0]"].y == r["l[1]"].y and r["l[0]"].right < r["l[1]"].x
    assert layout_tree(tree(), EDGES) == placed


@pytest.mark.parametrize("seed", range(10))
def test_random_nested_groups(seed: int) -> None:
    rng = random.Random(seed)
    counter = itertools.count()

    def make(depth: int) -> Item:
        ident = f"i{next(counter)}"
        if depth < 3 and rng.random() < 0.35:
            return Item(
                ident,
                (rng.uniform(40, 200), 0.0),
                [make(depth + 1) for _ in range(rng.randint(0, 4))],
                group=True,
            )
        return Item(ident, (rng.uniform(60, 200), rng.uniform(30, 60)))

    items = [make(0) for _ in range(rng.randint(1, 6))]
    every: list[Item] = []
    stack = list(items)
    while stack:
        item = stack.pop()
        every.append(item)
        stack += item.children
    ids = [i.id for i in every]
    edges = [
        (a, b)
        for a, b in itertools.combinations(sorted(ids, key=lambda x: int(x[1:])), 2)
        if rng.random() < 0.2
    ]
    placed = layout_tree(items, edges)
    assert set(placed.rects) == set(ids)

    def check(group: list[Item], frame: Rect | None) -> None:
        assert_no_overlaps({i.id: placed.rects[i.id] for i in group})
        for item in group:
            if frame is not None:
                assert frame.contains(placed.rects[item.id])
            check(item.children, placed.rects[item.id])

    check(items, None)
    # Every lifted edge points down within its group.
    for scope_edges in lifted(items, edges).values():
        for a, b in acyclic(sorted({x for e in scope_edges for x in e}), scope_edges):
            assert placed.rects[a].bottom < placed.rects[b].y
