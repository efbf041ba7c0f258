"""Fixtures of the cluster tests.

``backend_factory`` is parametrized by backend type: the conformance suite
(``test_backend_suite.py``) runs once per entry of :data:`BACKEND_TYPES`. A new backend joins
the suite by adding its type here and its capacity options in ``support.CAPACITY_OPTIONS``.
``local_factory`` is the same factory for the ``local`` backend alone (``test_local.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clusters.support import BackendFactory

BACKEND_TYPES = ["local"]


@pytest.fixture(params=BACKEND_TYPES)
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendFactory]:
    factory = BackendFactory(str(request.param), tmp_path / "home")
    yield factory
    factory.cleanup()


@pytest.fixture
def local_factory(tmp_path: Path) -> Iterator[BackendFactory]:
    factory = BackendFactory("local", tmp_path / "home")
    yield factory
    factory.cleanup()
