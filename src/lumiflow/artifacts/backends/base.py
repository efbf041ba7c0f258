"""What the store needs from one URL scheme: its URI syntax, an fsspec file system, and what
its errors mean.

A backend is created once per root (the store's own root, each read-only root) and holds the
fsspec file system for that root's authority (bucket, XRootD host); it keeps no listing cache,
so every answer comes from the backend itself. Backends never know each other: the store picks
one from :data:`lumiflow.artifacts.backends.BACKENDS` by scheme.

Thread-safety: a backend has no state of its own beyond its file system, and the fsspec file
systems used here may be called from several threads.
"""

from __future__ import annotations

import errno
import socket
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from lumiflow.artifacts.errors import ArtifactError

#: What an exception raised by a backend means to the store.
Meaning = Literal["not_found", "denied", "unavailable"]


class Backend(ABC):
    """One scheme's file system, bound to one authority (``""`` for local files)."""

    #: The URI scheme, e.g. ``"s3"``.
    scheme: ClassVar[str]
    #: True where a rename is a single server-side step, so an upload can be written under a
    #: temporary name and moved into place; False (S3) where each object appears whole anyway.
    renames: ClassVar[bool]
    #: True where directories exist on their own and must be made before files go into them.
    has_directories: ClassVar[bool]
    #: The pip extra that installs this backend's library, named in the error when it is missing.
    extra: ClassVar[str] = "artifacts"

    def __init__(self, authority: str, storage_options: Mapping[str, Any]) -> None:
        self.authority = authority
        self.fs: Any = self.make_filesystem(authority, dict(storage_options))

    # --- URI syntax (class-level: parsing happens before any backend exists) ---------------

    @classmethod
    @abstractmethod
    def split(cls, rest: str) -> tuple[str, str]:
        """Splits what follows ``scheme://`` into (authority, path); raises ``ValueError``
        with a reason when the authority is malformed."""

    @classmethod
    @abstractmethod
    def format(cls, authority: str, segments: tuple[str, ...]) -> str:
        """The canonical URI of a path."""

    @classmethod
    @abstractmethod
    def fs_path(cls, authority: str, segments: tuple[str, ...]) -> str:
        """The path fsspec's file system for this scheme takes."""

    # --- the file system ----------------------------------------------------------------

    @abstractmethod
    def make_filesystem(self, authority: str, options: dict[str, Any]) -> Any:
        """Creates the fsspec file system (uncached instance, no listing cache)."""

    def forget(self) -> None:
        """Drops whatever the file system remembers of listings, so the next answer is fresh."""
        self.fs.invalidate_cache()

    def makedirs(self, path: str) -> None:
        if self.has_directories:
            self.fs.makedirs(path, exist_ok=True)

    def rename(self, source: str, target: str) -> None:
        """Moves ``source`` to ``target``, replacing a file there (never a directory: the
        store removes one first)."""
        self.fs.mv(source, target)

    def remove(self, path: str) -> None:
        """Removes a file or a whole tree."""
        self.fs.rm(path, recursive=True)

    def local_path(self, segments: tuple[str, ...]) -> Path | None:
        """The path on this machine where a job can read the artifact in place, if any."""
        return None

    # --- errors -------------------------------------------------------------------------

    def meaning(self, exc: BaseException) -> Meaning | None:
        """What ``exc`` means, or None for any other failure. Subclasses add their library's
        exceptions and call this for the standard ones."""
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            return "not_found"
        if isinstance(exc, PermissionError):
            return "denied"
        if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
            return "unavailable"
        if isinstance(exc, OSError) and exc.errno in (errno.ENOENT,):
            return "not_found"
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return "denied"
        return None

    @classmethod
    def missing_library(cls, module: str, exc: ImportError) -> ArtifactError:
        return ArtifactError(
            f"{cls.scheme}:// needs the Python package {module!r} ({exc}): "
            f"pip install 'lumiflow[{cls.extra}]'"
        )
