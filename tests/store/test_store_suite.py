"""The store conformance suite: the contract of :class:`lumiflow.store.base.ResourceStore`,
run against every implementation (the ``store`` fixture is parametrized over SQLite and
PostgreSQL; see conftest.py).

Each test states behaviour that a controller, the API or a user relies on: identity and
server-set fields, optimistic concurrency, generation vs status writes, listing and keyset
pagination, deletion with finalizers, batched status writes, and change notifications.
Events, users and tokens are in test_store_events_users.py; threads in
test_store_concurrency.py; schema versions in test_migrations.py.
"""

from __future__ import annotations

import base64
import threading
import uuid

import pytest

from lumiflow.common.errors import AlreadyExists, BadRequest, Conflict, NotFound
from lumiflow.common.timeutil import utcnow
from lumiflow.store import Change, ResourceStore, StatusWrite, StoredObject, parse_selector
from tests.store.factory import KIND, assert_utc, new_object

pytestmark = pytest.mark.timeout(30)


def names(objects: list[StoredObject]) -> list[tuple[str, str]]:
    return [(o.profile, o.name) for o in objects]


def collect_changes(store: ResourceStore) -> list[Change]:
    heard: list[Change] = []
    store.subscribe(heard.append)
    return heard


# --- create / get --------------------------------------------------------------------


def test_create_sets_server_fields_and_get_returns_what_create_returned(store: ResourceStore) -> None:
    before = utcnow()
    created = store.create(new_object("mnist", labels={"team": "vision"}))
    after = utcnow()

    assert str(uuid.UUID(created.uid)) == created.uid
    assert created.resource_version == 1
    assert created.generation == 1
    assert created.deletion_timestamp is None
    assert before <= assert_utc(created.created_at) <= after
    assert assert_utc(created.updated_at) == created.created_at

    fetched = store.get(KIND, "team-a", "mnist")
    assert fetched == created
    assert_utc(fetched.created_at)
    assert_utc(fetched.updated_at)
    assert store.get_by_uid(created.uid) == created


def test_create_ignores_client_sent_versions_and_deletion(store: ResourceStore) -> None:
    sent = new_object("job", finalizers=["lumiflow.io/cleanup"]).copy(
        resource_version=41, generation=7, deletion_timestamp=utcnow()
    )
    created = store.create(sent)
    assert (created.resource_version, created.generation, created.deletion_timestamp) == (1, 1, None)
    assert store.get(KIND, "team-a", "job") == created


def test_every_stored_field_round_trips(store: ResourceStore) -> None:
    parent = store.create(new_object("parent"))
    spec = {
        "text": "Schrödinger's 猫 \u2603",
        "float": 0.1,
        "big": 2**53,
        "negative": -3,
        "flag": False,
        "nothing": None,
        "nested": {"list": [1, "two", {"three": [3.0]}], "empty": {}},
    }
    sent = new_object(
        "child",
        spec=spec,
        status={"phase": "Pending", "conditions": [{"type": "Created", "status": "True"}]},
        labels={"app.kubernetes.io/name": "gan", "tier": "gpu"},
        annotations={"note": "long\nmultiline text"},
        owner=parent,
        finalizers=["lumiflow.io/a", "lumiflow.io/b"],
    )
    created = store.create(sent)
    fetched = store.get(KIND, "team-a", "child")
    assert fetched == created
    assert fetched.spec == spec
    assert fetched.status == sent.status
    assert fetched.labels == sent.labels
    assert fetched.annotations == sent.annotations
    assert fetched.owner_references == sent.owner_references
    assert fetched.finalizers == ["lumiflow.io/a", "lumiflow.io/b"]
    assert fetched.owner_uid == parent.uid
    assert fetched.api_version == sent.api_version


