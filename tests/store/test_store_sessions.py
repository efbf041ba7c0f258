"""Store conformance, continued: dashboard sessions. Runs on every implementation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lumiflow.common.errors import AlreadyExists, NotFound
from lumiflow.common.timeutil import utcnow
from lumiflow.store import ResourceStore
from tests.store.factory import assert_utc

pytestmark = pytest.mark.timeout(30)


def test_sessions_are_created_read_updated_and_deleted(store: ResourceStore) -> None:
    expires = utcnow() + timedelta(hours=1)
    data = {"kind": "login", "state": "s", "nested": {"list": [1, 2]}}
    created = store.create_session("a" * 64, user=None, data=data, expires_at=expires)
    got = store.get_session("a" * 64)
    assert got == created
    assert (got.user, got.data) == (None, data)
    assert assert_utc(got.expires_at) == expires and assert_utc(got.created_at) <= expires
    with pytest.raises(AlreadyExists):
        store.create_session("a" * 64, user="x", data={}, expires_at=expires)

    updated = store.update_session("a" * 64, data={"kind": "session", "csrf": "c"}, user="alice")
    assert (updated.user, updated.data) == ("alice", {"kind": "session", "csrf": "c"})
    again = store.update_session("a" * 64, data={"kind": "session", "csrf": "d"})
    assert again.user == "alice", "user stays when not given"
    with pytest.raises(NotFound):
        store.update_session("b" * 64, data={})

    store.delete_session("a" * 64)
    store.delete_session("a" * 64)  # idempotent
    with pytest.raises(NotFound):
        store.get_session("a" * 64)


def test_expired_sessions_are_purged_and_only_those(store: ResourceStore) -> None:
    now = utcnow()
    store.create_session("old", user="a", data={}, expires_at=now - timedelta(seconds=1))
    store.create_session("older", user="b", data={}, expires_at=now - timedelta(days=3))
    store.create_session("live", user="c", data={}, expires_at=now + timedelta(minutes=5))
    assert store.delete_expired_sessions(now) == 2
    assert store.get_session("live").user == "c"
    for gone in ("old", "older"):
        with pytest.raises(NotFound):
            store.get_session(gone)
    assert store.delete_expired_sessions(now) == 0
