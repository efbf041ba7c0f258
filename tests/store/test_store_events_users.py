"""Store conformance, continued: events, and the embedded identity provider's users and
tokens. Runs on every implementation (see conftest.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lumiflow.common.errors import AlreadyExists, NotFound
from lumiflow.common.timeutil import utcnow
from lumiflow.store import ResourceStore
from tests.store.factory import assert_utc, new_object, utc

pytestmark = pytest.mark.timeout(30)


# --- events ------------------------------------------------------------------------------


def test_events_are_listed_oldest_first_and_identical_consecutive_ones_are_counted(
    store: ResourceStore,
) -> None:
    job = store.create(new_object("job"))
    other = store.create(new_object("other"))

    first = store.record_event(job, type="Normal", reason="Created", message="created")
    assert (first.count, first.object_uid, first.name) == (1, job.uid, "job")
    assert assert_utc(first.first_timestamp) == first.last_timestamp

    store.record_event(job, type="Normal", reason="Scheduled", message="on cluster local")
    again = store.record_event(job, type="Normal", reason="Scheduled", message="on cluster local")
    assert again.count == 2
    store.record_event(other, type="Normal", reason="Scheduled", message="on cluster local")
    third = store.record_event(job, type="Normal", reason="Scheduled", message="on cluster local")
    assert third.count == 3, "another object's event must not break the run"
    # A different event starts a new entry, and the older equal one is not resumed.
    store.record_event(job, type="Warning", reason="Scheduled", message="on cluster local")
    store.record_event(job, type="Warning", reason="BackOff", message="restarting replica 0")
    after = store.record_event(job, type="Normal", reason="Scheduled", message="on cluster local")
    assert after.count == 1
    store.record_event(job, type="Normal", reason="Scheduled", message="on cluster ray")

    events = store.list_events(uid=job.uid)
    assert [(e.type, e.reason, e.message, e.count) for e in events] == [
        ("Normal", "Created", "created", 1),
        ("Normal", "Scheduled", "on cluster local", 3),
        ("Warning", "Scheduled", "on cluster local", 1),
        ("Warning", "BackOff", "restarting replica 0", 1),
        ("Normal", "Scheduled", "on cluster local", 1),
        ("Normal", "Scheduled", "on cluster ray", 1),
    ]
    counted = events[1]
    assert assert_utc(counted.last_timestamp) >= assert_utc(counted.first_timestamp)
    assert counted.last_timestamp == third.last_timestamp
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert all(e.object_uid == job.uid and e.kind == job.kind for e in events)

    assert [(e.reason, e.count) for e in store.list_events(uid=other.uid)] == [("Scheduled", 1)]
    assert store.list_events(uid="no-such-uid") == []


def test_list_events_limit_keeps_the_newest(store: ResourceStore) -> None:
    job = store.create(new_object("job"))
    for i in range(6):
        store.record_event(job, type="Normal", reason="Step", message=f"step {i}")
    assert [e.message for e in store.list_events(uid=job.uid, limit=3)] == ["step 3", "step 4", "step 5"]


# --- users -------------------------------------------------------------------------------


def test_users_create_get_list_update_delete(store: ResourceStore) -> None:
    before = utcnow()
    alice = store.create_user("alice", ["ml-team", "admins"])
    assert alice.groups == ["ml-team", "admins"]
    assert before <= assert_utc(alice.created_at) <= utcnow()
    store.create_user("carol", [])
    store.create_user("bob", ["ml-team"])

    with pytest.raises(AlreadyExists):
        store.create_user("alice", [])
    assert store.get_user("alice") == alice
    assert [(u.name, u.groups) for u in store.list_users()] == [
        ("alice", ["ml-team", "admins"]),
        ("bob", ["ml-team"]),
        ("carol", []),
    ]

    updated = store.update_user("bob", ["ml-team", "gpu-users"])
    assert updated.groups == ["ml-team", "gpu-users"]
    assert store.get_user("bob").groups == ["ml-team", "gpu-users"]
    assert store.get_user("bob").created_at == updated.created_at

    store.delete_user("carol")
    assert [u.name for u in store.list_users()] == ["alice", "bob"]
    for missing in (
        lambda: store.get_user("carol"),
        lambda: store.update_user("carol", ["x"]),
        lambda: store.delete_user("carol"),
    ):
        with pytest.raises(NotFound):
            missing()
    assert [u.name for u in store.list_users()] == ["alice", "bob"]


def test_tokens_add_get_list_and_revoke_idempotently(store: ResourceStore) -> None:
    store.create_user("alice", [])
    store.create_user("bob", [])
    issued = utc(2024, 3, 1, 12, 0)
    a1 = store.add_token(
        token_id="a1",
        user="alice",
        description="laptop",
        issued_at=issued,
        expires_at=issued + timedelta(days=30),
    )
    store.add_token(
        token_id="b1", user="bob", description="ci", issued_at=issued + timedelta(minutes=1), expires_at=None
    )
    store.add_token(
        token_id="a2",
        user="alice",
        description="notebook",
        issued_at=issued + timedelta(minutes=2),
        expires_at=None,
    )
    with pytest.raises(AlreadyExists):
        store.add_token(token_id="a1", user="bob", description="again", issued_at=issued, expires_at=None)

    got = store.get_token("a1")
    assert got == a1
    assert (got.user, got.description, got.revoked) == ("alice", "laptop", False)
    assert assert_utc(got.issued_at) == issued
    assert assert_utc(got.expires_at) == issued + timedelta(days=30)
    assert store.get_token("b1").expires_at is None
    with pytest.raises(NotFound):
        store.get_token("zz")

    assert [t.id for t in store.list_tokens()] == ["a1", "b1", "a2"]  # by issued_at
    assert [t.id for t in store.list_tokens(user="alice")] == ["a1", "a2"]
    assert store.list_tokens(user="nobody") == []
    assert store.revoked_token_ids() == set()

    revoked = store.revoke_token("a1")
    assert revoked.revoked
    assert assert_utc(revoked.revoked_at) >= issued
    again = store.revoke_token("a1")
    assert again.revoked_at == revoked.revoked_at, "revoking twice must keep the first revocation time"
    assert store.get_token("a1") == revoked
    assert store.revoked_token_ids() == {"a1"}
    assert not store.get_token("a2").revoked
    with pytest.raises(NotFound):
        store.revoke_token("zz")


def test_deleting_a_user_revokes_all_their_tokens(store: ResourceStore) -> None:
    store.create_user("alice", [])
    store.create_user("bob", [])
    issued = utc(2024, 3, 1)
    for token_id, user in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
        store.add_token(token_id=token_id, user=user, description="", issued_at=issued, expires_at=None)
    earlier = store.revoke_token("a2")

    store.delete_user("alice")
    assert store.revoked_token_ids() == {"a1", "a2"}
    assert store.get_token("a1").revoked
    assert store.get_token("a2").revoked_at == earlier.revoked_at
    assert not store.get_token("b1").revoked
    with pytest.raises(NotFound):
        store.get_user("alice")