def test_duplicate_create_raises_already_exists_and_changes_nothing(store: ResourceStore) -> None:
    first = store.create(new_object("job", spec={"v": 1}))
    with pytest.raises(AlreadyExists):
        store.create(new_object("job", spec={"v": 2}))
    assert store.get(KIND, "team-a", "job") == first
    assert len(store.list(KIND).items) == 1


def test_same_name_in_another_profile_or_kind_is_a_different_object(store: ResourceStore) -> None:
    a = store.create(new_object("job", profile="team-a"))
    b = store.create(new_object("job", profile="team-b"))
    c = store.create(new_object("job", kind="Experiment", profile="team-a"))
    d = store.create(new_object("job", kind="Profile", profile=""))  # cluster-scoped
    assert len({a.uid, b.uid, c.uid, d.uid}) == 4
    assert store.get(KIND, "team-b", "job").uid == b.uid
    assert store.get("Experiment", "team-a", "job").uid == c.uid
    assert store.get("Profile", "", "job").uid == d.uid
    assert store.get(KIND, "team-a", "job").uid == a.uid


def test_missing_objects_raise_not_found_and_nothing_is_created(store: ResourceStore) -> None:
    job = store.create(new_object("job"))
    with pytest.raises(NotFound):
        store.get(KIND, "team-a", "other")
    with pytest.raises(NotFound):
        store.get(KIND, "team-b", "job")
    with pytest.raises(NotFound):
        store.get("Experiment", "team-a", "job")
    with pytest.raises(NotFound):
        store.get_by_uid(str(uuid.uuid4()))
    with pytest.raises(NotFound):
        store.update(new_object("ghost"))
    with pytest.raises(NotFound):
        store.update(job.copy(profile="team-b"))
    with pytest.raises(NotFound):
        store.update_status(KIND, "team-a", "ghost", {"phase": "Running"})
    assert names(store.list(KIND).items) == [("team-a", "job")]
    assert store.get(KIND, "team-a", "job") == job


# --- update ----------------------------------------------------------------------------


def test_update_with_stale_resource_version_conflicts_and_changes_nothing(store: ResourceStore) -> None:
    created = store.create(new_object("job", spec={"v": 1}))
    current = store.update(created.copy(labels={"x": "1"}), expected_rv=1)
    assert current.resource_version == 2

    with pytest.raises(Conflict):
        store.update(created.copy(spec={"v": 2}, labels={"x": "2"}), expected_rv=1)
    # Without expected_rv the object's own (stale) resource_version is the expectation.
    with pytest.raises(Conflict):
        store.update(created.copy(spec={"v": 3}))

    assert store.get(KIND, "team-a", "job") == current


def test_writes_without_any_expected_version_are_unconditional(store: ResourceStore) -> None:
    created = store.create(new_object("job", spec={"v": 1}))
    store.update(created.copy(labels={"x": "1"}))
    updated = store.update(created.copy(spec={"v": 2}, resource_version=0))
    assert updated.resource_version == 3
    assert store.get(KIND, "team-a", "job").spec == {"v": 2}
    # update_status with expected_rv None: last writer wins, for the one owning controller.
    written = store.update_status(KIND, "team-a", "job", {"phase": "Succeeded"})
    assert written.resource_version == 4
    assert store.get(KIND, "team-a", "job").status == {"phase": "Succeeded"}


def test_update_returns_the_stored_object(store: ResourceStore) -> None:
    created = store.create(new_object("job"))
    updated = store.update(
        created.copy(
            spec={"replicas": 4},
            labels={"a": "b"},
            annotations={"c": "d"},
            finalizers=["lumiflow.io/keep"],
        )
    )
    fetched = store.get(KIND, "team-a", "job")
    assert fetched == updated
    assert fetched.spec == {"replicas": 4}
    assert fetched.labels == {"a": "b"}
    assert fetched.annotations == {"c": "d"}
    assert fetched.finalizers == ["lumiflow.io/keep"]
    assert fetched.created_at == created.created_at
    assert assert_utc(fetched.updated_at) >= created.updated_at  # type: ignore[operator]


