"""The store's metric series (``add_metrics``, ``list_metrics``, ``metric_cursor``), on every
implementation (SQLite takes a plain DB-API path for pushed points; PostgreSQL does not).

What a collector and the push endpoint rely on: points come back by name, step and arrival;
a batch for a missing object writes nothing; a batch commits whole with its cursor or not at
all; points go when their object goes."""

from __future__ import annotations

import pytest

from lumiflow.common.errors import NotFound
from lumiflow.store import ResourceStore
from lumiflow.store.model import MetricRecord
from tests.store.factory import KIND, new_object

pytestmark = pytest.mark.timeout(30)


def test_points_come_back_by_name_step_then_arrival(store: ResourceStore) -> None:
    uid = store.create(new_object("job")).uid
    assert (
        store.add_metrics(uid, [MetricRecord("loss", 2, 0.5, 10.0), MetricRecord("acc", 1, 0.7, 11.0)]) == 2
    )
    assert (
        store.add_metrics(
            uid, [MetricRecord("loss", 1, 0.9, 12.0, "stdout"), MetricRecord("loss", 2, 0.4, 13.0)]
        )
        == 2
    )

    points = store.list_metrics(uid)
    assert [(p.name, p.step, p.value, p.source) for p in points] == [
        ("acc", 1, 0.7, "push"),
        ("loss", 1, 0.9, "stdout"),
        ("loss", 2, 0.5, "push"),
        ("loss", 2, 0.4, "push"),
    ]
    assert points[0] == MetricRecord("acc", 1, 0.7, 11.0, "push")
    assert [p.value for p in store.list_metrics(uid, names=["acc"])] == [0.7]
    assert len(store.list_metrics(uid, limit=3)) == 3


def test_a_missing_object_gets_no_points(store: ResourceStore) -> None:
    other = store.create(new_object("other")).uid
    with pytest.raises(NotFound, match="no object"):
        store.add_metrics("0d6f3c1e-0000-4000-8000-000000000000", [MetricRecord("loss", 1, 1.0, 1.0)])
    store.add_metrics(other, [MetricRecord("loss", 1, 1.0, 1.0)])
    assert len(store.list_metrics(other)) == 1  # the store still writes after the refusal


def test_points_and_cursor_commit_together(store: ResourceStore) -> None:
    uid = store.create(new_object("job")).uid
    store.add_metrics(uid, [MetricRecord("loss", 1, 1.0, 1.0, "stdout")], cursor=("stdout", {"offset": 10}))
    store.add_metrics(uid, [], cursor=("stdout", {"offset": 20}))
    assert store.metric_cursor(uid, "stdout") == {"offset": 20}
    assert store.metric_cursor(uid, "file") is None
    with pytest.raises(NotFound):
        store.add_metrics("0d6f3c1e-0000-4000-8000-000000000000", [], cursor=("stdout", {"offset": 1}))
    assert [p.step for p in store.list_metrics(uid)] == [1]


def test_points_go_with_their_object(store: ResourceStore) -> None:
    uid = store.create(new_object("job")).uid
    store.add_metrics(uid, [MetricRecord("loss", i, float(i), 1.0) for i in range(500)])
    assert len(store.list_metrics(uid)) == 500
    store.purge(KIND, "team-a", "job")
    assert store.list_metrics(uid) == []
    with pytest.raises(NotFound):
        store.add_metrics(uid, [MetricRecord("loss", 1, 1.0, 1.0)])
