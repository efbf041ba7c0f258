"""Content digests of artifacts, computed while the bytes stream past.

A file's digest is ``sha256:<hex>`` of its bytes. A directory's is ``sha256:<hex>`` of the
UTF-8 text made of one line per file, sorted by relative path::

    <relative posix path>\\t<file's sha256 hex>\\t<size in bytes>\\n

so that two trees are equal exactly when they hold the same files with the same bytes under
the same names (empty directories are not part of an artifact: S3 cannot hold one). Anyone can
recompute a digest with :func:`tree_digest` and the standard library.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Any

from lumiflow.artifacts.errors import InvalidArtifactURI

#: Bytes read or written per call while streaming.
CHUNK = 4 << 20
PREFIX = "sha256:"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_digest(digest: str) -> str:
    """Returns ``digest`` if it is ``sha256:`` and 64 lowercase hex digits."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InvalidArtifactURI(
            f"{digest!r} is not a digest: expected 'sha256:' and 64 lowercase hex digits",
            field="expected_digest",
        )
    return digest


def stream(read: Callable[[int], bytes], write: Callable[[bytes], Any] | None = None) -> tuple[str, int]:
    """Reads to the end, passing each chunk to ``write``; returns (sha256 hex, size)."""
    sha = hashlib.sha256()
    size = 0
    while True:
        chunk = read(CHUNK)
        if not chunk:
            return sha.hexdigest(), size
        sha.update(chunk)
        size += len(chunk)
        if write is not None:
            write(chunk)


def tree_digest(files: Iterable[tuple[str, str, int]]) -> str:
    """The digest of a directory from its files' (relative path, sha256 hex, size)."""
    sha = hashlib.sha256()
    for path, hexdigest, size in sorted(files):
        sha.update(f"{path}\t{hexdigest}\t{size}\n".encode())
    return PREFIX + sha.hexdigest()
