"""The artifact store: datasets, models and metrics addressed by URL, one root per profile.

Pipelines write and read artifacts through one :class:`ArtifactStore`, which owns a root
(``file://$LUMIFLOW_HOME/artifacts`` by default, an ``s3://bucket/prefix`` or an XRootD
``root://host:port//path``) and gives each profile the folder ``<root>/<profile>``. It may also
read from read-only roots (``/cvmfs/...``, a shared dataset area), where writes and deletes are
refused. Every URI is checked before anything is touched (see :mod:`.locations`): it must lie
under the caller's profile root when a ``profile`` is given, under some profile's root
otherwise, or under a read-only root for reads.

Design choices:

* **Digests while streaming.** ``put`` hashes the bytes as it sends them and ``get`` as it
  receives them (see :mod:`.digests` for the directory digest), so the digest describes what
  went over the wire, without a second read. ``stat`` reads everything back and caches
  nothing: it is the check, not a lookup.
* **Atomic where the backend allows.** Where renames are server-side (local files, XRootD)
  ``put`` writes under a hidden temporary name next to the target and moves it into place, so a
  reader sees the old artifact or the new one, never half of one; replacing a directory
  removes the old one just before the move. S3 has no rename, but each object appears whole,
  so files are written in place (a directory replaced on S3 can be seen half-written). ``get``
  downloads next to the destination, checks ``expected_digest``, and only then moves the result
  into place: a corrupt download never lands.
* **Errors say what and where, never how.** Backend exceptions become :mod:`.errors` (not
  found, denied, unavailable: a ``TemporaryError``) with the backend's own message in one line.

Thread-safety: a store holds no mutable state of its own; concurrent calls on different URIs
are safe, concurrent writes to the same URI end with one of them in place (atomic backends).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lumiflow.artifacts.backends import Backend
from lumiflow.artifacts.digests import PREFIX, check_digest, stream, tree_digest
from lumiflow.artifacts.errors import (
    ArtifactCorrupt,
    ArtifactDenied,
    ArtifactError,
    ArtifactNotFound,
    ArtifactReadOnly,
    ArtifactUnavailable,
    InvalidArtifactURI,
)
from lumiflow.artifacts.locations import Location, check_part, check_profile, check_segment, parse
from lumiflow.common.settings import default_home

#: How long a controller should wait before retrying an unreachable backend.
RETRY_DELAY = 5.0


def default_root() -> str:
    """``file://$LUMIFLOW_HOME/artifacts``, the root of a store nobody configured."""
    return parse(os.path.abspath(default_home() / "artifacts"), field="root").uri


@dataclass(frozen=True)
class StoredArtifact:
    """What is stored at ``uri``: its digest (``sha256:<hex>``; for a directory, over its files'
    sorted (relative path, sha256, size) lines), its size in bytes (a directory: the sum over
    its files) and whether it is a directory."""

    uri: str
    digest: str
    size: int
    is_dir: bool


@dataclass(frozen=True)
class _Root:
    location: Location
    backend: Backend
    readonly: bool