def test_generation_increments_only_when_spec_changes(store: ResourceStore) -> None:
    obj = store.create(new_object("job", spec={"replicas": 1}))

    obj = store.update(obj.copy(labels={"x": "y"}, annotations={"a": "b"}, finalizers=["f"]))
    assert (obj.resource_version, obj.generation) == (2, 1)

    obj = store.update(obj.copy(spec={"replicas": 2}))
    assert (obj.resource_version, obj.generation) == (3, 2)

    obj = store.update(obj.copy(spec={"replicas": 2}))  # an equal spec is not a change
    assert (obj.resource_version, obj.generation) == (4, 2)

    obj = store.update_status(KIND, "team-a", "job", {"phase": "Running"})
    assert (obj.resource_version, obj.generation) == (5, 2)
    assert store.get(KIND, "team-a", "job").generation == 2


def test_update_leaves_status_as_stored(store: ResourceStore) -> None:
    created = store.create(new_object("job", status={"phase": "Running", "restarts": 2}))
    updated = store.update(created.copy(spec={"replicas": 9}, status={"phase": "Failed"}))
    assert updated.status == {"phase": "Running", "restarts": 2}
    assert store.get(KIND, "team-a", "job").status == {"phase": "Running", "restarts": 2}
    assert names(store.list(KIND, phases=["Running"]).items) == [("team-a", "job")]
    assert store.list(KIND, phases=["Failed"]).items == []


def test_update_status_bumps_resource_version_and_keeps_the_rest(store: ResourceStore) -> None:
    created = store.create(new_object("job", spec={"replicas": 3}, labels={"a": "b"}))
    written = store.update_status(KIND, "team-a", "job", {"phase": "Running"}, expected_rv=1)
    assert written.resource_version == 2
    assert written.generation == 1
    assert written.status == {"phase": "Running"}
    fetched = store.get(KIND, "team-a", "job")
    assert fetched == written
    assert fetched.spec == {"replicas": 3}
    assert fetched.labels == {"a": "b"}
    assert fetched.created_at == created.created_at
    assert assert_utc(fetched.updated_at) >= created.updated_at  # type: ignore[operator]


def test_update_status_with_stale_version_conflicts_and_changes_nothing(store: ResourceStore) -> None:
    store.create(new_object("job"))
    current = store.update_status(KIND, "team-a", "job", {"phase": "Running"})
    with pytest.raises(Conflict):
        store.update_status(KIND, "team-a", "job", {"phase": "Failed"}, expected_rv=1)
    assert store.get(KIND, "team-a", "job") == current
    assert store.list(KIND, phases=["Failed"]).items == []


def test_phase_filter_and_count_follow_status_writes(store: ResourceStore) -> None:
    store.create(new_object("fresh"))  # no phase yet
    store.create(new_object("odd", status={"phase": 7}))  # not a string: no phase
    store.create(new_object("run-1", status={"phase": "Running"}))
    store.create(new_object("run-2"))
    store.update_status(KIND, "team-a", "run-2", {"phase": "Running"})
    store.create(new_object("done", status={"phase": "Succeeded"}))
    store.create(new_object("other-kind", kind="Experiment", status={"phase": "Running"}))

    def listed(*phases: str) -> list[str]:
        return [o.name for o in store.list(KIND, phases=list(phases)).items]

    assert listed("") == ["fresh", "odd"]
    assert listed("Running") == ["run-1", "run-2"]
    assert listed("Running", "Succeeded") == ["done", "run-1", "run-2"]
    assert listed() == []
    assert store.count(KIND) == {"": 2, "Running": 2, "Succeeded": 1}
    assert store.count(KIND, phases=["Running", ""]) == {"": 2, "Running": 2}

    store.update_status(KIND, "team-a", "run-1", {"phase": "Failed"})
    store.update_status(KIND, "team-a", "done", {})
    assert listed("Running") == ["run-2"]
    assert listed("Failed") == ["run-1"]
    assert listed("") == ["done", "fresh", "odd"]
    assert store.count(KIND) == {"": 3, "Running": 1, "Failed": 1}


