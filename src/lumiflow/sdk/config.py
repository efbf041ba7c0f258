"""Where the CLI and the SDK find the server: ``$LUMIFLOW_HOME/config.yaml``, then the
environment (``LUMIFLOW_URL``, ``LUMIFLOW_TOKEN``, ``LUMIFLOW_PROFILE``), then arguments.

After ``lumi login`` against a server in oidc mode, the file also holds the refresh token
and where to use it (the issuer's token endpoint and the CLI's client id), so that the SDK
can refresh the access token when it expires. The file holds secrets, so it is written with
mode 0600, atomically; :func:`locked` serialises the processes that rewrite it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_URL = "http://127.0.0.1:8080"


def home_dir(home: str | Path | None = None) -> Path:
    if home:
        return Path(home).expanduser()
    return Path(os.environ.get("LUMIFLOW_HOME") or Path.home() / ".lumiflow").expanduser()


@dataclass
class ClientConfig:
    url: str = DEFAULT_URL
    token: str | None = None
    profile: str | None = None
    #: Set by ``lumi login`` with single sign-on: how to get a new access token.
    refresh_token: str | None = None
    token_endpoint: str | None = None
    client_id: str | None = None
    issuer: str | None = None

    @classmethod
    def path(cls, home: str | Path | None = None) -> Path:
        return home_dir(home) / "config.yaml"

    @classmethod
    def load_file(cls, home: str | Path | None = None) -> ClientConfig:
        """The file alone, without the environment's overrides."""
        config = cls()
        path = cls.path(home)
        data: Any = {}
        if path.exists():
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                data = {}
        if isinstance(data, dict):
            config.url = str(data.get("url") or config.url)
            for key in ("token", "profile", "refresh_token", "token_endpoint", "client_id", "issuer"):
                value = data.get(key)
                setattr(config, key, str(value) if value else None)
        return config

    @classmethod
    def load(cls, home: str | Path | None = None) -> ClientConfig:
        config = cls.load_file(home)
        env_token = os.environ.get("LUMIFLOW_TOKEN")
        config.url = os.environ.get("LUMIFLOW_URL") or config.url
        if env_token:
            # A token from the environment is used as is: it has nothing to refresh with.
            config.token = env_token
            config.clear_refresh()
        config.profile = os.environ.get("LUMIFLOW_PROFILE") or config.profile
        return config

    @property
    def refreshable(self) -> bool:
        return bool(self.token and self.refresh_token and self.token_endpoint and self.client_id)

    def clear_refresh(self) -> None:
        self.refresh_token = self.token_endpoint = self.client_id = self.issuer = None

    def save(self, home: str | Path | None = None) -> Path:
        path = self.path(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump({k: v for k, v in asdict(self).items() if v is not None}, fh, sort_keys=False)
        os.replace(tmp, path)
        os.chmod(path, 0o600)
        return path


@contextlib.contextmanager
def locked(home: str | Path | None = None) -> Iterator[None]:
    """Holds an exclusive lock on the config (a sibling lock file) across processes."""
    path = ClientConfig.path(home).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
