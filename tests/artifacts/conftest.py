"""Fixtures of the artifact store's tests.

``artifact_backend`` is parametrized by backend: the conformance suite (``test_store_suite.py``)
runs once on ``file://``, once on a real S3 server (moto) and once on a real XRootD server. The
``xrootd`` entries need the server in a private network namespace (``servers.py``): in the
ordinary run they are skipped with that reason, and
``test_xrootd.py::test_xrootd_backend_in_a_private_network`` runs them all there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lumiflow.artifacts import ArtifactStore
from tests.artifacts.servers import INSIDE, MotoServer, XRootDServer, inside_private_network, xrootd_missing
from tests.helpers import free_port

BACKENDS = ["file", "s3", pytest.param("xrootd", marks=pytest.mark.xrootd, id="xrootd")]


@dataclass
class ArtifactBackend:
    """One backend under test: where a fresh store's root is, and how to reach it."""

    name: str
    root: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    #: A root and options whose endpoint nothing listens on (None: a local backend has none).
    unreachable: tuple[str, dict[str, Any]] | None = None

    def store(self, *, readonly_roots: tuple[str, ...] = ()) -> ArtifactStore:
        return ArtifactStore(self.root, storage_options=self.storage_options, readonly_roots=readonly_roots)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def xrootd_skip_reason() -> str | None:
    reason = xrootd_missing()
    if reason:
        return reason
    if os.environ.get(INSIDE) != "1" or not inside_private_network():
        return (
            "runs inside a private network namespace, through "
            "tests/artifacts/test_xrootd.py::test_xrootd_backend_in_a_private_network"
        )
    return None


@pytest.fixture(scope="session")
def xrootd_server() -> Iterator[XRootDServer]:
    reason = xrootd_skip_reason()
    if reason:
        pytest.skip(reason)
    server = XRootDServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def artifact_backend(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactBackend:
    if request.param == "file":
        return ArtifactBackend("file", (tmp_path / "artifacts").as_uri())
    if request.param == "s3":
        moto: MotoServer = request.getfixturevalue("moto_server")
        unreachable = {
            **moto.storage_options(),
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "config_kwargs": {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}},
        }
        return ArtifactBackend(
            "s3",
            f"s3://{moto.new_bucket()}/lumiflow",
            moto.storage_options(),
            unreachable=("s3://nowhere/lumiflow", unreachable),
        )
    xrootd: XRootDServer = request.getfixturevalue("xrootd_server")
    return ArtifactBackend(
        "xrootd",
        xrootd.root(),
        {"timeout": 10},
        unreachable=(f"root://127.0.0.1:{free_port()}//data", {"timeout": 2}),
    )