# --- list ----------------------------------------------------------------------------------


def test_list_orders_by_profile_then_name_and_only_returns_the_kind(store: ResourceStore) -> None:
    for profile, name in [("team-b", "alpha"), ("team-a", "zulu"), ("team-a", "alpha"), ("team-b", "echo")]:
        store.create(new_object(name, profile=profile))
    store.create(new_object("alpha", kind="Experiment", profile="team-a"))
    listed = store.list(KIND)
    assert names(listed.items) == [
        ("team-a", "alpha"),
        ("team-a", "zulu"),
        ("team-b", "alpha"),
        ("team-b", "echo"),
    ]
    assert listed.continue_token is None
    assert all(o.kind == KIND for o in listed.items)
    assert store.list("Notebook").items == []


def test_list_profile_filters(store: ResourceStore) -> None:
    for profile in ("team-a", "team-b", "team-c"):
        store.create(new_object("job", profile=profile))
    assert names(store.list(KIND, profile="team-b").items) == [("team-b", "job")]
    assert names(store.list(KIND, profiles=["team-c", "team-a"]).items) == [
        ("team-a", "job"),
        ("team-c", "job"),
    ]
    assert store.list(KIND, profiles=[]).items == []
    assert store.list(KIND, profile="nobody").items == []
    assert store.list(KIND, profiles=["nobody"]).items == []


def test_list_owner_uid_filter_follows_the_controller_reference(store: ResourceStore) -> None:
    parent = store.create(new_object("parent", kind="Experiment"))
    other = store.create(new_object("other", kind="Experiment"))
    store.create(new_object("trial-1", owner=parent))
    store.create(new_object("trial-2", owner=parent))
    store.create(new_object("watcher", owner=parent, owner_is_controller=False))
    store.create(new_object("orphan"))

    def owned_by(owner: StoredObject) -> list[str]:
        return [o.name for o in store.list(KIND, owner_uid=owner.uid).items]

    assert owned_by(parent) == ["trial-1", "trial-2"]
    assert owned_by(other) == []

    # Re-parenting through update moves the object between owners.
    trial = store.get(KIND, "team-a", "trial-2")
    store.update(trial.copy(owner_references=new_object("x", owner=other).owner_references))
    assert owned_by(parent) == ["trial-1"]
    assert owned_by(other) == ["trial-2"]


def test_versions_and_get_many_let_an_owner_reread_only_what_changed(store: ResourceStore) -> None:
    from lumiflow.store.owned import OwnedObjects

    parent = store.create(new_object("parent", kind="Experiment"))
    t1 = store.create(new_object("trial-1", owner=parent))
    t2 = store.create(new_object("trial-2", owner=parent))
    store.create(new_object("elsewhere", owner=parent, profile="team-b"))
    store.create(new_object("orphan"))
    assert store.versions(KIND, profile="team-a", owner_uid=parent.uid) == {t1.uid: 1, t2.uid: 1}
    assert {o.name for o in store.get_many([t2.uid, t1.uid, t1.uid, "no-such-uid"])} == {"trial-1", "trial-2"}
    assert store.get_many([]) == []

    owned = OwnedObjects(store, KIND)
    assert [o.name for o in owned.list(parent)] == ["trial-1", "trial-2"]
    reads: list[list[str]] = []
    real_get_many = store.get_many

    def counting(uids: list[str]) -> list[StoredObject]:
        reads.append(sorted(uids))
        return real_get_many(uids)

    store.get_many = counting  # type: ignore[method-assign]
    try:
        assert [o.name for o in owned.list(parent)] == ["trial-1", "trial-2"]
        assert reads == []  # nothing changed: nothing read in full
        store.update_status(KIND, "team-a", "trial-2", {"phase": "Running"})
        t3 = store.create(new_object("trial-0", owner=parent))
        listed = owned.list(parent)
        assert [o.name for o in listed] == ["trial-0", "trial-1", "trial-2"]
        assert listed[2].status == {"phase": "Running"}
        assert reads == [sorted([t2.uid, t3.uid])]
        store.purge(KIND, "team-a", "trial-1")
        assert [o.name for o in owned.list(parent)] == ["trial-0", "trial-2"]
    finally:
        del store.get_many


