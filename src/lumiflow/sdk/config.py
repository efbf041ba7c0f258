"""Where the CLI and the SDK find the server: ``$LUMIFLOW_HOME/config.yaml``, then the
environment (``LUMIFLOW_URL``, ``LUMIFLOW_TOKEN``, ``LUMIFLOW_PROFILE``), then arguments.

The file holds a token, so it is written with mode 0600.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

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

    @classmethod
    def path(cls, home: str | Path | None = None) -> Path:
        return home_dir(home) / "config.yaml"

    @classmethod
    def load(cls, home: str | Path | None = None) -> ClientConfig:
        config = cls()
        path = cls.path(home)
        if path.exists():
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                data = {}
            if isinstance(data, dict):
                config.url = str(data.get("url") or config.url)
                config.token = data.get("token") or None
                config.profile = data.get("profile") or None
        config.url = os.environ.get("LUMIFLOW_URL") or config.url
        config.token = os.environ.get("LUMIFLOW_TOKEN") or config.token
        config.profile = os.environ.get("LUMIFLOW_PROFILE") or config.profile
        return config

    def save(self, home: str | Path | None = None) -> Path:
        path = self.path(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump({k: v for k, v in asdict(self).items() if v is not None}, fh, sort_keys=False)
        os.replace(tmp, path)
        os.chmod(path, 0o600)
        return path
