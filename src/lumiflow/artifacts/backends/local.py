"""``file://`` artifacts on this machine's file system (and read-only local roots such as
``/cvmfs``). Renames are ``os.replace``: atomic within one file system, which is why the store
writes its temporary names next to the target."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from lumiflow.artifacts.backends.base import Backend


class LocalBackend(Backend):
    scheme: ClassVar[str] = "file"
    renames: ClassVar[bool] = True
    has_directories: ClassVar[bool] = True

    @classmethod
    def split(cls, rest: str) -> tuple[str, str]:
        if rest.startswith("/"):
            return "", rest.lstrip("/")
        if rest.startswith("localhost/"):
            return "", rest[len("localhost/") :].lstrip("/")
        raise ValueError("a file:// URI names no host: file:///absolute/path")

    @classmethod
    def format(cls, authority: str, segments: tuple[str, ...]) -> str:
        return "file:///" + "/".join(segments)

    @classmethod
    def fs_path(cls, authority: str, segments: tuple[str, ...]) -> str:
        return "/" + "/".join(segments)

    def make_filesystem(self, authority: str, options: dict[str, Any]) -> Any:
        from fsspec.implementations.local import LocalFileSystem

        options.setdefault("auto_mkdir", False)
        return LocalFileSystem(skip_instance_cache=True, **options)

    def rename(self, source: str, target: str) -> None:
        os.replace(source, target)

    def local_path(self, segments: tuple[str, ...]) -> Path | None:
        return Path(self.fs_path("", segments))