SELECTOR_CASES = [
    ("tier=gpu", ["a", "c"]),
    ("tier==gpu", ["a", "c"]),
    ("tier!=gpu", ["b", "d"]),
    ("tier", ["a", "b", "c"]),
    ("!tier", ["d"]),
    ("tier in (cpu, tpu)", ["b"]),
    ("tier notin (cpu)", ["a", "c", "d"]),
    ("tier=gpu,team=vision", ["a"]),
    ("tier=gpu,!team", ["c"]),
    ("", ["a", "b", "c", "d"]),
]


def test_list_label_selector(store: ResourceStore) -> None:
    store.create(new_object("a", labels={"tier": "gpu", "team": "vision"}))
    store.create(new_object("b", labels={"tier": "cpu"}))
    store.create(new_object("c", labels={"tier": "gpu"}))
    store.create(new_object("d"))
    store.create(new_object("e", kind="Experiment", labels={"tier": "gpu"}))
    for selector, expected in SELECTOR_CASES:
        listed = [o.name for o in store.list(KIND, selector=parse_selector(selector)).items]
        assert listed == expected, f"selector {selector!r}"
    gpu_in_b = store.list(KIND, profile="team-b", selector=parse_selector("tier=gpu"))
    assert gpu_in_b.items == []


def page_through(store: ResourceStore, limit: int, **filters: object) -> list[list[StoredObject]]:
    pages: list[list[StoredObject]] = []
    token: str | None = None
    while True:
        result = store.list(KIND, limit=limit, continue_token=token, **filters)  # type: ignore[arg-type]
        assert len(result.items) <= limit
        pages.append(result.items)
        token = result.continue_token
        if token is None:
            return pages
        assert len(pages) < 1000, "pagination does not end"


def test_pagination_returns_every_object_once_in_order(store: ResourceStore) -> None:
    for i in range(10):
        store.create(new_object(f"job-{i:02d}", profile=f"team-{i % 3}"))
    everything = names(store.list(KIND).items)
    assert len(everything) == 10

    pages = page_through(store, 3)
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert [n for page in pages for n in names(page)] == everything

    exact = page_through(store, 5)
    assert [len(p) for p in exact] == [5, 5]  # a full last page says it is the last one

    single = store.list(KIND, limit=10)
    assert names(single.items) == everything
    assert single.continue_token is None


def test_paginated_selector_listing_never_repeats_or_skips(store: ResourceStore) -> None:
    """A selector that filters out most objects, over more rows than one database read
    fetches, paged with small limits: every match once, in order, across pages."""
    total = 520
    matching = {0, 1, 2, 250, 498, 499, 500, 501, 519}
    for i in range(total):
        store.create(
            new_object(f"job-{i:04d}", profile="team-a", labels={"pick": "yes" if i in matching else "no"})
        )
    selector = parse_selector("pick=yes")
    expected = [("team-a", f"job-{i:04d}") for i in sorted(matching)]
    assert names(store.list(KIND, selector=selector).items) == expected

    for limit in (1, 2, 4, 9):
        pages = page_through(store, limit, selector=selector)
        assert [n for page in pages for n in names(page)] == expected, f"limit {limit}"
        assert all(len(page) == limit for page in pages[:-1])
        assert all(o.labels == {"pick": "yes"} for page in pages for o in page)

    assert store.list(KIND, selector=parse_selector("pick=maybe"), limit=3).items == []


