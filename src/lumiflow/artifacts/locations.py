"""Parsing and checking artifact URIs.

A URI is parsed into a :class:`Location`: scheme, authority (bucket, XRootD host, ``""`` for
local files) and path segments. Parsing is strict and changes nothing it does not understand:
an unknown scheme, an empty segment (``a//b``), ``.`` or ``..`` anywhere, control characters
and glob or query characters (``* ? [ ] #``, which fsspec would expand) are refused with
:class:`InvalidArtifactURI` rather than normalised, so a URI either means exactly one place
or nothing. Plain paths are local files (``/cvmfs/x`` is ``file:///cvmfs/x``); a relative plain
path is taken from the current directory.

Names the store hands out (:func:`check_part`, used by ``uri_for``) are stricter: one segment
of ``A-Z a-z 0-9 . _ = + , @ ~ -``, not starting with a dot (the store's temporary names do).
Profiles are DNS labels, as Kubernetes namespaces are.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from lumiflow.artifacts.backends import BACKENDS, Backend
from lumiflow.artifacts.errors import InvalidArtifactURI

_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\*?\[\]#]")
_PART = re.compile(r"^[A-Za-z0-9_=+,@~-][A-Za-z0-9._=+,@~-]{0,254}$")
_PROFILE = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)


def check_profile(profile: str) -> str:
    """Returns ``profile`` if it is a DNS label, else raises ``InvalidArtifactURI``."""
    if not isinstance(profile, str) or not _PROFILE.match(profile):
        raise InvalidArtifactURI(
            f"profile {profile!r} is not a DNS label (a-z, 0-9 and '-', at most 63 characters)",
            field="profile",
        )
    return profile


def check_part(part: str) -> str:
    """Returns ``part`` if it may name one level under a profile's root."""
    if not isinstance(part, str) or part in (".", "..") or not _PART.match(part):
        raise InvalidArtifactURI(
            f"{part!r} is not an artifact path part: one name of letters, digits and "
            "'.', '_', '=', '+', ',', '@', '~', '-' (no '/', not '..', not starting with '.')",
            field="parts",
        )
    return part


def check_segment(segment: str, text: str, *, field: str) -> str:
    """Returns ``segment`` if it may be one segment of a path the store reads or writes."""
    if segment == "":
        raise InvalidArtifactURI(f"{text!r} has an empty path segment ('//')", field=field)
    if segment in (".", ".."):
        raise InvalidArtifactURI(f"{text!r} contains {segment!r}: paths must not climb or loop", field=field)
    bad = _FORBIDDEN.search(segment)
    if bad:
        raise InvalidArtifactURI(
            f"{text!r} contains {bad.group()!r}: control, glob and query characters are not allowed",
            field=field,
        )
    return segment


@dataclass(frozen=True)
class Location:
    """One place in one backend; ``uri`` is its canonical spelling."""

    scheme: str
    authority: str
    segments: tuple[str, ...]

    @property
    def backend(self) -> type[Backend]:
        return BACKENDS[self.scheme]

    @property
    def uri(self) -> str:
        return self.backend.format(self.authority, self.segments)

    @property
    def fs_path(self) -> str:
        return self.backend.fs_path(self.authority, self.segments)

    @property
    def name(self) -> str:
        return self.segments[-1] if self.segments else ""

    @property
    def parent(self) -> Location:
        return Location(self.scheme, self.authority, self.segments[:-1])

    def child(self, *segments: str) -> Location:
        return Location(self.scheme, self.authority, self.segments + tuple(segments))

    def contains(self, other: Location) -> bool:
        """True when ``other`` is this place or lies below it."""
        return (
            other.scheme == self.scheme
            and other.authority == self.authority
            and other.segments[: len(self.segments)] == self.segments
        )

    def below(self, other: Location) -> tuple[str, ...]:
        """The segments of ``other`` under this place (``other`` must be contained)."""
        return other.segments[len(self.segments) :]

    def __str__(self) -> str:
        return self.uri


def parse(text: str, *, field: str = "uri") -> Location:
    """Parses a URI or plain local path into a :class:`Location`, or raises
    ``InvalidArtifactURI`` naming ``field`` and saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArtifactURI(f"{field} must be a non-empty URI or path, not {text!r}", field=field)
    match = _SCHEME.match(text)
    if match is None:
        if "://" in text or ":" in text.split("/", 1)[0]:
            raise InvalidArtifactURI(f"{text!r} is neither a URI (scheme://...) nor a path", field=field)
        scheme, authority = "file", ""
        path = text if text.startswith("/") else os.getcwd().rstrip("/") + "/" + text
        path = path.lstrip("/")
    else:
        scheme = match.group(1).lower()
        if scheme not in BACKENDS:
            known = ", ".join(f"{name}://" for name in BACKENDS)
            raise InvalidArtifactURI(
                f"{text!r} uses the unknown scheme {scheme!r}: artifacts live under {known} or local paths",
                field=field,
            )
        try:
            authority, path = BACKENDS[scheme].split(match.group(2))
        except ValueError as exc:
            raise InvalidArtifactURI(f"{text!r}: {exc}", field=field) from None
    path = path.rstrip("/")
    segments = tuple(check_segment(segment, text, field=field) for segment in path.split("/")) if path else ()
    return Location(scheme, authority, segments)
