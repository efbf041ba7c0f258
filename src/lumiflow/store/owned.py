"""The objects an owner owns, re-read only when they changed.

A controller that reconciles an owner on every change of its children (an Experiment and its
Trials) would otherwise read and decode every child on every pass: O(children) JSON decoding
per change, O(children²) over the owner's life. :class:`OwnedObjects` asks the store for the
children's resourceVersions (one narrow query) and reads in full only the new and changed
ones. The objects it returns are shared with later calls: callers must not modify them (they
write with ``obj.copy(...)``, as everywhere else).
"""

from __future__ import annotations

import threading

from lumiflow.store.base import ResourceStore
from lumiflow.store.model import StoredObject


class OwnedObjects:
    def __init__(self, store: ResourceStore, kind: str, *, max_owners: int = 1000) -> None:
        self.store = store
        self.kind = kind
        self.max_owners = max_owners
        self._by_owner: dict[str, dict[str, StoredObject]] = {}
        self._lock = threading.Lock()

    def list(self, owner: StoredObject) -> list[StoredObject]:
        """The owner's ``kind`` objects in its profile, ordered by name, as stored now."""
        versions = self.store.versions(self.kind, profile=owner.profile, owner_uid=owner.uid)
        with self._lock:
            known = dict(self._by_owner.get(owner.uid, {}))
        stale = [uid for uid, rv in versions.items() if uid not in known or known[uid].resource_version != rv]
        if stale:
            for obj in self.store.get_many(stale):
                known[obj.uid] = obj
        current = {uid: known[uid] for uid in versions if uid in known}
        with self._lock:
            if owner.uid not in self._by_owner and len(self._by_owner) >= self.max_owners:
                self._by_owner.pop(next(iter(self._by_owner)))  # the oldest owner
            self._by_owner[owner.uid] = current
        return sorted(current.values(), key=lambda o: o.name)

    def forget(self, owner_uid: str) -> None:
        with self._lock:
            self._by_owner.pop(owner_uid, None)