def test_pagination_is_stable_while_objects_come_and_go(store: ResourceStore) -> None:
    stable = [f"job-{i:02d}" for i in range(0, 40, 2)]
    volatile = [f"job-{i:02d}" for i in range(1, 40, 2)]
    for name in sorted(stable + volatile):
        store.create(new_object(name, labels={"app": "x"}))
    selector = parse_selector("app=x")

    seen: list[str] = []
    token: str | None = None
    round_ = 0
    while True:
        result = store.list(KIND, selector=selector, limit=3, continue_token=token)
        seen += [o.name for o in result.items]
        token = result.continue_token
        if token is None:
            break
        # Between pages: delete a volatile object not seen yet, add objects before and after
        # the cursor, and change labels of an already-seen one.
        unseen = [n for n in volatile if n not in seen]
        if unseen:
            store.request_delete(KIND, "team-a", unseen[-1])
            volatile.remove(unseen[-1])
        store.create(new_object(f"job-00-{round_}", labels={"app": "x"}))
        store.create(new_object(f"job-99-{round_}", labels={"app": "x"}))
        round_ += 1

    assert len(seen) == len(set(seen)), "a page repeated an object"
    assert [n for n in seen if n in stable] == stable, "a page skipped an object"
    assert seen == sorted(seen)


MALFORMED_TOKENS = [
    "not a token",
    "!!!!",
    "eyJhIjog",  # cut-off base64
    base64.urlsafe_b64encode(b"not json").decode(),
    base64.urlsafe_b64encode(b"[1, 2]").decode(),
    base64.urlsafe_b64encode(b'["only-one"]').decode(),
    base64.urlsafe_b64encode(b'["a", "b", "c"]').decode(),
    base64.urlsafe_b64encode(b"null").decode(),
    base64.urlsafe_b64encode(b'"ab"').decode(),  # a string of two characters unpacks too
    base64.urlsafe_b64encode(b'{"profile": "a", "name": "b"}').decode(),
]


def test_malformed_continue_token_is_a_bad_request(store: ResourceStore) -> None:
    store.create(new_object("job"))
    for token in MALFORMED_TOKENS:
        with pytest.raises(BadRequest) as raised:
            store.list(KIND, limit=1, continue_token=token)
        assert raised.value.field == "continue", token
    valid = store.list(KIND, limit=1)
    assert valid.items and valid.continue_token is None


# --- deletion --------------------------------------------------------------------------------


def test_request_delete_without_finalizers_removes_the_object(store: ResourceStore) -> None:
    created = store.create(new_object("job"))
    store.create(new_object("keep"))
    assert store.request_delete(KIND, "team-a", "job") is None
    with pytest.raises(NotFound):
        store.get(KIND, "team-a", "job")
    with pytest.raises(NotFound):
        store.get_by_uid(created.uid)
    assert [o.name for o in store.list(KIND).items] == ["keep"]
    with pytest.raises(NotFound):
        store.request_delete(KIND, "team-a", "job")

    recreated = store.create(new_object("job"))
    assert recreated.uid != created.uid
    assert recreated.resource_version == 1


