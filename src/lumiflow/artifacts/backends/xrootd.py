"""``root://host:port//path`` artifacts on XRootD (CERN's EOS, dCache, plain xrootd servers)
through fsspec-xrootd and the XRootD client's Python bindings (the ``xrootd`` wheel).

``storage_options`` go to ``XRootDFileSystem``; ``timeout`` (seconds per request) defaults to
60 here rather than the library's "never". The XRootD client reads its other settings from the
environment once per process (``XRD_CONNECTIONWINDOW``, ``XRD_CONNECTIONRETRY``,
``XRD_TIMEOUTRESOLUTION``: timeouts are only checked every 15 s by default), so an operator who
needs an unreachable server noticed faster sets those.

fsspec-xrootd reports every failure as a bare ``OSError`` carrying the server's status text;
:meth:`XRootDBackend.meaning` reads the XRootD error codes out of it. Its recursive ``rm``
leaves directories behind, so :meth:`XRootDBackend.remove` removes files, then directories,
deepest first.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from lumiflow.artifacts.backends.base import Backend, Meaning

_AUTHORITY = re.compile(r"^(?:[A-Za-z0-9._%-]+@)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?$")
# XRootD status codes (XProtocol.hh): 3010 kXR_NotAuthorized, 3011 kXR_NotFound.
_NOT_FOUND = re.compile(r"\[3011\]|no such file", re.IGNORECASE)
_DENIED = re.compile(r"\[3010\]|not authorized|permission denied|disallowed", re.IGNORECASE)
_UNAVAILABLE = re.compile(
    r"\[FATAL\]|operation expired|connection (?:error|refused)|socket (?:error|timeout)|"
    r"invalid address|redirect limit|\[3014\]",  # 3014: kXR_noserver
    re.IGNORECASE,
)


class XRootDBackend(Backend):
    scheme: ClassVar[str] = "root"
    renames: ClassVar[bool] = True
    has_directories: ClassVar[bool] = True

    @classmethod
    def split(cls, rest: str) -> tuple[str, str]:
        authority, _, path = rest.partition("/")
        if not _AUTHORITY.match(authority):
            raise ValueError(f"{authority!r} is not an XRootD host[:port]: root://host:port//path")
        return authority, path.lstrip("/")

    @classmethod
    def format(cls, authority: str, segments: tuple[str, ...]) -> str:
        return f"root://{authority}//" + "/".join(segments)

    @classmethod
    def fs_path(cls, authority: str, segments: tuple[str, ...]) -> str:
        return "/" + "/".join(segments)

    def make_filesystem(self, authority: str, options: dict[str, Any]) -> Any:
        try:
            from fsspec_xrootd import XRootDFileSystem
        except ImportError as exc:
            raise self.missing_library("fsspec_xrootd", exc) from None
        options.setdefault("timeout", 60)
        return XRootDFileSystem(hostid=authority, skip_instance_cache=True, **options)

    def forget(self) -> None:
        # invalidate_cache() would also close the read-handle cache, synchronously.
        self.fs.dircache.clear()

    def remove(self, path: str) -> None:
        if not self.fs.isdir(path):
            self.fs.rm_file(path)
            return
        found = self.fs.find(path, withdirs=True, detail=True)
        entries = {name.rstrip("/"): info["type"] for name, info in found.items()}
        entries[path] = "directory"
        for name in sorted(entries, key=lambda name: (-name.count("/"), name)):
            if entries[name] == "directory":
                self.fs.rmdir(name)
            else:
                self.fs.rm_file(name)
        self.forget()

    def meaning(self, exc: BaseException) -> Meaning | None:
        standard = super().meaning(exc)
        if standard is not None or not isinstance(exc, OSError):
            return standard
        message = str(exc)
        if _NOT_FOUND.search(message):
            return "not_found"
        if _DENIED.search(message):
            return "denied"
        if _UNAVAILABLE.search(message):
            return "unavailable"
        return None
