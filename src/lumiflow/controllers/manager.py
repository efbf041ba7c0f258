"""Level-triggered reconcilers and the work queues that drive them.

A controller implements ``reconcile(key) -> Result``: it reads the desired state and the
observed state, acts, and writes status. It is woken by store changes (its own kind, and
objects it owns: a Workload's change wakes the TrainingJob that owns it), by backends
(a replica ended), by its own ``requeue_after`` and by a periodic resync of every object of
its kind. Because reconcile looks at the whole state each time, a missed wake-up or a
server restart loses nothing.

The queue is client-go's: a key is never processed by two workers at once; a key added
while it is processed is processed again afterwards; duplicates collapse; failures are
retried with exponential backoff (``TemporaryError.delay`` when given).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from lumiflow.common.errors import Conflict, LumiflowError, TemporaryError
from lumiflow.store.base import ResourceStore
from lumiflow.store.model import Change, ObjectRef

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    requeue_after: float | None = None


DONE = Result()


class WorkQueue:
    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._queue: list[ObjectRef] = []
        self._queued: set[ObjectRef] = set()
        self._processing: set[ObjectRef] = set()
        self._dirty: set[ObjectRef] = set()
        self._delayed: list[tuple[float, int, ObjectRef]] = []
        self._seq = 0
        self._failures: dict[ObjectRef, int] = {}
        self._shutdown = False

    def add(self, key: ObjectRef) -> None:
        with self._cond:
            if key in self._processing:
                self._dirty.add(key)
                return
            if key in self._queued:
                return
            self._queued.add(key)
            self._queue.append(key)
            self._cond.notify()

    def add_after(self, key: ObjectRef, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            self._seq += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._seq, key))
            self._cond.notify()

    def get(self) -> ObjectRef | None:
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key = heapq.heappop(self._delayed)
                    if key not in self._queued and key not in self._processing:
                        self._queued.add(key)
                        self._queue.append(key)
                    elif key in self._processing:
                        self._dirty.add(key)
                if self._queue:
                    key = self._queue.pop(0)
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                timeout = (self._delayed[0][0] - now) if self._delayed else None
                self._cond.wait(timeout=timeout)

    def done(self, key: ObjectRef) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                if key not in self._queued:
                    self._queued.add(key)
                    self._queue.append(key)
                    self._cond.notify()

    def failure_delay(self, key: ObjectRef) -> float:
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        return min(0.05 * (2 ** min(count, 12)), 60.0)

    def forget(self, key: ObjectRef) -> None:
        self._failures.pop(key, None)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)


class Controller(ABC):
    """A reconciler for one kind. Subclasses say which kinds wake it and how."""

    kind: str
    #: Kinds whose changes wake the owner of the changed object (by owner uid).
    owns: tuple[str, ...] = ()
    #: True: a status write of an owned object wakes this controller only when it changed the
    #: object's phase (spec changes and deletion always do; a creation only when the child
    #: has a phase already). For owners that make their children themselves and look only at
    #: their phases; each intermediate status write of a child would otherwise cost a
    #: reconcile of the owner.
    wake_on_child_phase_only: bool = False

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self.queue = WorkQueue(self.kind)

    @abstractmethod
    def reconcile(self, key: ObjectRef) -> Result: ...

    def keys_for_resync(self) -> Iterable[ObjectRef]:
        """Objects to look at periodically (default: every object of the kind)."""
        for obj in self.store.list(self.kind).items:
            yield obj.ref

    def child_wake_delay(self, change: Change) -> float | None:
        """How long after a change of an owned object this controller looks (default: at
        once); None: the change does not concern it. An owner that a change does not need to
        hurry can leave the moment to the work the change starts (see TrainingJobController)."""
        return 0.0

    def on_start(self) -> None:  # noqa: B027 - optional hook
        """Runs once before the workers start (re-attach to what runs already)."""


class ControllerManager:
    def __init__(self, store: ResourceStore, *, workers: int = 2, resync: float = 30.0) -> None:
        self.store = store
        self.workers = workers
        self.resync = resync
        self.controllers: dict[str, Controller] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._child_phases: dict[str, str] = {}  # uid -> phase, for wake_on_child_phase_only
        store.subscribe(self._on_change)

    def add(self, controller: Controller) -> None:
        self.controllers[controller.kind] = controller

    def enqueue(self, kind: str, profile: str, name: str, *, delay: float = 0.0) -> None:
        controller = self.controllers.get(kind)
        if controller is not None:
            controller.queue.add_after(ObjectRef(kind, profile, name), delay)

    def _on_change(self, change: Change) -> None:
        controller = self.controllers.get(change.kind)
        # A controller's own status write tells it nothing new; it already decided what to
        # do next (and the periodic resync covers anything missed).
        if controller is not None and change.writer != change.kind:
            controller.queue.add(ObjectRef(change.kind, change.profile, change.name))
        if change.owner_kind and change.owner_name:
            owner_ctl = self.controllers.get(change.owner_kind)
            if (
                owner_ctl is not None
                and change.kind in owner_ctl.owns
                and self._owner_cares(owner_ctl, change)
            ):
                delay = owner_ctl.child_wake_delay(change)
                if delay is not None:
                    ref = ObjectRef(change.owner_kind, change.profile, change.owner_name)
                    owner_ctl.queue.add_after(ref, delay)

    def _owner_cares(self, owner: Controller, change: Change) -> bool:
        if not owner.wake_on_child_phase_only:
            return True
        if change.type == "deleted":
            self._child_phases.pop(change.uid, None)
            return True
        before = self._child_phases.get(change.uid)
        self._child_phases[change.uid] = change.phase
        if change.type == "created":
            # Such owners make their children themselves; the first phase a child's controller
            # writes wakes them.
            return change.phase != ""
        # Unknown before (a restart, or an object made before this server): wake to be safe.
        return change.type != "status" or before != change.phase

    def start(self) -> None:
        for controller in self.controllers.values():
            controller.on_start()
        for controller in self.controllers.values():
            for i in range(self.workers):
                t = threading.Thread(
                    target=self._work, args=(controller,), name=f"lumiflow-{controller.kind}-{i}", daemon=True
                )
                t.start()
                self._threads.append(t)
        resync = threading.Thread(target=self._resync_loop, name="lumiflow-resync", daemon=True)
        resync.start()
        self._threads.append(resync)

    def resync_all(self) -> None:
        for controller in self.controllers.values():
            try:
                for key in controller.keys_for_resync():
                    controller.queue.add(key)
            except LumiflowError as exc:
                log.warning("resync of %s failed: %s", controller.kind, exc.message)

    def _resync_loop(self) -> None:
        self.resync_all()
        while not self._stop.wait(self.resync):
            self.resync_all()

    def _work(self, controller: Controller) -> None:
        while True:
            key = controller.queue.get()
            if key is None:
                return
            try:
                result = controller.reconcile(key)
            except Conflict:
                controller.queue.done(key)
                controller.queue.add_after(key, 0.01)
                continue
            except TemporaryError as exc:
                controller.queue.done(key)
                controller.queue.add_after(key, exc.delay)
                continue
            except LumiflowError as exc:
                log.warning("reconcile %s: %s", key, exc.message)
                controller.queue.done(key)
                controller.queue.add_after(key, controller.queue.failure_delay(key))
                continue
            except Exception:
                log.exception("reconcile %s failed", key)
                controller.queue.done(key)
                controller.queue.add_after(key, controller.queue.failure_delay(key))
                continue
            controller.queue.forget(key)
            controller.queue.done(key)
            if result.requeue_after is not None:
                controller.queue.add_after(key, result.requeue_after)

    def stop(self) -> None:
        self._stop.set()
        for controller in self.controllers.values():
            controller.queue.shutdown()
        for t in self._threads:
            t.join(timeout=10)