class ArtifactStore:
    """Artifacts under ``root``, one folder per profile, plus read-only roots.

    Every method takes URIs (or plain local paths, meaning ``file://``) and raises only
    :class:`~lumiflow.artifacts.errors.ArtifactError` subclasses: ``InvalidArtifactURI`` (422)
    for a URI that is malformed or lies elsewhere, ``ArtifactNotFound`` (404),
    ``ArtifactReadOnly``/``ArtifactDenied`` (403), ``ArtifactCorrupt``, and
    ``ArtifactUnavailable`` (503, retry) when the backend cannot be reached. Methods that take
    ``profile`` refuse URIs under another profile's root when it is given.
    """

    def __init__(
        self,
        root: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        readonly_roots: Sequence[str] = (),
    ) -> None:
        options = dict(storage_options or {})
        location = parse(root, field="root")
        self._root = _Root(location, self._backend(location, options), readonly=False)
        readonly: list[_Root] = []
        for text in readonly_roots:
            other = parse(text, field="readonly_roots")
            if location.contains(other) or other.contains(location):
                raise InvalidArtifactURI(
                    f"read-only root {other.uri} overlaps the store's root {location.uri}",
                    field="readonly_roots",
                )
            same_place = (other.scheme, other.authority) == (location.scheme, location.authority)
            readonly.append(_Root(other, self._backend(other, options if same_place else {}), readonly=True))
        # The most specific root wins when read-only roots nest.
        self._readonly = sorted(readonly, key=lambda r: -len(r.location.segments))

    @staticmethod
    def _backend(location: Location, options: Mapping[str, Any]) -> Backend:
        try:
            return location.backend(location.authority, options)
        except ArtifactError:
            raise
        except (TypeError, ValueError) as exc:
            raise InvalidArtifactURI(
                f"storage_options do not suit {location.scheme}://: {exc}", field="storage_options"
            ) from None

    # --- names ---------------------------------------------------------------------------

    @property
    def root(self) -> str:
        return self._root.location.uri

    @property
    def readonly_roots(self) -> tuple[str, ...]:
        return tuple(r.location.uri for r in self._readonly)

    def profile_root(self, profile: str) -> str:
        """``<root>/<profile>``; the profile must be a DNS label."""
        return self._root.location.child(check_profile(profile)).uri

    def uri_for(self, profile: str, *parts: str) -> str:
        """A URI under the profile's root, one checked name per part
        (``uri_for("team", "runs", "r1", "model")``)."""
        return self._root.location.child(check_profile(profile), *(check_part(p) for p in parts)).uri

    def owner_of(self, uri: str) -> str | None:
        """The profile whose root holds ``uri``; None for a URI elsewhere (another store, a
        read-only root). Raises ``InvalidArtifactURI`` only for a malformed URI."""
        location = parse(uri)
        if not self._root.location.contains(location):
            return None
        below = self._root.location.below(location)
        if not below:
            return None
        try:
            return check_profile(below[0])
        except InvalidArtifactURI:
            return None

    def local_path(self, uri: str, *, profile: str | None = None) -> Path | None:
        """Where a job on this machine can read ``uri`` in place (``file://`` and local
        read-only roots), else None. The path may not exist yet."""
        root, location = self._target(uri, profile=profile, write=False)
        return root.backend.local_path(location.segments)

    # --- transfers -----------------------------------------------------------------------

    def put(self, local_path: str | Path, uri: str, *, profile: str | None = None) -> StoredArtifact:
        """Uploads a file or a directory tree to ``uri``, replacing what was there.

        Returns the digest and size computed from the bytes sent. Directory trees hold regular
        files (symlinks to files are followed, symlinked directories and empty directories are
        not part of an artifact); an empty tree is refused.
        """
        root, location = self._target(uri, profile=profile, write=True, whole_profile=False)
        source = Path(local_path)
        if not source.exists():
            raise ArtifactNotFound(f"nothing to upload: {source} does not exist")
        tree = _local_tree(source) if source.is_dir() else None
        if tree == []:
            raise InvalidArtifactURI(
                f"{source} holds no files: an empty directory is no artifact", field="local_path"
            )
        backend = root.backend
        # Next to the target (one file system, so the move is a rename); short enough for NAME_MAX.
        staging = location.parent.child(f".{location.name[:200]}.lumiflow-{secrets.token_hex(6)}")
        target = staging if backend.renames else location
        with self._errors(root, location, "upload to"):
            backend.forget()
            made: set[str] = set()
            try:
                if not backend.renames:
                    self._clear(backend, location, keep_file=tree is None)
                if tree is None:
                    hexdigest, size = self._upload(backend, source, target, made)
                    digest = PREFIX + hexdigest
                else:
                    entries = []
                    for relative in tree:
                        hexdigest, file_size = self._upload(
                            backend, source / relative, target.child(*relative.split("/")), made
                        )
                        entries.append((relative, hexdigest, file_size))
                    digest, size = tree_digest(entries), sum(entry[2] for entry in entries)
                if backend.renames:
                    self._clear(backend, location, keep_file=tree is None)
                    backend.rename(staging.fs_path, location.fs_path)
            except BaseException:
                if backend.renames:
                    with contextlib.suppress(Exception):
                        backend.forget()
                        if backend.fs.exists(staging.fs_path):
                            backend.remove(staging.fs_path)
                raise
        return StoredArtifact(location.uri, digest, size, is_dir=tree is not None)

    def get(
        self,
        uri: str,
        local_path: str | Path,
        *,
        expected_digest: str | None = None,
        profile: str | None = None,
    ) -> StoredArtifact:
        """Downloads the file or tree at ``uri`` to ``local_path`` (replacing what is there).

        With ``expected_digest``, a download whose bytes hash otherwise raises
        ``ArtifactCorrupt`` and leaves ``local_path`` untouched.
        """
        if expected_digest is not None:
            check_digest(expected_digest)
        root, location = self._target(uri, profile=profile, write=False)
        destination = Path(local_path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = destination.parent / f".{destination.name[:200]}.lumiflow-{secrets.token_hex(6)}"
        try:
            stored = self._read(root, location, staging)
            if expected_digest is not None and stored.digest != expected_digest:
                raise ArtifactCorrupt(
                    f"{location.uri} is corrupt: its bytes hash to {stored.digest}, expected {expected_digest}"
                )
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            elif stored.is_dir and (destination.exists() or destination.is_symlink()):
                destination.unlink()
            os.replace(staging, destination)
            return stored
        finally:
            if staging.is_dir():
                shutil.rmtree(staging, ignore_errors=True)
            elif staging.exists():
                staging.unlink()

    def stat(self, uri: str, *, profile: str | None = None) -> StoredArtifact:
        """The digest and size of what is at ``uri`` now, computed by reading all of it."""
        root, location = self._target(uri, profile=profile, write=False)
        return self._read(root, location, None)

    def exists(self, uri: str, *, profile: str | None = None) -> bool:
        root, location = self._target(uri, profile=profile, write=False)
        with self._errors(root, location, "look up"):
            root.backend.forget()
            return bool(root.backend.fs.exists(location.fs_path))

    def open(self, uri: str, mode: str = "rb", *, profile: str | None = None) -> IO[bytes]:
        """A binary file object: ``"rb"`` reads a file, ``"wb"`` writes one in place (not
        atomically: use :meth:`put` for that). Close it; errors while reading or writing
        come from the backend's file object."""
        if mode not in ("rb", "wb"):
            raise InvalidArtifactURI(f"mode {mode!r} is not supported: 'rb' or 'wb'", field="mode")
        write = mode == "wb"
        root, location = self._target(uri, profile=profile, write=write, whole_profile=False)
        backend = root.backend
        with self._errors(root, location, "write" if write else "read"):
            backend.forget()
            if write:
                backend.makedirs(location.parent.fs_path)
            elif backend.fs.isdir(location.fs_path):
                raise InvalidArtifactURI(f"{location.uri} is a directory: open reads files", field="uri")
            handle: IO[bytes] = backend.fs.open(location.fs_path, mode)
            return handle

    def delete(self, uri: str, *, profile: str | None = None) -> None:
        """Removes the file or tree at ``uri``; nothing there is no error (a retried delete
        succeeds). A whole profile root may be deleted, the store's root may not."""
        root, location = self._target(uri, profile=profile, write=True, whole_profile=True)
        backend = root.backend
        with self._errors(root, location, "delete"):
            backend.forget()
            if backend.fs.exists(location.fs_path):
                backend.remove(location.fs_path)
            backend.forget()

    # --- internals -----------------------------------------------------------------------

    def _target(
        self, uri: str, *, profile: str | None, write: bool, whole_profile: bool = True
    ) -> tuple[_Root, Location]:
        """The root that holds ``uri`` and its location, after every check of the URI."""
        location = parse(uri)
        if profile is not None:
            check_profile(profile)
        if self._root.location.contains(location):
            below = self._root.location.below(location)
            if not below or _profile_or_none(below[0]) is None:
                raise InvalidArtifactURI(
                    f"{location.uri} is not under a profile's root: artifacts live under "
                    f"{self._root.location.uri}/<profile>/...",
                    field="uri",
                )
            if profile is not None and below[0] != profile:
                raise InvalidArtifactURI(
                    f"{location.uri} lies under profile {below[0]!r}'s root, "
                    f"outside {profile!r}'s ({self.profile_root(profile)})",
                    field="uri",
                )
            if write and len(below) < 2 and not whole_profile:
                raise InvalidArtifactURI(
                    f"{location.uri} is a profile's root: name an artifact below it", field="uri"
                )
            return self._root, location
        for root in self._readonly:
            if root.location.contains(location):
                if write:
                    raise ArtifactReadOnly(
                        f"{root.location.uri} is a read-only root: {location.uri} cannot be written or deleted"
                    )
                return root, location
        where = ", ".join([self._root.location.uri, *(r.location.uri for r in self._readonly)])
        raise InvalidArtifactURI(f"{location.uri} is outside this artifact store ({where})", field="uri")

    @contextlib.contextmanager
    def _errors(self, root: _Root, location: Location, action: str) -> Iterator[None]:
        """Turns a backend's exception into an ``ArtifactError`` with its message in one line."""
        try:
            yield
        except ArtifactError:
            raise
        except Exception as exc:
            meaning = root.backend.meaning(exc)
            detail = _one_line(exc)
            if meaning == "not_found":
                raise ArtifactNotFound(f"no artifact at {location.uri}") from exc
            if meaning == "denied":
                raise ArtifactDenied(f"the backend refused to {action} {location.uri}: {detail}") from exc
            if meaning == "unavailable":
                raise ArtifactUnavailable(
                    f"the artifact store at {root.location.uri} cannot be reached "
                    f"(to {action} {location.uri}): {detail}",
                    delay=RETRY_DELAY,
                ) from exc
            raise ArtifactError(f"could not {action} {location.uri}: {detail}") from exc

    @staticmethod
    def _clear(backend: Backend, location: Location, *, keep_file: bool) -> None:
        """Removes what is at ``location`` unless a rename or upload will replace it whole
        (a file replaced by a file)."""
        backend.forget()
        if not backend.fs.exists(location.fs_path):
            return
        if keep_file and not backend.fs.isdir(location.fs_path):
            return
        backend.remove(location.fs_path)
        backend.forget()

    @staticmethod
    def _upload(backend: Backend, source: Path, target: Location, made: set[str]) -> tuple[str, int]:
        parent = target.parent.fs_path
        if backend.has_directories and parent not in made:
            backend.makedirs(parent)
            made.add(parent)
        with source.open("rb") as reader, backend.fs.open(target.fs_path, "wb") as writer:
            return stream(reader.read, writer.write)

    def _read(self, root: _Root, location: Location, destination: Path | None) -> StoredArtifact:
        """Reads the file or tree at ``location``, hashing it; writes it under ``destination``
        when one is given."""
        backend = root.backend
        with self._errors(root, location, "read"):
            backend.forget()
            info = backend.fs.info(location.fs_path)
            if info.get("type") != "directory":
                hexdigest, size = _download(backend, location, destination)
                return StoredArtifact(location.uri, PREFIX + hexdigest, size, is_dir=False)
            if destination is not None:
                destination.mkdir()
            entries = []
            for relative in _remote_tree(backend, location):
                local = None
                if destination is not None:
                    local = destination / relative
                    local.parent.mkdir(parents=True, exist_ok=True)
                hexdigest, size = _download(backend, location.child(*relative.split("/")), local)
                entries.append((relative, hexdigest, size))
            return StoredArtifact(
                location.uri, tree_digest(entries), sum(entry[2] for entry in entries), is_dir=True
            )


def _profile_or_none(segment: str) -> str | None:
    try:
        return check_profile(segment)
    except InvalidArtifactURI:
        return None


def _local_tree(source: Path) -> list[str]:
    """The relative POSIX paths of the regular files under ``source``, sorted."""
    found = []
    for folder, folders, files in os.walk(source):
        folders.sort()
        for name in files:
            path = Path(folder) / name
            if path.is_file():
                relative = path.relative_to(source).as_posix()
                for segment in relative.split("/"):
                    check_segment(segment, relative, field="local_path")
                found.append(relative)
    return sorted(found)


def _remote_tree(backend: Backend, location: Location) -> list[str]:
    """The relative paths of the files under a directory in the backend, sorted."""
    prefix = location.fs_path.rstrip("/") + "/"
    found = []
    for name, info in backend.fs.find(location.fs_path, detail=True).items():
        name = name.rstrip("/")
        if info.get("type") != "file" or not name.startswith(prefix):
            continue
        relative = name[len(prefix) :]
        for segment in relative.split("/"):
            check_segment(segment, f"{location.uri}/{relative}", field="uri")
        found.append(relative)
    return sorted(found)


def _download(backend: Backend, location: Location, destination: Path | None) -> tuple[str, int]:
    with backend.fs.open(location.fs_path, "rb") as reader:
        if destination is None:
            return stream(reader.read)
        with destination.open("wb") as writer:
            return stream(reader.read, writer.write)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if not text:
        text = type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."
