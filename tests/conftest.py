"""Shared fixtures: temporary homes, an in-process platform with its API, a real server
process, and a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lumiflow.common.settings import Settings
from lumiflow.server.app import create_app
from lumiflow.server.platform import Platform
from tests.helpers import LUMI, ROOT, free_port, wait_until
from tests.postgres import PostgresServer, pg_bin

# Controllers in tests back off briefly so restart tests finish quickly.
FAST = {"controllers": {"restart_backoff_seconds": 0.05, "grace_period_seconds": 2, "resync_seconds": 5}}


def make_settings(home: Path, **overrides: Any) -> Settings:
    merged: dict[str, Any] = {**FAST}
    for key, value in overrides.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return Settings.load(home=home, overrides=merged)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


class ApiHarness:
    """An in-process platform and a TestClient over its API, with the admin's token."""

    def __init__(self, platform: Platform, client: TestClient, admin_token: str) -> None:
        self.platform = platform
        self.client = client
        self.admin_token = admin_token

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def add_user(self, name: str, *groups: str) -> str:
        r = self.client.post(
            "/api/v1/users", json={"name": name, "groups": list(groups)}, headers=self.headers()
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    def request(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> Any:
        return self.client.request(
            method, path, headers={**self.headers(token), **kwargs.pop("headers", {})}, **kwargs
        )


@pytest.fixture
def api(home: Path) -> Iterator[ApiHarness]:
    yield from _api(home, {})


@pytest.fixture
def api_factory(home: Path) -> Any:
    """Builds an ApiHarness with settings overrides (use as a context manager)."""
    from contextlib import contextmanager

    @contextmanager
    def factory(**overrides: Any) -> Iterator[ApiHarness]:
        yield from _api(home, overrides)

    return factory


def _api(home: Path, overrides: dict[str, Any]) -> Iterator[ApiHarness]:
    platform = Platform(make_settings(home, **overrides))
    token = platform.bootstrap_admin()
    assert token is not None
    with TestClient(create_app(platform), raise_server_exceptions=False) as client:
        yield ApiHarness(platform, client, token)


class ServerProcess:
    """A real `lumi up` process (foreground mode, so the test owns its PID)."""

    def __init__(self, home: Path, port: int, config: Path | None = None) -> None:
        self.home, self.port, self.config = home, port, config
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        argv = [*LUMI, "up", "--home", str(self.home), "--port", str(self.port)]
        if self.config:
            argv += ["--config", str(self.config)]
        log = open(self.home / "test-server.log", "ab")  # noqa: SIM115 - kept open by the child
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
            env={**os.environ, "LUMIFLOW_HOME": str(self.home)},
        )
        import httpx

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {(self.home / 'test-server.log').read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=60, interval=0.05, message="server health")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    @property
    def admin_token(self) -> str:
        return (self.home / "admin.token").read_text().strip()


@pytest.fixture
def server_factory(home: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def factory(config: dict[str, Any] | None = None, port: int | None = None) -> ServerProcess:
        config_path = None
        if config is not None:
            import yaml

            config_path = home / "lumiflow.test.yaml"
            config_path.write_text(yaml.safe_dump(config))
        server = ServerProcess(home, port or free_port(), config_path)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.kill(signal.SIGTERM)
    # Replicas a test left behind are processes the test started: end them by PID.
    for shim in home.glob("clusters/*/*/*/*/shim.json"):
        _kill_group_of(shim.parent)


def _kill_group_of(replica_dir: Path) -> None:
    import json

    for name in ("child.json", "shim.json"):
        try:
            pid = int(json.loads((replica_dir / name).read_text())["pid"])
        except (FileNotFoundError, ValueError, KeyError):
            continue
        for send in (os.killpg, os.kill):
            try:
                send(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed here (make test installs it when run as root)")
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_leftover_replicas(tmp_path: Path) -> Iterator[None]:
    """Every replica a test started under its tmp_path is ended when the test ends."""
    yield
    for shim in tmp_path.glob("**/clusters/*/*/*/*/shim.json"):
        _kill_group_of(shim.parent)


__all__ = ["ApiHarness", "ServerProcess", "free_port", "make_settings", "wait_until"]


# The real OIDC issuer and loopback servers of the auth and dashboard tests (one issuer per session).
from tests.oidc.fixtures import live_server, oidc_issuer, oidc_issuer_process  # noqa: E402, F401
