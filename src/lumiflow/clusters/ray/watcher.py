"""Notices replicas ending on Ray: one outstanding, bounded ``wait`` call per live actor.

Each call returns the replica's final status once its process has ended, or None after
``wait_seconds`` (then the watcher asks again): an actor never keeps a thread of its pool for
a caller that went away (a server that was killed). An actor that dies counts as an end.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

Key = tuple[str, int, str]  # gang id, attempt, replica


class Watcher(threading.Thread):
    def __init__(self, ray: ModuleType, on_end: Callable[[Key], None], *, wait_seconds: float) -> None:
        super().__init__(name="lumiflow-ray-watcher", daemon=True)
        self._ray = ray
        self._on_end = on_end
        self._wait_seconds = wait_seconds
        self._lock = threading.Lock()
        self._refs: dict[Any, tuple[Key, Any]] = {}  # ObjectRef of a wait call -> replica, actor
        self._by_key: dict[Key, Any] = {}  # replica -> its outstanding ObjectRef
        self._wake = threading.Event()
        self._closed = False

    def watch(self, key: Key, handle: Any) -> None:
        """Calls ``on_end(key)`` once the replica behind ``handle`` has ended (idempotent)."""
        with self._lock:
            if self._closed or key in self._by_key:
                return
            self._issue(key, handle)
        self._wake.set()

    def _issue(self, key: Key, handle: Any) -> None:
        """Starts one bounded wait call; the caller holds the lock."""
        ref = handle.wait.remote(self._wait_seconds)
        self._refs[ref] = (key, handle)
        self._by_key[key] = ref

    def running(self, key: Key) -> bool:
        """True while the replica is watched and Ray has not reported its end (a local check
        of the wait call's result: no call to the actor)."""
        with self._lock:
            ref = self._by_key.get(key)
        if ref is None:
            return False
        ready, _ = self._ray.wait([ref], num_returns=1, timeout=0, fetch_local=False)
        return not ready

    def run(self) -> None:
        ray = self._ray
        while not self._closed:
            with self._lock:
                refs = list(self._refs)
            if not refs:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                ready, _ = ray.wait(refs, num_returns=1, timeout=0.25)
            except Exception:  # pragma: no cover - Ray going away under us
                log.exception("waiting on Ray actors failed")
                self._wake.wait(1.0)
                continue
            for ref in ready:
                with self._lock:
                    key, handle = self._refs.pop(ref)
                try:
                    result = ray.get(ref, timeout=10)
                except ray.exceptions.RayError:
                    result = "ended"  # the actor died: its replica ended one way or another
                if result is None:  # still running: ask again
                    with self._lock:
                        if not self._closed:
                            self._issue(key, handle)
                    continue
                with self._lock:
                    self._by_key.pop(key, None)
                try:
                    self._on_end(key)
                except Exception:  # pragma: no cover - callbacks must not raise
                    log.exception("handling the end of %s failed", key)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