def test_request_delete_with_finalizers_marks_then_last_finalizer_removes(store: ResourceStore) -> None:
    heard = collect_changes(store)
    store.create(new_object("job", finalizers=["lumiflow.io/workload", "lumiflow.io/artifacts"]))

    marked = store.request_delete(KIND, "team-a", "job")
    assert marked is not None
    assert assert_utc(marked.deletion_timestamp) is not None
    assert marked.resource_version == 2
    assert store.get(KIND, "team-a", "job") == marked

    again = store.request_delete(KIND, "team-a", "job")  # idempotent
    assert again == marked
    assert store.get(KIND, "team-a", "job") == marked

    # A controller removes one finalizer; it cannot clear the deletion mark by omitting it.
    current = store.update(marked.copy(finalizers=["lumiflow.io/artifacts"], deletion_timestamp=None))
    assert current.deletion_timestamp == marked.deletion_timestamp
    assert store.get(KIND, "team-a", "job").finalizers == ["lumiflow.io/artifacts"]
    assert store.get(KIND, "team-a", "job").deletion_timestamp == marked.deletion_timestamp

    store.update(current.copy(finalizers=[]))
    with pytest.raises(NotFound):
        store.get(KIND, "team-a", "job")
    assert store.list(KIND).items == []
    assert [c.type for c in heard] == ["created", "updated", "updated", "deleted"]


def test_purge_removes_the_row_whatever_its_finalizers(store: ResourceStore) -> None:
    store.create(new_object("stuck", finalizers=["lumiflow.io/never-removed"]))
    store.request_delete(KIND, "team-a", "stuck")
    store.purge(KIND, "team-a", "stuck")
    with pytest.raises(NotFound):
        store.get(KIND, "team-a", "stuck")
    store.create(new_object("also-stuck", finalizers=["lumiflow.io/never-removed"]))
    store.purge(KIND, "team-a", "also-stuck")
    assert store.list(KIND).items == []
    with pytest.raises(NotFound):
        store.purge(KIND, "team-a", "stuck")


# --- batched status writes -----------------------------------------------------------------


def test_update_status_many_skips_stale_and_missing_writes_and_commits_the_rest(
    store: ResourceStore,
) -> None:
    for name in ("a", "b", "c"):
        store.create(new_object(name))
    store.update(store.get(KIND, "team-a", "b").copy(labels={"moved": "on"}))  # b is at rv 2
    heard = collect_changes(store)

    results = store.update_status_many(
        [
            StatusWrite(KIND, "team-a", "a", {"phase": "Admitted"}, expected_rv=1),
            StatusWrite(KIND, "team-a", "b", {"phase": "Admitted"}, expected_rv=1),  # stale
            StatusWrite(KIND, "team-a", "gone", {"phase": "Admitted"}),  # missing
            StatusWrite(KIND, "team-a", "c", {"phase": "Admitted"}),  # last writer wins
            StatusWrite(KIND, "team-a", "a", {"phase": "Twice"}, expected_rv=1),  # stale after 1st
        ]
    )
    assert [r is None for r in results] == [False, True, True, False, True]
    a, c = results[0], results[3]
    assert a is not None and c is not None
    assert (a.name, a.resource_version, a.status) == ("a", 2, {"phase": "Admitted"})
    assert (c.name, c.resource_version, c.status) == ("c", 2, {"phase": "Admitted"})

    assert store.get(KIND, "team-a", "a") == a
    assert store.get(KIND, "team-a", "c") == c
    b = store.get(KIND, "team-a", "b")
    assert (b.resource_version, b.status) == (2, {})
    assert [o.name for o in store.list(KIND, phases=["Admitted"]).items] == ["a", "c"]
    assert [(ch.name, ch.type) for ch in heard] == [("a", "status"), ("c", "status")]

    assert store.update_status_many([]) == []
    assert store.update_status_many([StatusWrite(KIND, "team-a", "b", {}, expected_rv=1)]) == [None]


# --- notifications -----------------------------------------------------------------------------


