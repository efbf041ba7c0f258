"""Fixtures shared by the auth and dashboard tests (registered in tests/conftest.py): the
real OIDC issuer (one per session), and lumiflow servers listening on loopback in this
process (uvicorn in a thread: a browser and the CLI need a real socket, and a thread starts
far faster than a `lumi up` process)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lumiflow.server.app import create_app
from lumiflow.server.platform import Platform
from tests.helpers import free_port, wait_until
from tests.oidc.issuer import Issuer, node_available


@pytest.fixture(scope="session")
def oidc_issuer_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    missing = node_available()
    if missing:
        pytest.skip(missing)
    issuer = Issuer(tmp_path_factory.mktemp("oidc-issuer"))
    issuer.start()
    try:
        yield issuer
    finally:
        issuer.stop()


@pytest.fixture
def oidc_issuer(oidc_issuer_process: Issuer) -> Iterator[Issuer]:
    """The session's issuer, with its users as USERS says; whatever a test changes is undone."""
    oidc_issuer_process.reset()
    if oidc_issuer_process.proc is None or oidc_issuer_process.proc.poll() is not None:
        oidc_issuer_process.start()
    with oidc_issuer_process.changed():
        yield oidc_issuer_process


class LiveServer:
    """A whole platform serving HTTP on 127.0.0.1 from a thread of the test process."""

    def __init__(self, home: Path, overrides: dict[str, Any]) -> None:
        import uvicorn

        from tests.conftest import make_settings

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = home
        server_overrides = {**overrides.pop("server", {}), "port": self.port}
        self.platform = Platform(make_settings(home, server=server_overrides, **overrides))
        self.admin_token = self.platform.bootstrap_admin()
        config = uvicorn.Config(
            create_app(self.platform),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"lumiflow-{self.port}", daemon=True)
        self.thread.start()
        wait_until(
            lambda: self.server.started or not self.thread.is_alive(), timeout=60, message="server start"
        )
        assert self.server.started, "the server thread died while starting"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """``live_server(**settings_overrides)`` starts a server; all are stopped after the test."""
    started: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        server = LiveServer(tmp_path / f"server-{len(started)}", overrides)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
