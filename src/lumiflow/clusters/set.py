"""The configured clusters, each an instance of its backend type."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

from lumiflow.clusters.base import BackendRegistry, ClusterBackend, registry
from lumiflow.common.errors import NotFound
from lumiflow.common.settings import ClusterConfig


class ClusterSet:
    """Backends by cluster name. ``notify(cluster, gang_id)`` is called on replica changes."""

    def __init__(
        self,
        configs: list[ClusterConfig],
        *,
        home: Path,
        notify: Callable[[str, str], None],
        backends: BackendRegistry = registry,
    ) -> None:
        self.configs = {c.name: c for c in configs}
        self._backends: dict[str, ClusterBackend] = {}
        try:
            for config in configs:
                cls = backends.get(config.type)
                self._backends[config.name] = cls(
                    name=config.name,
                    options=config.options,
                    home=home,
                    notify=functools.partial(notify, config.name),
                )
        except Exception:
            self.close()
            raise
        self.home_name = next((c.name for c in configs if c.home), configs[0].name)

    def get(self, name: str) -> ClusterBackend:
        backend = self._backends.get(name)
        if backend is None:
            raise NotFound(f"cluster {name!r} does not exist (known: {', '.join(sorted(self._backends))})")
        return backend

    def names(self) -> list[str]:
        return list(self._backends)

    def __iter__(self) -> Iterator[tuple[str, ClusterBackend]]:
        return iter(self._backends.items())

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
