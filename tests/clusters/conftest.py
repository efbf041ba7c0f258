"""Fixtures of the cluster tests.

``backend_factory`` is parametrized by backend type: the conformance suite
(``test_backend_suite.py``) runs once per entry of :data:`BACKEND_TYPES`. A new backend joins
the suite by adding its type here and its capacity options in ``support.CAPACITY_OPTIONS``.
``local_factory`` is the same factory for the ``local`` backend alone (``test_local.py``),
``ray_factory`` for the ``ray`` backend alone (``test_ray.py``).

The ``ray`` entries need the two-node Ray test cluster (``ray_support.py``), which runs only
inside a private network namespace: in the ordinary run they are skipped with that reason,
and ``test_ray.py::test_ray_backend_in_a_private_network`` runs them all there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clusters.ray_support import RayTestCluster, skip_reason
from tests.clusters.support import BackendFactory

BACKEND_TYPES = ["local", pytest.param("ray", marks=pytest.mark.ray, id="ray")]

#: A replica on Ray costs the start of a Ray worker process (its supervising actor) that a
#: local replica does not: about a second on an idle 2-core machine, three when it is loaded,
#: so that the suite's test of 12 launches in a row takes 15-60 s there. The [ray] entries
#: therefore get this multiple of each test's timeout. Timeouts only guard against hangs: no
#: assertion, and no deadline inside a test, changes.
RAY_TIMEOUT_FACTOR = 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("backend_factory") != "ray":
            continue
        marker = item.get_closest_marker("timeout")
        if marker is not None and marker.args:
            item.own_markers.insert(0, pytest.mark.timeout(marker.args[0] * RAY_TIMEOUT_FACTOR).mark)


@pytest.fixture(params=BACKEND_TYPES)
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendFactory]:
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    factory = BackendFactory(str(request.param), tmp_path / "home")
    yield factory
    factory.cleanup()


@pytest.fixture
def local_factory(tmp_path: Path) -> Iterator[BackendFactory]:
    factory = BackendFactory("local", tmp_path / "home")
    yield factory
    factory.cleanup()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayTestCluster]:
    """The two-node Ray cluster, started once per (inner) session and stopped by PID."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = RayTestCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        leftovers = cluster.stop()
        if leftovers:
            print(f"killed processes left in the Ray test namespace: {leftovers}")


@pytest.fixture
def ray_factory(ray_cluster: RayTestCluster, tmp_path: Path) -> Iterator[BackendFactory]:
    factory = BackendFactory("ray", tmp_path / "home")
    yield factory
    factory.cleanup()