def test_subscribers_hear_each_committed_change_after_commit(store: ResourceStore) -> None:
    heard: list[tuple[Change, StoredObject | None, int]] = []

    def on_change(change: Change) -> None:
        # Called after the commit: the change is already visible to a fresh read.
        try:
            seen: StoredObject | None = store.get(change.kind, change.profile, change.name)
        except NotFound:
            seen = None
        heard.append((change, seen, threading.get_ident()))

    other: list[Change] = []
    store.subscribe(on_change)
    store.subscribe(other.append)

    parent = store.create(new_object("exp", kind="Experiment"))
    child = store.create(new_object("trial", owner=parent))
    child = store.update(child.copy(spec={"replicas": 2}))
    child = store.update_status(KIND, "team-a", "trial", {"phase": "Running"})
    store.request_delete(KIND, "team-a", "trial")

    changes = [h[0] for h in heard]
    assert changes == [
        Change("Experiment", "team-a", "exp", parent.uid, None, "created"),
        Change(KIND, "team-a", "trial", child.uid, parent.uid, "created", "Experiment", "exp"),
        Change(KIND, "team-a", "trial", child.uid, parent.uid, "updated", "Experiment", "exp"),
        Change(
            KIND, "team-a", "trial", child.uid, parent.uid, "status", "Experiment", "exp", phase="Running"
        ),
        Change(
            KIND, "team-a", "trial", child.uid, parent.uid, "deleted", "Experiment", "exp", phase="Running"
        ),
    ]
    assert other == changes
    seen = [h[1] for h in heard]
    assert seen[0] == parent
    assert seen[2] is not None and seen[2].spec == {"replicas": 2}
    assert seen[3] is not None and seen[3].status == {"phase": "Running"}
    assert seen[4] is None
    assert {h[2] for h in heard} == {threading.get_ident()}


def test_a_status_write_names_its_writer_and_records_its_events(store: ResourceStore) -> None:
    created = store.create(new_object("job"))
    heard = collect_changes(store)
    store.update_status(
        KIND,
        "team-a",
        "job",
        {"phase": "Running"},
        writer="TrainingJob",
        events=[("Normal", "Running", "started"), ("Normal", "Running", "started")],
    )
    assert [(c.type, c.writer) for c in heard] == [("status", "TrainingJob")]
    events = store.list_events(uid=created.uid)
    assert [(e.reason, e.count) for e in events] == [("Running", 2)]

    before = utcnow()
    store.update_status_many(
        [StatusWrite(KIND, "team-a", "job", {"phase": "Failed"}, events=(("Warning", "Failed", "x" * 5000),))]
    )
    store.update_status(KIND, "team-a", "job", {"phase": "Failed"}, events=[("Normal", "Running", "started")])
    running, failed, newest = store.list_events(uid=created.uid)  # oldest first
    assert (failed.type, failed.reason, failed.count, len(failed.message)) == ("Warning", "Failed", 1, 4000)
    assert (newest.reason, newest.count) == ("Running", 1)  # not a repeat: another came between
    assert running.first_timestamp <= running.last_timestamp <= before <= assert_utc(failed.first_timestamp)
    assert assert_utc(newest.last_timestamp) >= failed.last_timestamp


def test_subscribers_are_not_called_when_a_write_fails(store: ResourceStore) -> None:
    created = store.create(new_object("job", finalizers=["f"]))
    heard = collect_changes(store)

    with pytest.raises(AlreadyExists):
        store.create(new_object("job"))
    with pytest.raises(Conflict):
        store.update(created.copy(spec={"v": 2}), expected_rv=9)
    with pytest.raises(NotFound):
        store.update(new_object("ghost"))
    with pytest.raises(Conflict):
        store.update_status(KIND, "team-a", "job", {"phase": "X"}, expected_rv=9)
    with pytest.raises(NotFound):
        store.update_status(KIND, "team-a", "ghost", {"phase": "X"})
    with pytest.raises(NotFound):
        store.request_delete(KIND, "team-a", "ghost")
    with pytest.raises(NotFound):
        store.purge(KIND, "team-a", "ghost")
    assert store.update_status_many([StatusWrite(KIND, "team-a", "job", {}, expected_rv=9)]) == [None]
    assert heard == []

    store.request_delete(KIND, "team-a", "job")
    store.request_delete(KIND, "team-a", "job")  # already deleting: nothing changes
    assert [c.type for c in heard] == ["updated"]
