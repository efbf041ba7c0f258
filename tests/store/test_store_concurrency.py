"""Store conformance under threads: "every method may be called from any thread; each call
runs in its own transaction" (base.py). The API server, the controllers and the scheduler
share one store, so lost updates or "database is locked" here are lost work there."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from lumiflow.common.errors import AlreadyExists, Conflict, NotFound, StoreUnavailable
from lumiflow.store import ResourceStore, StoredObject
from tests.store.factory import KIND, new_object, utc

pytestmark = pytest.mark.timeout(60)

THREADS = 8


def names_sorted(objects: list[StoredObject]) -> bool:
    keys = [(o.profile, o.name) for o in objects]
    return keys == sorted(keys)


def run_threads(workers: list[Callable[[], None]], *, timeout: float = 45.0) -> list[BaseException]:
    """Starts the workers together and returns what they raised."""
    start = threading.Barrier(len(workers))
    errors: list[BaseException] = []
    lock = threading.Lock()

    def body(work: Callable[[], None]) -> None:
        try:
            start.wait(timeout=10)
            work()
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=body, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a worker thread is stuck"
    return errors


def test_read_modify_write_with_expected_version_loses_no_increment(store: ResourceStore) -> None:
    """Half the threads increment a spec counter (update), half a status counter
    (update_status); each retries on Conflict. Neither kind of write may lose the other's."""
    store.create(new_object("counter", spec={"n": 0}, status={"n": 0}))
    rounds = 6

    def bump_spec() -> None:
        for _ in range(rounds):
            while True:
                current = store.get(KIND, "team-a", "counter")
                try:
                    store.update(
                        current.copy(spec={"n": current.spec["n"] + 1}), expected_rv=current.resource_version
                    )
                    break
                except Conflict:
                    continue

    def bump_status() -> None:
        for _ in range(rounds):
            while True:
                current = store.get(KIND, "team-a", "counter")
                try:
                    store.update_status(
                        KIND,
                        "team-a",
                        "counter",
                        {"n": current.status["n"] + 1},
                        expected_rv=current.resource_version,
                    )
                    break
                except Conflict:
                    continue

    half = THREADS // 2
    errors = run_threads([bump_spec] * half + [bump_status] * half)
    assert errors == []

    final = store.get(KIND, "team-a", "counter")
    assert final.spec == {"n": half * rounds}
    assert final.status == {"n": half * rounds}
    assert final.resource_version == 1 + 2 * half * rounds
    assert final.generation == 1 + half * rounds


def test_concurrent_creates_of_different_objects_never_fail(store: ResourceStore) -> None:
    """Writers queue instead of failing (SQLite: BEGIN IMMEDIATE + busy timeout, never
    "database is locked"), while readers keep listing beside them."""
    per_thread = 15
    writers_done = threading.Event()

    def creator(t: int) -> Callable[[], None]:
        def work() -> None:
            for i in range(per_thread):
                store.create(new_object(f"job-{t}-{i:02d}", profile=f"team-{t % 3}"))
                if i % 5 == 0:
                    store.record_event(
                        store.get(KIND, f"team-{t % 3}", f"job-{t}-{i:02d}"),
                        type="Normal",
                        reason="Created",
                        message="created",
                    )

        return work

    def reader() -> None:
        while True:
            listed = store.list(KIND, limit=50).items
            assert names_sorted(listed)
            store.count(KIND)
            if writers_done.is_set():
                return

    writers = [creator(t) for t in range(THREADS)]

    def all_writers() -> None:
        errors = run_threads(writers)
        writers_done.set()
        if errors:
            raise errors[0]

    errors = run_threads([all_writers, reader, reader])
    unavailable = [e for e in errors if isinstance(e, StoreUnavailable)]
    assert unavailable == [], f"store unavailable under concurrent writes: {unavailable[0]}"
    assert errors == []
    assert len(store.list(KIND).items) == THREADS * per_thread


def test_concurrent_creates_of_one_name_have_exactly_one_winner(store: ResourceStore) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()

    def create(t: int) -> Callable[[], None]:
        def work() -> None:
            try:
                store.create(new_object("contested", spec={"by": t}))
                outcome = "created"
            except AlreadyExists:
                outcome = "exists"
            with lock:
                outcomes.append(outcome)

        return work

    errors = run_threads([create(t) for t in range(THREADS)])
    assert errors == []
    assert sorted(outcomes) == ["created"] + ["exists"] * (THREADS - 1)
    assert len(store.list(KIND).items) == 1


def test_identical_events_recorded_concurrently_are_one_counted_event(store: ResourceStore) -> None:
    job = store.create(new_object("job"))
    per_thread = 10

    def record() -> None:
        for _ in range(per_thread):
            store.record_event(job, type="Warning", reason="BackOff", message="restarting replica 0")

    assert run_threads([record] * THREADS) == []
    events = store.list_events(uid=job.uid)
    assert [(e.reason, e.count) for e in events] == [("BackOff", THREADS * per_thread)]


def test_request_delete_racing_the_removal_of_the_last_finalizer(store: ResourceStore) -> None:
    """Whichever commits first, the object ends either removed or deleting *with* its
    finalizer, and no two writes share a resource_version."""
    for i in range(30):
        obj = store.create(new_object(f"job-{i:02d}", finalizers=["lumiflow.io/workload"]))
        written: list[StoredObject] = []

        def delete(obj: StoredObject = obj, written: list[StoredObject] = written) -> None:
            marked = store.request_delete(KIND, "team-a", obj.name)
            if marked is not None:
                written.append(marked)

        def unfinalize(obj: StoredObject = obj, written: list[StoredObject] = written) -> None:
            try:
                written.append(store.update(obj.copy(finalizers=[]), expected_rv=1))
            except Conflict:
                pass

        assert run_threads([delete, unfinalize]) == []
        # An update that removed the row returns the last stored version: not a new write.
        versions = [o.resource_version for o in written if o.finalizers or o.deletion_timestamp is None]
        assert len(versions) == len(set(versions)), f"{obj.name}: two writes made version {versions}"
        try:
            final = store.get(KIND, "team-a", obj.name)
        except NotFound:
            continue
        assert final.finalizers, f"{obj.name} is deleting without finalizers: nothing will remove it"
        assert final.resource_version == max(o.resource_version for o in written)


def test_concurrent_revocations_keep_the_first_revocation_time(store: ResourceStore) -> None:
    store.create_user("alice", [])
    for i in range(10):
        token_id = f"t{i}"
        store.add_token(
            token_id=token_id, user="alice", description="", issued_at=utc(2024, 1, 1), expires_at=None
        )
        revoked: list[object] = []

        def revoke(token_id: str = token_id, revoked: list[object] = revoked) -> None:
            revoked.append(store.revoke_token(token_id).revoked_at)

        assert run_threads([revoke] * THREADS) == []
        assert set(revoked) == {store.get_token(token_id).revoked_at}, token_id
