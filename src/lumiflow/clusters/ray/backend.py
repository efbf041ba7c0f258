"""The ``ray`` cluster: a gang is a Ray placement group with one supervising actor per replica.

Launch (idempotent per gang and attempt, serialized by a lock file; the files are described
in :mod:`files`):

1. ``gang.json`` is written under ``$LUMIFLOW_HOME/clusters/<cluster>/<gang>/<attempt>/``.
2. A detached placement group named after the gang and attempt reserves one bundle per replica
   (its cpu, memory and GPUs), ``SPREAD`` by default so that ranks land on different nodes.
   When Ray cannot place it within ``placement_timeout`` the gang stays Pending and Ray keeps
   it queued; the controller's next launch call picks it up from there.
3. One detached actor per replica (:mod:`replica`), named ``lumiflow.<cluster>.<gang>.<attempt>.
   <replica>`` and scheduled into its bundle, reports its node's IP, its GPUs and free ports.
   With every address known the placeholders (``${lumiflow:host:worker-0}``...) are resolved
   and written to ``addresses.json``.
4. A ``started`` marker is written for a replica before its actor is asked to start the
   command, and no actor is ever created for a marked replica: a retried launch never starts
   a replica twice, even when an actor died meanwhile.

Status comes from Ray: the live actors answer for their replicas. A replica's log lives on
its node (the actor serves byte ranges of it). When a replica ends, the backend collects its
log and outcome into ``<replica>/log`` and ``<replica>/exit.json`` in lumiflow's home, then
kills the actor; once every replica of the attempt is collected the placement group is removed,
so that an ended gang gives its resources back to the Ray cluster at once, as the scheduler
assumes. If the lumiflow server is down when a replica ends, its actor keeps the outcome (and
its bundle) until a server re-attaches and collects it. An actor that vanished without an
outcome (its node died) is recorded as ``SupervisorLost`` with exit code 137.

Exits are noticed at once: a watcher thread keeps one bounded ``wait`` call outstanding per
live actor and calls ``notify`` when it returns; ``reattach`` re-arms it from a new process.

Stop writes ``stop`` (the time of the SIGKILL) and asks every live actor to stop; the actor
sends SIGTERM to the process group and SIGKILL when the grace period ends, on the node.
Replicas that never started are recorded as stopped, and a launch after a stop starts
nothing.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from types import ModuleType
from typing import Any

from lumiflow.clusters.base import (
    Address,
    Capacity,
    ClusterBackend,
    GangSpec,
    GangStatus,
    LogChunk,
    Notify,
    ReplicaPhase,
    ReplicaStatus,
    resolve_placeholders,
)
from lumiflow.clusters.ray.connection import connect
from lumiflow.clusters.ray.files import locked, read_json, timestamp, write_json
from lumiflow.clusters.ray.options import RayOptions
from lumiflow.clusters.ray.watcher import Watcher
from lumiflow.common.errors import ClusterError, LumiflowError, NotFound
from lumiflow.common.quantity import Resources

log = logging.getLogger(__name__)

#: How long one ``wait`` call on an actor lasts before the watcher asks again.
WAIT_SECONDS = 20.0
#: The longest a stop, log read or collection waits for an actor to answer.
CALL_TIMEOUT = 30.0
#: The longest ``status`` waits; an actor that does not answer shows its replica Unknown.
STATUS_TIMEOUT = 10.0
LOG_CHUNK = 4 << 20
CAPACITY_TTL = 1.0


class RayCluster(ClusterBackend):
    type_name = "ray"

    def __init__(self, *, name: str, options: Mapping[str, Any], home: Path, notify: Notify) -> None:
        super().__init__(name=name, options=options, home=home, notify=notify)
        self.config = RayOptions.parse(name, self.options)
        self.root = home / "clusters" / name
        self._prefix = "lumiflow." + re.sub(r"[^A-Za-z0-9_-]", "_", name)
        self._lock = threading.Lock()
        self._actors: dict[str, Any] = {}  # actor name -> handle; a cache, Ray has the truth
        self._remote_cls: Any = None
        self._watcher: Watcher | None = None
        self._archiver = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"lumiflow-ray-{name}")
        self._archiving: dict[tuple[str, int, str], Future[None]] = {}
        self._releasing: set[str] = set()
        self._capacity: tuple[float, Capacity] | None = None
        self._closed = False

    # --- names, files and handles ---------------------------------------------------------

    def _ray(self) -> ModuleType:
        return connect(self.config.address, self.config.namespace)

    def _attempt_dir(self, gang_id: str, attempt: int) -> Path:
        return self.root / gang_id / str(attempt)

    def _pg_name(self, gang_id: str, attempt: int) -> str:
        return f"{self._prefix}.{gang_id}.{attempt}"

    def _actor_name(self, gang_id: str, attempt: int, replica: str) -> str:
        return f"{self._prefix}.{gang_id}.{attempt}.{replica}"

    def _actor(self, ray: ModuleType, gang_id: str, attempt: int, replica: str) -> Any | None:
        """The replica's live actor, or None when Ray has none by that name."""
        name = self._actor_name(gang_id, attempt, replica)
        with self._lock:
            handle = self._actors.get(name)
        if handle is not None:
            return handle
        try:
            handle = ray.get_actor(name, namespace=self.config.namespace)
        except ValueError:
            return None
        with self._lock:
            self._actors[name] = handle
        return handle

    def _forget(self, gang_id: str, attempt: int, replica: str) -> None:
        with self._lock:
            self._actors.pop(self._actor_name(gang_id, attempt, replica), None)

    # --- capacity -------------------------------------------------------------------------

    def capacity(self) -> Capacity:
        """What the Ray cluster's live nodes offer; per replica, the most of each resource one
        node has. Nothing while the cluster cannot be reached (the scheduler admits nothing)."""
        cached = self._capacity
        if cached is not None and time.monotonic() - cached[0] < CAPACITY_TTL:
            return cached[1]
        try:
            nodes = [n for n in self._ray().nodes() if n.get("Alive")]
        except LumiflowError:
            return Capacity(total=Resources(), per_replica=Resources())
        total, largest = Resources(), Resources()
        for node in nodes:
            res = node.get("Resources", {})
            one = Resources(
                cpu=float(res.get("CPU", 0)), memory=int(res.get("memory", 0)), gpu=int(res.get("GPU", 0))
            )
            total = total + one
            largest = Resources(
                cpu=max(largest.cpu, one.cpu),
                memory=max(largest.memory, one.memory),
                gpu=max(largest.gpu, one.gpu),
            )
        capacity = Capacity(total=total, per_replica=largest)
        self._capacity = (time.monotonic(), capacity)
        return capacity

    # --- launch ---------------------------------------------------------------------------

    @staticmethod
    def _check_placeholders(spec: GangSpec) -> None:
        """Raises ClusterError for a placeholder naming an unknown replica or port, before
        anything is reserved or started (a gang starts all or nothing)."""
        names = {r.name: Address(host="", ports=dict.fromkeys(r.ports, 0)) for r in spec.replicas}
        for r in spec.replicas:
            for value in (*r.env.values(), *r.argv):
                resolve_placeholders(value, names)

    @staticmethod
    def _bundle(request: Resources) -> dict[str, float]:
        bundle = {"CPU": request.cpu, "memory": float(request.memory), "GPU": float(request.gpu)}
        bundle = {k: v for k, v in bundle.items() if v > 0}
        # Ray refuses an empty bundle; a replica that asks for nothing gets a sliver of a CPU.
        return bundle or {"CPU": 0.001}

    def _placement_group(self, ray: ModuleType, spec: GangSpec) -> Any:
        name = self._pg_name(spec.gang_id, spec.attempt)
        try:
            return ray.util.get_placement_group(name)
        except ValueError:
            pass
        return ray.util.placement_group(
            [self._bundle(r.request) for r in spec.replicas],
            strategy=self.config.strategy,
            name=name,
            lifetime="detached",
        )

    def _create_actor(self, ray: ModuleType, spec: GangSpec, pg: Any, index: int) -> Any:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from lumiflow.clusters.ray.replica import ReplicaSupervisor

        replica = spec.replicas[index]
        with self._lock:
            if self._remote_cls is None:
                self._remote_cls = ray.remote(ReplicaSupervisor)
            cls = self._remote_cls
        bundle = self._bundle(replica.request)
        options: dict[str, Any] = {
            "name": self._actor_name(spec.gang_id, spec.attempt, replica.name),
            "namespace": self.config.namespace,
            "lifetime": "detached",
            "get_if_exists": True,
            "max_concurrency": 16,
            "max_restarts": 0,
            "num_cpus": bundle.get("CPU", 0),
            "num_gpus": int(bundle.get("GPU", 0)),
            "scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index),
        }
        if "memory" in bundle:
            options["memory"] = bundle["memory"]
        directory = "/".join((self._prefix, spec.gang_id, str(spec.attempt), replica.name))
        handle = cls.options(**options).remote(
            node_dir=self.config.node_dir, relative=directory, inherit_env=list(self.config.inherit_env)
        )
        with self._lock:
            self._actors[options["name"]] = handle
        return handle

    def _get(self, ray: ModuleType, refs: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """Results by replica; an actor's error (it died) is returned as the exception; those
        that did not answer in time are missing."""
        if not refs:
            return {}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout, fetch_local=True)
        done = set(ready)
        results: dict[str, Any] = {}
        for name, ref in refs.items():
            if ref not in done:
                continue
            try:
                results[name] = ray.get(ref, timeout=CALL_TIMEOUT)
            except ray.exceptions.RayError as exc:
                results[name] = exc
        return results

    def _plan(self, spec: GangSpec, attempt_dir: Path) -> dict[str, Any]:
        plan = read_json(attempt_dir / "gang.json")
        if plan is None:
            plan = {
                "gang": spec.gang_id,
                "attempt": spec.attempt,
                "name": spec.display_name,
                "replicas": [r.name for r in spec.replicas],
                "grace": spec.grace_seconds,
                "placementGroup": self._pg_name(spec.gang_id, spec.attempt),
            }
            write_json(attempt_dir / "gang.json", plan)
        return plan

    def launch(self, spec: GangSpec) -> GangStatus:
        self._check_placeholders(spec)
        ray = self._ray()
        attempt_dir = self._attempt_dir(spec.gang_id, spec.attempt)
        attempt_dir.mkdir(parents=True, exist_ok=True)
        with locked(attempt_dir / "launch.lock"):
            self._plan(spec, attempt_dir)
            if not (attempt_dir / "stop").exists():
                self._launch_locked(ray, spec, attempt_dir)
        return self.status(spec.gang_id, spec.attempt)

    def _launch_locked(self, ray: ModuleType, spec: GangSpec, attempt_dir: Path) -> None:
        todo = [
            i
            for i, r in enumerate(spec.replicas)
            if not (attempt_dir / r.name / "started").exists()
            and not (attempt_dir / r.name / "exit.json").exists()
        ]
        if not todo:
            return
        pg = self._placement_group(ray, spec)
        if not pg.wait(self.config.placement_timeout):
            log.info("gang %s/%s: waiting for Ray to place it", spec.gang_id, spec.attempt)
            return
        handles = {spec.replicas[i].name: self._create_actor(ray, spec, pg, i) for i in todo}
        prepared = self._get(
            ray,
            {
                r.name: handles[r.name].prepare.remote(list(r.ports))
                for r in spec.replicas
                if r.name in handles
            },
            self.config.start_timeout,
        )
        failed = {n: v for n, v in prepared.items() if isinstance(v, Exception)}
        if failed:
            name, exc = next(iter(failed.items()))
            self._drop_attempt(ray, spec.gang_id, spec.attempt)
            raise ClusterError(f"replica {name} of gang {spec.gang_id} could not be placed on Ray: {exc}")
        if len(prepared) < len(handles):
            log.info("gang %s/%s: waiting for its actors to start", spec.gang_id, spec.attempt)
            return
        addresses_path = attempt_dir / "addresses.json"
        addresses = read_json(addresses_path) or {}
        addresses.update(prepared)
        write_json(addresses_path, addresses)
        resolved = {n: Address(host=a["host"], ports=a["ports"]) for n, a in addresses.items()}
        started = {}
        for i in todo:
            replica = spec.replicas[i]
            env = {k: resolve_placeholders(v, resolved) for k, v in replica.env.items()}
            argv = [resolve_placeholders(a, resolved) for a in replica.argv]
            if (attempt_dir / "stop").exists():
                break  # a stop arrived meanwhile: start nothing more
            rdir = attempt_dir / replica.name
            rdir.mkdir(exist_ok=True)
            write_json(rdir / "started", {})  # before the start: never a second one
            started[replica.name] = handles[replica.name].start.remote(
                argv, env, replica.working_dir, replica.source_dir
            )
        results = self._get(ray, started, self.config.start_timeout)
        for name in started:
            result = results.get(name)
            if isinstance(result, dict) and result.get("pid"):
                write_json(
                    attempt_dir / name / "started", {"pid": result["pid"], "startedAt": result["startedAt"]}
                )
            if not isinstance(result, Exception):
                self._watch(spec.gang_id, spec.attempt, name, handles[name])
        if (attempt_dir / "stop").exists():
            self.stop(spec.gang_id, spec.attempt)  # the stop raced with this launch: apply it

    # --- status ---------------------------------------------------------------------------

    @staticmethod
    def _replica_status(name: str, info: Mapping[str, Any], address: Mapping[str, Any]) -> ReplicaStatus:
        return ReplicaStatus(
            name=name,
            phase=ReplicaPhase(info.get("phase", ReplicaPhase.UNKNOWN.value)),
            exit_code=info.get("exitCode"),
            reason=info.get("reason"),
            message=info.get("message"),
            host=address.get("host"),
            ports=dict(address.get("ports", {})),
            started_at=timestamp(info.get("startedAt")),
            finished_at=timestamp(info.get("finishedAt")),
            pid=info.get("pid"),
            gpus=list(address.get("gpus", [])),
        )

    def _record(self, rdir: Path, outcome: dict[str, Any]) -> dict[str, Any]:
        """Writes an outcome the backend decided itself (a lost or never-started replica)."""
        outcome = {"phase": ReplicaPhase.FAILED.value, **outcome, "finishedAt": time.time()}
        with contextlib.suppress(OSError):
            rdir.mkdir(exist_ok=True)
            if not (rdir / "exit.json").exists():
                write_json(rdir / "exit.json", outcome)
        return read_json(rdir / "exit.json") or outcome

    def _without_actor(
        self, attempt_dir: Path, name: str, *, started: bool, cause: str | None = None
    ) -> dict[str, Any]:
        """The state of a replica that has no collected outcome and either was ``started``
        and has no actor any more (lost), or was not started when the caller looked."""
        rdir = attempt_dir / name
        outcome = read_json(rdir / "exit.json")  # collected since we last looked
        if outcome is not None:
            return outcome
        stopped = (attempt_dir / "stop").exists()
        if started:
            why = cause or "Ray no longer knows it: its node or worker process died"
            return self._record(
                rdir,
                {
                    "exitCode": 137,
                    "reason": "Stopped" if stopped else "SupervisorLost",
                    "message": f"the replica's Ray actor ended without recording an exit status ({why})",
                    **{
                        k: v
                        for k, v in (read_json(rdir / "started") or {}).items()
                        if k in ("pid", "startedAt")
                    },
                },
            )
        if stopped:
            with locked(attempt_dir / "launch.lock", blocking=False) as free:
                # No launch runs (none will start it after the stop), and none started it.
                if free and not (rdir / "started").exists():
                    return self._record(
                        rdir, {"exitCode": 143, "reason": "Stopped", "message": "stopped before it started"}
                    )
        return {"phase": ReplicaPhase.PENDING.value}

    def _running(self, gang_id: str, attempt: int, name: str, started: Path) -> dict[str, Any] | None:
        """A replica this backend watches, whose end Ray has not reported: Running, with the
        pid its actor returned when it started it. None when the actor must be asked."""
        with self._lock:
            watcher = self._watcher
        if watcher is None or not watcher.running((gang_id, attempt, name)):
            return None
        info = read_json(started)
        if not info or not info.get("pid"):
            return None
        return {"phase": ReplicaPhase.RUNNING.value, "pid": info["pid"], "startedAt": info.get("startedAt")}

    def status(self, gang_id: str, attempt: int) -> GangStatus:
        attempt_dir = self._attempt_dir(gang_id, attempt)
        plan = read_json(attempt_dir / "gang.json")
        if plan is None:
            return GangStatus(replicas={})
        names: list[str] = list(plan["replicas"])
        addresses = read_json(attempt_dir / "addresses.json") or {}
        infos: dict[str, dict[str, Any]] = {}
        asked: dict[str, Any] = {}
        ray: ModuleType | None = None
        collected = 0
        for name in names:
            outcome = read_json(attempt_dir / name / "exit.json")
            if outcome is not None:
                infos[name] = outcome
                collected += 1
                continue
            if not (attempt_dir / name / "started").exists():
                # Its actor may still be starting: do not wait for it. Nothing runs yet.
                infos[name] = self._without_actor(attempt_dir, name, started=False)
                continue
            running = self._running(gang_id, attempt, name, attempt_dir / name / "started")
            if running is not None:
                infos[name] = running
                continue
            ray = ray or self._ray()
            handle = self._actor(ray, gang_id, attempt, name)
            if handle is None:
                infos[name] = self._without_actor(attempt_dir, name, started=True)
            else:
                asked[name] = handle.status.remote()
        if asked:
            assert ray is not None
            answers = self._get(ray, asked, STATUS_TIMEOUT)
            for name in asked:
                answer = answers.get(name)
                if answer is None:
                    infos[name] = {
                        "phase": ReplicaPhase.UNKNOWN.value,
                        "message": "its Ray actor does not answer",
                    }
                elif isinstance(answer, Exception):
                    self._forget(gang_id, attempt, name)
                    cause = str(answer).strip().splitlines()[0]
                    infos[name] = self._without_actor(attempt_dir, name, started=True, cause=cause)
                else:
                    infos[name] = answer
                    if ReplicaPhase(answer["phase"]).is_terminal():
                        self._collect_later(gang_id, attempt, name)
        if collected == len(names) or all((attempt_dir / n / "exit.json").exists() for n in names):
            self._remove_placement_group(gang_id, attempt)
        return GangStatus(
            replicas={n: self._replica_status(n, infos[n], addresses.get(n, {})) for n in names}
        )

    # --- collecting ended replicas ----------------------------------------------------------

    def _watch(self, gang_id: str, attempt: int, name: str, handle: Any) -> None:
        with self._lock:
            if self._closed:
                return
            if self._watcher is None:
                self._watcher = Watcher(self._ray(), self._ended, wait_seconds=WAIT_SECONDS)
                self._watcher.start()
            watcher = self._watcher
        watcher.watch((gang_id, attempt, name), handle)

    def _ended(self, key: tuple[str, int, str]) -> None:
        """Called by the watcher when a replica has ended (or its actor died)."""
        try:
            self.notify(key[0])
        finally:
            self._collect_later(*key)

    def _collect_later(self, gang_id: str, attempt: int, name: str) -> None:
        key = (gang_id, attempt, name)
        with self._lock:
            if self._closed or key in self._archiving or gang_id in self._releasing:
                return
            try:
                self._archiving[key] = self._archiver.submit(self._collect, key)
            except RuntimeError:  # closed meanwhile
                pass

    def _collect(self, key: tuple[str, int, str]) -> None:
        gang_id, attempt, name = key
        try:
            self._collect_replica(gang_id, attempt, name)
        except Exception as exc:  # retried on the next status or re-attach
            log.warning("collecting %s/%s/%s failed: %s", gang_id, attempt, name, exc)
        finally:
            with self._lock:
                self._archiving.pop(key, None)

    def _collect_replica(self, gang_id: str, attempt: int, name: str) -> None:
        """Copies an ended replica's log and outcome into lumiflow's home, then ends its
        actor. Idempotent; collectors of one replica (threads, processes) take turns, so
        that none copies a log that another one's clean-up is deleting."""
        ray = self._ray()
        attempt_dir = self._attempt_dir(gang_id, attempt)
        rdir = attempt_dir / name
        handle = self._actor(ray, gang_id, attempt, name)
        if handle is None or not attempt_dir.is_dir():
            return
        rdir.mkdir(exist_ok=True)  # a replica stopped before it started has none yet
        with locked(rdir / "collect.lock"):
            if not (rdir / "exit.json").exists():
                info = ray.get(handle.status.remote(), timeout=CALL_TIMEOUT)
                if not ReplicaPhase(info["phase"]).is_terminal():
                    return
                tmp = rdir / f"log.{os.getpid()}.{threading.get_ident()}.tmp"
                with open(tmp, "wb") as fh:
                    offset = 0
                    while True:
                        data, size, _ended = ray.get(
                            handle.read_log.remote(offset, LOG_CHUNK), timeout=CALL_TIMEOUT
                        )
                        fh.write(data)
                        offset += len(data)
                        if not data or offset >= size:
                            break
                os.replace(tmp, rdir / "log")
                write_json(rdir / "exit.json", info)
            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(handle.cleanup.remote(), timeout=CALL_TIMEOUT)
        with contextlib.suppress(ray.exceptions.RayError, ValueError):
            ray.kill(handle, no_restart=True)
        self._forget(gang_id, attempt, name)
        plan = read_json(attempt_dir / "gang.json") or {}
        if all((attempt_dir / n / "exit.json").exists() for n in plan.get("replicas", [])):
            self._remove_placement_group(gang_id, attempt)

    def _remove_placement_group(self, gang_id: str, attempt: int) -> None:
        """Gives the gang's bundles back to Ray (once; ``released`` records it)."""
        attempt_dir = self._attempt_dir(gang_id, attempt)
        marker = attempt_dir / "released"
        if marker.exists() or not attempt_dir.is_dir():
            return
        ray = self._ray()
        try:
            pg = ray.util.get_placement_group(self._pg_name(gang_id, attempt))
        except ValueError:
            pg = None
        if pg is not None:
            ray.util.remove_placement_group(pg)
        with contextlib.suppress(OSError):
            marker.touch()

    def _drop_attempt(self, ray: ModuleType, gang_id: str, attempt: int) -> None:
        """Ends every actor of the attempt and removes its placement group."""
        plan = read_json(self._attempt_dir(gang_id, attempt) / "gang.json") or {}
        for name in plan.get("replicas", []):
            handle = self._actor(ray, gang_id, attempt, name)
            if handle is None:
                continue
            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(handle.cleanup.remote(), timeout=CALL_TIMEOUT)
            with contextlib.suppress(ray.exceptions.RayError, ValueError):
                ray.kill(handle, no_restart=True)
            self._forget(gang_id, attempt, name)
        try:
            ray.util.remove_placement_group(ray.util.get_placement_group(self._pg_name(gang_id, attempt)))
        except ValueError:
            pass

    # --- stop -----------------------------------------------------------------------------

    def stop(self, gang_id: str, attempt: int, *, grace_seconds: float | None = None) -> None:
        attempt_dir = self._attempt_dir(gang_id, attempt)
        plan = read_json(attempt_dir / "gang.json")
        if plan is None:
            return
        grace = float(grace_seconds if grace_seconds is not None else plan.get("grace", 30.0))
        now = time.time()
        marker = attempt_dir / "stop"
        asked = read_json(marker) or {}
        kill_at = min(now + max(0.0, grace), float(asked.get("killAt", float("inf"))))
        if kill_at != asked.get("killAt"):
            write_json(marker, {"requestedAt": asked.get("requestedAt", now), "killAt": kill_at})
        ray = self._ray()
        refs = {}
        for name in plan["replicas"]:
            rdir = attempt_dir / name
            if (rdir / "exit.json").exists() or not (rdir / "started").exists():
                continue  # ended, or never started: a launch checks the marker before it starts one
            handle = self._actor(ray, gang_id, attempt, name)
            if handle is not None:
                refs[name] = handle.stop.remote(max(0.0, kill_at - now))
        self._get(ray, refs, CALL_TIMEOUT)
        self.status(gang_id, attempt)  # records replicas that never started as stopped
        self.notify(gang_id)

    # --- logs -----------------------------------------------------------------------------

    @staticmethod
    def _read_collected(path: Path, offset: int, max_bytes: int) -> LogChunk:
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, offset))
                data = fh.read(max_bytes)
                size = os.fstat(fh.fileno()).st_size
        except FileNotFoundError:  # a replica lost with its node, or stopped before it started
            data, size = b"", 0
        next_offset = max(0, offset) + len(data)
        return LogChunk(data, next_offset, next_offset >= size)

    def read_log(
        self, gang_id: str, attempt: int, replica: str, *, offset: int = 0, max_bytes: int = 1 << 20
    ) -> LogChunk:
        attempt_dir = self._attempt_dir(gang_id, attempt)
        plan = read_json(attempt_dir / "gang.json")
        if plan is None or replica not in plan["replicas"]:
            raise NotFound(f"no log for replica {replica} (attempt {attempt})")
        rdir = attempt_dir / replica
        if (rdir / "exit.json").exists():
            return self._read_collected(rdir / "log", offset, max_bytes)
        if not (rdir / "started").exists():
            return LogChunk(b"", max(0, offset), False)  # not started yet
        ray = self._ray()
        handle = self._actor(ray, gang_id, attempt, replica)
        answer: Any = None
        if handle is not None:
            answer = self._get(ray, {"log": handle.read_log.remote(offset, max_bytes)}, CALL_TIMEOUT).get(
                "log"
            )
            if isinstance(answer, Exception):
                self._forget(gang_id, attempt, replica)
                answer = None
        if (rdir / "exit.json").exists():
            # Collected meanwhile: the actor may have deleted its copy before it answered.
            return self._read_collected(rdir / "log", offset, max_bytes)
        if answer is None:
            return LogChunk(b"", max(0, offset), False)  # not started yet (or not answering)
        data, size, ended = answer
        next_offset = max(0, offset) + len(data)
        return LogChunk(data, next_offset, bool(ended) and next_offset >= size)

    # --- re-attach and release ------------------------------------------------------------

    def reattach(self, gang_id: str, attempt: int) -> GangStatus:
        attempt_dir = self._attempt_dir(gang_id, attempt)
        plan = read_json(attempt_dir / "gang.json")
        if plan is None:
            return GangStatus(replicas={})
        ray = self._ray()
        for name in plan["replicas"]:
            rdir = attempt_dir / name
            if (rdir / "exit.json").exists() or not (rdir / "started").exists():
                continue
            handle = self._actor(ray, gang_id, attempt, name)
            if handle is not None:
                self._watch(gang_id, attempt, name, handle)
        return self.status(gang_id, attempt)

    def release(self, gang_id: str) -> None:
        gang_dir = self.root / gang_id
        if not gang_dir.exists():
            return
        ray = self._ray()
        with self._lock:
            self._releasing.add(gang_id)
            collecting = [f for (g, _, _), f in self._archiving.items() if g == gang_id]
        try:
            wait(collecting, timeout=CALL_TIMEOUT)
            self._release(ray, gang_id, gang_dir)
        finally:
            with self._lock:
                self._releasing.discard(gang_id)

    def _release(self, ray: ModuleType, gang_id: str, gang_dir: Path) -> None:
        for attempt_dir in gang_dir.iterdir():
            if not attempt_dir.is_dir() or not attempt_dir.name.isdigit():
                continue
            attempt = int(attempt_dir.name)
            if not self.status(gang_id, attempt).all_terminal:
                self.stop(gang_id, attempt, grace_seconds=0)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not self.status(gang_id, attempt).all_terminal:
                    time.sleep(0.05)
            self._drop_attempt(ray, gang_id, attempt)
        for tries_left in reversed(range(5)):
            try:
                shutil.rmtree(gang_dir)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                # A collector of another backend object (process) may still write a last
                # file into it; it cannot create the folders again once they are gone.
                if exc.errno != errno.ENOTEMPTY or not tries_left:
                    raise ClusterError(f"cannot remove {gang_dir}: {exc}") from exc
                time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()
        self._archiver.shutdown(wait=False, cancel_futures=True)
