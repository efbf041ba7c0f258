"""Recurring runs: the cron parser, the schedule's times, the controller against a real store
with a clock of the test's choosing, and whole stories through the API (every step a real
process on the local cluster) and the CLI (a real server process)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lumiflow import dsl
from lumiflow.common import cron
from lumiflow.common.timeutil import parse_rfc3339, to_rfc3339
from lumiflow.pipelines import compiler
from lumiflow.pipelines.checks import PIPELINE_LABEL, checked_pipeline_spec
from lumiflow.pipelines.recurring import RECURRING_LABEL, RecurringRunController, run_name
from lumiflow.resources import default_registry, prepare
from lumiflow.resources.recurring import MAX_CATCHUP, CronSchedule, IntervalSchedule, due_times
from lumiflow.store import SQLStore, StoredObject, parse_selector
from lumiflow.store.model import ObjectRef
from tests.helpers import lumi, wait_until

pytestmark = pytest.mark.timeout(120)


def at(text: str) -> datetime:
    parsed = parse_rfc3339(text)
    assert parsed is not None
    return parsed


# --- pipelines the schedules run -------------------------------------------------------------


@dsl.component
def hello(who: str) -> str:
    return f"hello {who}"


@dsl.pipeline(name="greet")
def greet(who: str = "world") -> None:
    hello(who=who)


@dsl.component
def nap(marks: str, seconds: float) -> str:
    import os
    import time

    stamp = str(time.time_ns())
    with open(os.path.join(marks, stamp + ".start"), "w") as fh:
        fh.write(str(time.time()))
    time.sleep(seconds)
    with open(os.path.join(marks, stamp + ".end"), "w") as fh:
        fh.write(str(time.time()))
    return stamp


@dsl.pipeline(name="napping")
def napping(marks: str, seconds: float = 1.5) -> None:
    nap(marks=marks, seconds=seconds)


def spec_of(func: Any) -> dict[str, Any]:
    return compiler.compile(func).model_dump(mode="json", exclude_none=True)


# --- the cron parser ---------------------------------------------------------------------------


def test_cron_fields_ranges_steps_lists_and_names() -> None:
    e = cron.parse("5,10-12,*/20 0-6/3 1,15 JAN-MAR,dec mon-fri")
    assert e.minutes == {0, 5, 10, 11, 12, 20, 40}
    assert e.hours == {0, 3, 6}
    assert e.days == {1, 15}
    assert e.months == {1, 2, 3, 12}
    assert e.weekdays == {1, 2, 3, 4, 5}
    assert not e.with_seconds and e.seconds == {0}
    assert cron.parse("0 0 * * 7").weekdays == {0}  # 7 is Sunday too
    assert cron.parse("0 0 * * 5/1").weekdays == {5, 6, 0}  # a/n runs to the end: 7 is Sunday
    six = cron.parse("30 0 */2 * * ?")  # Kubeflow Pipelines' six fields, seconds first
    assert six.with_seconds and six.seconds == {30} and six.hours == set(range(0, 24, 2))


@pytest.mark.parametrize(
    ("macro", "same_as"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_cron_macros(macro: str, same_as: str) -> None:
    a, b = cron.parse(macro), cron.parse(same_as)
    assert (a.minutes, a.hours, a.days, a.months, a.weekdays) == (
        b.minutes,
        b.hours,
        b.days,
        b.months,
        b.weekdays,
    )


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("0 */2 * * *", "2026-11-28T13:05:00Z", "2026-11-28T14:00:00Z"),
        ("0 */2 * * *", "2026-11-28T14:00:00Z", "2026-11-28T16:00:00Z"),  # strictly after
        ("@daily", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"),  # across the year's end
        ("0 0 31 * *", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z"),  # February has no 31st
        ("0 0 1 * *", "2026-01-31T12:00:00Z", "2026-02-01T00:00:00Z"),  # across a month's end
        ("0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),  # the next leap year
        ("30 9 * * mon", "2026-11-28T10:00:00Z", "2026-11-30T09:30:00Z"),  # a Saturday → Monday
        ("0 0 13 * 5", "2026-11-01T00:00:00Z", "2026-11-06T00:00:00Z"),  # 13th OR a Friday
        ("*/15 * * * * *", "2026-11-28T14:00:59Z", "2026-11-28T14:01:00Z"),
        ("0 12 * * *", "2026-11-28T12:00:00.5Z", "2026-11-29T12:00:00Z"),
    ],
)
def test_cron_next_time(expression: str, start: str, expected: str) -> None:
    assert cron.parse(expression).next_after(at(start)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("@daily", "2027-01-01T00:00:00Z", "2026-12-31T00:00:00Z"),  # strictly before
        ("0 0 1 1 *", "2027-06-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("0 0 31 * *", "2026-03-30T00:00:00Z", "2026-01-31T00:00:00Z"),
        ("0 */2 * * *", "2026-01-01T00:30:00Z", "2026-01-01T00:00:00Z"),
        ("0 22 * * *", "2026-01-01T00:30:00Z", "2025-12-31T22:00:00Z"),  # across the year's start
    ],
)
def test_cron_previous_time(expression: str, start: str, expected: str) -> None:
    assert cron.parse(expression).previous_before(at(start)) == at(expected)


def test_cron_in_a_timezone_and_across_daylight_saving_changes() -> None:
    zurich = ZoneInfo("Europe/Zurich")
    nine = cron.parse("0 9 * * *")
    assert nine.next_after(at("2026-01-10T12:00:00Z"), zurich) == at("2026-01-11T08:00:00Z")  # CET
    assert nine.next_after(at("2026-07-10T12:00:00Z"), zurich) == at("2026-07-11T07:00:00Z")  # CEST
    # Forwards and backwards give the same times through both changes of a year, each once.
    ny = ZoneInfo("America/New_York")
    half = cron.parse("*/30 * * * *")
    for day in ("2026-03-08T04:00:00Z", "2026-11-01T03:00:00Z"):
        forward = [at(day)]
        for _ in range(10):
            nxt = half.next_after(forward[-1], ny)
            assert nxt is not None
            forward.append(nxt)
        backward = [forward[-1]]
        for _ in range(10):
            prev = half.previous_before(backward[-1], ny)
            assert prev is not None
            backward.append(prev)
        assert forward == backward[::-1]
        assert all(b > a for a, b in itertools.pairwise(forward))


@pytest.mark.parametrize(
    ("expression", "part", "words"),
    [
        ("61 * * * *", "minute", "out of range 0-59"),
        ("* 24 * * *", "hour", "out of range 0-23"),
        ("* * 0 * *", "day-of-month", "out of range 1-31"),
        ("* * * 13 *", "month", "out of range 1-12"),
        ("* * * * 8", "day-of-week", "out of range 0-7"),
        ("* * * FOO *", "month", "not a number"),
        ("*/0 * * * *", "minute", "step"),
        ("10-5 * * * *", "minute", "backwards"),
        ("1,,2 * * * *", "minute", "empty"),
        ("? * * * *", "minute", "day fields only"),
        ("0 0 30 2 *", "day-of-month", "never"),
        ("60 * * * * *", "second", "out of range 0-59"),
        ("* * *", "expression", "3 fields"),
        ("", "expression", "empty"),
        ("@reboot", "expression", "unknown macro"),
    ],
)
def test_invalid_cron_expressions_name_the_field(expression: str, part: str, words: str) -> None:
    with pytest.raises(cron.CronError) as info:
        cron.parse(expression)
    assert info.value.part == part and words in str(info.value)
    if part != "expression":
        assert part in str(info.value)


# --- schedules and run names ------------------------------------------------------------------------


def test_interval_times_are_a_fixed_grid_and_due_times_are_bounded() -> None:
    start = at("2026-01-01T00:00:00Z")
    every = IntervalSchedule(start, 60)
    assert every.next_after(start - timedelta(days=1)) == start + timedelta(
        minutes=1
    )  # first: one interval in
    assert every.next_after(at("2026-01-01T00:01:00Z")) == at("2026-01-01T00:02:00Z")
    assert every.previous_before(at("2026-01-01T00:02:00.000001Z")) == at("2026-01-01T00:02:00Z")
    assert every.previous_before(at("2026-01-01T00:01:00Z")) is None
    due, left_out = due_times(every, after=start, until=at("2026-01-01T00:05:30Z"), limit=100)
    assert due == [start + timedelta(minutes=k) for k in range(1, 6)] and not left_out
    latest, left_out = due_times(every, after=start, until=at("2026-01-01T00:05:30Z"), limit=1)
    assert latest == [at("2026-01-01T00:05:00Z")] and left_out
    # A week of one-second triggers: only the latest ones are kept.
    second = IntervalSchedule(start, 1)
    due, left_out = due_times(second, after=start, until=start + timedelta(days=7), limit=MAX_CATCHUP)
    assert len(due) == MAX_CATCHUP and left_out and due[-1] == start + timedelta(days=7)
    due, _ = due_times(
        CronSchedule(cron.parse("@daily"), UTC),
        after=at("2026-12-30T00:00:00Z"),
        until=at("2027-01-02T00:00:00Z"),
        limit=10,
    )
    assert due == [at("2026-12-31T00:00:00Z"), at("2027-01-01T00:00:00Z"), at("2027-01-02T00:00:00Z")]


def test_run_names_are_deterministic_and_fit() -> None:
    assert run_name("nightly", at("2026-11-28T14:00:00Z")) == "nightly-20261128t1400z"
    assert run_name("fast", at("2026-11-28T14:00:05Z")) == "fast-20261128t140005z"
    assert run_name("zurich", at("2026-11-28T15:00:00+01:00")) == "zurich-20261128t1400z"
    long = run_name("a" * 60 + "-bc", at("2026-11-28T14:00:05Z"))
    assert len(long) == 63 and long.endswith("-20261128t140005z") and "--" not in long


# --- the controller against a real store, on the test's clock -----------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLStore]:
    opened = SQLStore(f"sqlite:///{tmp_path / 'db' / 'lumiflow.db'}")
    try:
        yield opened
    finally:
        opened.close()


def _upload(store: SQLStore, func: Any, name: str = "greet") -> None:
    store.create(
        StoredObject(
            kind="PipelineVersion",
            api_version="lumiflow.dev/v1",
            profile="team",
            name=f"{name}-v1",
            spec={
                "pipeline": name,
                "version": 1,
                "pipelineSpec": checked_pipeline_spec(spec_of(func), "spec.pipelineSpec"),
            },
            labels={PIPELINE_LABEL: name},
        )
    )


def _schedule(store: SQLStore, name: str, **spec: Any) -> ObjectRef:
    doc = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "RecurringRun",
        "metadata": {"name": name},
        "spec": {"pipeline": "greet", **spec},
    }
    return store.create(prepare(default_registry(), doc, profile="team").obj).ref


def _runs(store: SQLStore, schedule: str) -> list[StoredObject]:
    return store.list(
        "PipelineRun", profile="team", selector=parse_selector(f"{RECURRING_LABEL}={schedule}")
    ).items


def _finish(store: SQLStore, runs: list[StoredObject], state: str = "SUCCEEDED") -> None:
    for r in runs:
        store.update_status("PipelineRun", "team", r.name, {"state": state, "phase": state})


def test_catchup_runs_the_missed_triggers_up_to_max_concurrency_then_the_rest(store: SQLStore) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    start = clock.now - timedelta(minutes=5, seconds=30)
    ctl = RecurringRunController(store, registry=default_registry(), clock=clock)
    _upload(store, greet)
    ref = _schedule(
        store, "catchup", trigger={"interval": {"seconds": 60}}, startTime=to_rfc3339(start), maxConcurrency=2
    )
    result = ctl.reconcile(ref)
    runs = _runs(store, "catchup")
    missed = [start + timedelta(minutes=k) for k in range(1, 6)]
    assert sorted(r.name for r in runs) == [run_name("catchup", t) for t in missed[:2]]
    run = runs[0]
    assert run.owner_references[0]["kind"] == "RecurringRun" and run.owner_references[0]["controller"]
    assert run.spec["recurringRun"] == "catchup" and run.spec["version"] == 1
    assert run.spec["pipelineSpec"]["name"] == "greet" and run.labels[PIPELINE_LABEL] == "greet"
    status = store.get("RecurringRun", "team", "catchup").status
    assert status["lastTriggerTime"] == to_rfc3339(missed[1]) and status["runs"] == 2
    assert status["nextTriggerTime"] == to_rfc3339(missed[2]) and "waiting" in status["message"]
    assert result.requeue_after is not None and result.requeue_after <= 5
    # Again, nothing finished: nothing new.
    ctl.reconcile(ref)
    assert len(_runs(store, "catchup")) == 2
    # Both finish: the next two missed triggers, then the last one.
    _finish(store, _runs(store, "catchup"))
    ctl.reconcile(ref)
    assert len(_runs(store, "catchup")) == 4
    _finish(store, _runs(store, "catchup"))
    result = ctl.reconcile(ref)
    assert sorted(r.name for r in _runs(store, "catchup")) == sorted(run_name("catchup", t) for t in missed)
    status = store.get("RecurringRun", "team", "catchup").status
    assert status["phase"] == "Enabled" and status["nextTriggerTime"] == to_rfc3339(
        missed[-1] + timedelta(minutes=1)
    )
    assert result.requeue_after == pytest.approx(30.01, abs=0.1)


def test_catchup_is_bounded_and_no_catchup_runs_only_the_latest(store: SQLStore) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    ctl = RecurringRunController(store, registry=default_registry(), clock=clock)
    _upload(store, greet)
    long_ago = to_rfc3339(clock.now - timedelta(days=2))
    caught = _schedule(
        store, "caught", trigger={"interval": {"seconds": 60}}, startTime=long_ago, maxConcurrency=100
    )
    latest = _schedule(
        store,
        "latest",
        trigger={"interval": {"seconds": 60}},
        startTime=long_ago,
        noCatchup=True,
        maxConcurrency=5,
    )
    ctl.reconcile(caught)
    ctl.reconcile(latest)
    assert len(_runs(store, "caught")) == MAX_CATCHUP  # not the 2880 missed
    only = _runs(store, "latest")
    assert [r.name for r in only] == [run_name("latest", clock.now)]
    events = [e.reason for e in store.list_events(uid=store.get("RecurringRun", "team", "latest").uid)]
    assert "TriggersSkipped" in events
    # Downtime again: lastTriggerTime stays where it was, the clock moves on ten minutes.
    clock.now += timedelta(minutes=10)
    ctl.reconcile(latest)
    assert sorted(r.name for r in _runs(store, "latest")) == sorted(
        [run_name("latest", clock.now - timedelta(minutes=10)), run_name("latest", clock.now)]
    )


def test_a_restart_between_creating_runs_and_writing_status_creates_nothing_twice(store: SQLStore) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    ctl = RecurringRunController(store, registry=default_registry(), clock=clock)
    _upload(store, greet)
    ref = _schedule(
        store,
        "nightly",
        trigger={"cron": {"expression": "*/10 * * * *"}},
        startTime=to_rfc3339(clock.now - timedelta(hours=1)),
        maxConcurrency=10,
    )
    ctl.reconcile(ref)
    made = sorted(r.name for r in _runs(store, "nightly"))
    assert 6 <= len(made) <= 7
    saved = store.get("RecurringRun", "team", "nightly").status
    # The status write "never happened".
    store.update_status("RecurringRun", "team", "nightly", {})
    ctl.reconcile(ref)
    assert sorted(r.name for r in _runs(store, "nightly")) == made
    again = store.get("RecurringRun", "team", "nightly").status
    assert again["lastTriggerTime"] == saved["lastTriggerTime"] and again["runs"] == len(made)


def test_a_run_that_cannot_be_made_waits_with_the_reason(store: SQLStore) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    ctl = RecurringRunController(store, registry=default_registry(), clock=clock)
    _upload(store, greet)
    ref = _schedule(
        store,
        "typo",
        trigger={"interval": {"seconds": 60}},
        startTime=to_rfc3339(clock.now - timedelta(seconds=90)),
        parameters={"whom": "x"},
    )
    result = ctl.reconcile(ref)
    status = store.get("RecurringRun", "team", "typo").status
    assert _runs(store, "typo") == [] and status.get("lastTriggerTime") is None
    assert "spec.parameters.whom" in status["message"] and result.requeue_after == 30.0


def test_end_time_finishes_and_disabled_skips_what_it_missed(store: SQLStore) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    ctl = RecurringRunController(store, registry=default_registry(), clock=clock)
    _upload(store, greet)
    ref = _schedule(
        store,
        "short",
        trigger={"interval": {"seconds": 60}},
        startTime=to_rfc3339(clock.now - timedelta(minutes=10)),
        endTime=to_rfc3339(clock.now - timedelta(minutes=7, seconds=30)),
        maxConcurrency=10,
    )
    assert ctl.reconcile(ref).requeue_after is None
    status = store.get("RecurringRun", "team", "short").status
    assert len(_runs(store, "short")) == 2 and status["phase"] == "Finished"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Finished"] == "True"
    assert status.get("nextTriggerTime") is None

    ref = _schedule(store, "off", trigger={"interval": {"seconds": 60}}, enabled=False)
    assert ctl.reconcile(ref).requeue_after is None
    assert store.get("RecurringRun", "team", "off").status["phase"] == "Disabled"
    clock.now += timedelta(minutes=5)
    ctl.reconcile(ref)
    assert _runs(store, "off") == []
    current = store.get("RecurringRun", "team", "off")
    store.update(current.copy(spec={**current.spec, "enabled": True}))
    ctl.reconcile(ref)
    status = store.get("RecurringRun", "team", "off").status
    assert _runs(store, "off") == [] and status["phase"] == "Enabled"  # the five missed ones are skipped
    clock.now += timedelta(minutes=1)
    ctl.reconcile(ref)
    assert len(_runs(store, "off")) == 1


# --- through the API, with real runs -------------------------------------------------------------


def _upload_api(api: Any, func: Any, name: str) -> None:
    doc = {"apiVersion": "lumiflow.dev/v1", "kind": "Pipeline", "metadata": {"name": name}, "spec": {}}
    assert api.request("POST", "/api/v1/profiles/admin/pipelines", json=doc).status_code == 201
    version = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "PipelineVersion",
        "metadata": {"name": f"{name}-v1"},
        "spec": {"pipeline": name, "version": 1, "pipelineSpec": spec_of(func)},
    }
    r = api.request("POST", "/api/v1/profiles/admin/pipelineversions", json=version)
    assert r.status_code == 201, r.text


def _create(api: Any, name: str, **spec: Any) -> dict[str, Any]:
    doc = {"apiVersion": "lumiflow.dev/v1", "kind": "RecurringRun", "metadata": {"name": name}, "spec": spec}
    r = api.request("POST", "/api/v1/profiles/admin/recurringruns", json=doc)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _api_runs(api: Any, schedule: str) -> list[dict[str, Any]]:
    r = api.request(
        "GET",
        "/api/v1/profiles/admin/pipelineruns",
        params={"labelSelector": f"{RECURRING_LABEL}={schedule}"},
    )
    return list(r.json()["items"])


def _get(api: Any, name: str) -> dict[str, Any]:
    return dict(api.request("GET", f"/api/v1/profiles/admin/recurringruns/{name}").json())


def _set_enabled(api: Any, name: str, enabled: bool) -> None:
    obj = _get(api, name)
    obj["spec"]["enabled"] = enabled
    obj["metadata"].pop("resourceVersion")
    r = api.request("PUT", f"/api/v1/profiles/admin/recurringruns/{name}", json=obj)
    assert r.status_code == 200, r.text


FINAL = ("SUCCEEDED", "FAILED", "CANCELED")


@pytest.mark.slow
def test_an_interval_schedule_runs_one_at_a_time_and_disable_stops_it(api: Any, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    _upload_api(api, napping, "napping")
    _create(
        api,
        "every-second",
        pipeline="napping",
        parameters={"marks": str(marks), "seconds": 1.5},
        trigger={"interval": {"seconds": 1}},
        caching=False,
    )

    def three_succeeded() -> list[dict[str, Any]] | None:
        runs = _api_runs(api, "every-second")
        done = [r for r in runs if r["status"].get("state") in FINAL]
        unfinished = [r for r in runs if r["status"].get("state") not in FINAL]
        assert len(unfinished) <= 1, [r["metadata"]["name"] for r in unfinished]
        return runs if len(done) >= 3 else None

    runs = wait_until(three_succeeded, timeout=60, interval=0.1, message="three runs to finish")
    assert all(r["status"]["state"] == "SUCCEEDED" for r in runs if r["status"].get("state") in FINAL)
    # The steps' own marks: never two processes at once.
    spans = sorted(
        (float((marks / f"{end.stem}.start").read_text()), float(end.read_text()))
        for end in marks.glob("*.end")
    )
    assert len(spans) >= 3
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    # Each run was created after the previous one had finished.
    ordered = sorted(
        runs, key=lambda r: r["metadata"]["annotations"]["pipelines.lumiflow.dev/scheduled-time"]
    )
    for earlier, later in itertools.pairwise(ordered):
        if earlier["status"].get("finishTime"):
            assert at(later["metadata"]["creationTimestamp"]) >= at(earlier["status"]["finishTime"])
    status = _get(api, "every-second")["status"]
    assert status["phase"] == "Enabled" and status["runs"] >= 3 and status["lastTriggerTime"]

    _set_enabled(api, "every-second", False)
    wait_until(lambda: _get(api, "every-second")["status"].get("phase") == "Disabled", timeout=20)
    count = len(_api_runs(api, "every-second"))
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:  # a 1 s schedule: three triggers would have come
        assert len(_api_runs(api, "every-second")) == count
        time.sleep(0.25)
    status = _get(api, "every-second")["status"]
    assert status["phase"] == "Disabled" and status.get("nextTriggerTime") is None
    enabled_at = datetime.now(UTC)
    _set_enabled(api, "every-second", True)
    wait_until(
        lambda: len(_api_runs(api, "every-second")) > count, timeout=30, message="a run after enabling"
    )
    newest = max(
        at(r["metadata"]["annotations"]["pipelines.lumiflow.dev/scheduled-time"])
        for r in _api_runs(api, "every-second")
    )
    assert newest > enabled_at - timedelta(seconds=1)  # the triggers missed while disabled never ran
    _set_enabled(api, "every-second", False)
    wait_until(
        lambda: all(r["status"].get("state") in FINAL for r in _api_runs(api, "every-second")),
        timeout=30,
        message="the last run to finish",
    )


@pytest.mark.slow
def test_after_downtime_catchup_runs_the_missed_triggers_and_no_catchup_only_the_latest(api: Any) -> None:
    _upload_api(api, greet, "greet")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=200)
    common = {
        "pipeline": "greet",
        "trigger": {"interval": {"seconds": 60}},
        "startTime": to_rfc3339(start),
        "maxConcurrency": 5,
    }
    _create(api, "catchup", **common)
    _create(api, "latest", **common, noCatchup=True)
    missed = [start + timedelta(seconds=60 * k) for k in (1, 2, 3)]
    wait_until(lambda: len(_api_runs(api, "catchup")) == 3, timeout=20, message="three caught-up runs")
    wait_until(lambda: len(_api_runs(api, "latest")) == 1, timeout=20, message="the latest missed run")
    assert sorted(r["metadata"]["name"] for r in _api_runs(api, "catchup")) == [
        run_name("catchup", t) for t in missed
    ]
    assert [r["metadata"]["name"] for r in _api_runs(api, "latest")] == [run_name("latest", missed[-1])]
    for name in ("catchup", "latest"):
        wait_until(
            lambda n=name: all(r["status"].get("state") == "SUCCEEDED" for r in _api_runs(api, n)),
            timeout=60,
            message=f"the runs of {name} to succeed",
        )
        status = _get(api, name)["status"]
        assert status["lastTriggerTime"] == to_rfc3339(missed[-1])
        assert status["nextTriggerTime"] == to_rfc3339(missed[-1] + timedelta(seconds=60))
    assert len(_api_runs(api, "latest")) == 1 and len(_api_runs(api, "catchup")) == 3

    # Deleting a recurring run keeps its runs (as Kubeflow Pipelines does), without the owner.
    r = api.request("DELETE", "/api/v1/profiles/admin/recurringruns/catchup")
    assert r.status_code in (200, 202, 204), r.text
    wait_until(
        lambda: api.request("GET", "/api/v1/profiles/admin/recurringruns/catchup").status_code == 404,
        timeout=20,
        message="the recurring run to go",
    )
    kept = _api_runs(api, "catchup")
    assert len(kept) == 3 and all(not r["metadata"].get("ownerReferences") for r in kept)
    assert all(r["spec"]["recurringRun"] == "catchup" for r in kept)


def test_bad_recurring_runs_are_refused_with_the_field_and_nothing_is_made(api: Any) -> None:
    _upload_api(api, greet, "greet")
    every = {"interval": {"seconds": 60}}
    cases = [
        ({"trigger": {"cron": {"expression": "61 * * * *"}}}, "spec.trigger.cron.expression", "minute"),
        ({"trigger": {"cron": {"expression": "0 0 * * * * *"}}}, "spec.trigger.cron.expression", "7 fields"),
        (
            {"trigger": {"cron": {"expression": "@daily", "timezone": "Nowhere/Land"}}},
            "spec.trigger.cron.timezone",
            "Nowhere",
        ),
        ({"trigger": {"cron": {"expression": "@daily"}, "interval": {"seconds": 5}}}, "spec.trigger", "both"),
        ({"trigger": {}}, "spec.trigger", "neither"),
        ({}, "spec.trigger", "required"),
        (
            {"trigger": {"interval": {"seconds": 0}}},
            "spec.trigger.interval.seconds",
            "greater than or equal to 1",
        ),
        (
            {"trigger": every, "startTime": "2026-02-01T00:00:00Z", "endTime": "2026-01-01T00:00:00Z"},
            "spec.endTime",
            "not after startTime",
        ),
        ({"trigger": every, "startTime": "tomorrow"}, "spec.startTime", "RFC 3339"),
        ({"trigger": every, "maxConcurrency": 0}, "spec.maxConcurrency", "greater than or equal to 1"),
        ({"trigger": every, "pipeline": "missing"}, "spec.pipeline", "no pipeline 'missing'"),
        ({"trigger": every, "version": 9}, "spec.version", "no version 9"),
        ({"trigger": every, "parameters": {"whom": "x"}}, "spec.parameters.whom", "no parameter"),
    ]
    for body, field, words in cases:
        doc = {
            "apiVersion": "lumiflow.dev/v1",
            "kind": "RecurringRun",
            "metadata": {"name": "bad"},
            "spec": {"pipeline": "greet", **body},
        }
        r = api.request("POST", "/api/v1/profiles/admin/recurringruns", json=doc)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["field"] == field and words in r.json()["message"], (body, r.json())
    assert api.request("GET", "/api/v1/profiles/admin/recurringruns").json()["items"] == []
    assert api.request("GET", "/api/v1/profiles/admin/pipelineruns").json()["items"] == []


# --- the CLI, against a real server ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_cli_schedules_lists_disables_and_enables(
    server_factory: Any, home: Path, tmp_path: Path
) -> None:
    server = server_factory()
    server.start()
    source = tmp_path / "greet.py"
    source.write_text(
        "from lumiflow import dsl\n\n\n"
        "@dsl.component\ndef hello(who: str) -> str:\n    return f'hello {who}'\n\n\n"
        "@dsl.pipeline(name='greet')\ndef greet(who: str = 'world') -> None:\n    hello(who=who)\n"
    )
    lumi("pipeline", "upload", str(source), "--name", "greet", home=home)
    created = json.loads(
        lumi(
            "run",
            "schedule",
            "greet",
            "--every",
            "1h30m",
            "--param",
            "who=cli",
            "--max-concurrency",
            "2",
            "--no-catchup",
            "--name",
            "often",
            "-o",
            "json",
            home=home,
        ).stdout
    )
    assert created["spec"]["trigger"] == {"interval": {"seconds": 5400}}
    assert created["spec"]["maxConcurrency"] == 2 and created["spec"]["noCatchup"] is True
    assert created["spec"]["parameters"] == {"who": "cli"}
    out = lumi("run", "schedule", "greet", "--cron", "@daily", "--name", "daily", home=home).stdout
    assert "recurringrun/daily created (cron @daily)" in out
    wait_until(
        lambda: "in " in lumi("run", "schedules", home=home).stdout.split("daily", 1)[1].splitlines()[0],
        timeout=20,
        message="the next trigger time in the table",
    )
    table = lumi("run", "schedules", home=home).stdout
    for needle in ("NAME", "TRIGGER", "ENABLED", "LAST", "NEXT", "RUNS", "often", "every 90m", "cron @daily"):
        assert needle in table, table
    assert "disabled" in lumi("run", "disable", "often", home=home).stdout
    listed = json.loads(lumi("run", "schedules", "-o", "json", home=home).stdout)["items"]
    assert {i["metadata"]["name"]: i["spec"]["enabled"] for i in listed} == {"daily": True, "often": False}
    row = next(line for line in lumi("run", "schedules", home=home).stdout.splitlines() if "often" in line)
    assert " no " in f" {row} "
    lumi("run", "enable", "often", home=home)
    assert json.loads(lumi("get", "recurringrun", "often", "-o", "json", home=home).stdout)["spec"]["enabled"]
    bad = lumi("run", "schedule", "greet", "--cron", "0 0 * * mon-xyz", home=home, check=False)
    assert bad.returncode != 0 and "day-of-week" in bad.stderr + bad.stdout
    neither = lumi("run", "schedule", "greet", home=home, check=False)
    assert neither.returncode != 0 and "--cron" in neither.stderr + neither.stdout


def test_every_durations() -> None:
    from lumiflow.cli.commands.pipelines import parse_every
    from lumiflow.common.errors import BadRequest

    assert [parse_every(t) for t in ("90", "30s", "10m", "1h30m", "1d")] == [90, 30, 600, 5400, 86400]
    for bad in ("", "10x", "m", "1.5h"):
        with pytest.raises(BadRequest):
            parse_every(bad)
