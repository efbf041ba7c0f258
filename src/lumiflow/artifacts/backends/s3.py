"""``s3://bucket/key`` artifacts through s3fs (AWS, MinIO, Ceph, moto...).

``storage_options`` go to ``s3fs.S3FileSystem`` as they are (``endpoint_url``, ``key``,
``secret``, ``client_kwargs``, ``config_kwargs`` for botocore's timeouts and retries); the
listing cache is off unless asked for. S3 has no rename and no directories: an object appears
whole when its upload completes, so files are written in place, and a "directory" is the set of
keys under a prefix.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from lumiflow.artifacts.backends.base import Backend, Meaning

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class S3Backend(Backend):
    scheme: ClassVar[str] = "s3"
    renames: ClassVar[bool] = False
    has_directories: ClassVar[bool] = False

    @classmethod
    def split(cls, rest: str) -> tuple[str, str]:
        bucket, _, key = rest.partition("/")
        if not _BUCKET.match(bucket):
            raise ValueError(
                f"{bucket!r} is not an S3 bucket name (3-63 characters: a-z, 0-9, '.', '-'): s3://bucket/key"
            )
        return bucket, key

    @classmethod
    def format(cls, authority: str, segments: tuple[str, ...]) -> str:
        return "s3://" + "/".join((authority, *segments))

    @classmethod
    def fs_path(cls, authority: str, segments: tuple[str, ...]) -> str:
        return "/".join((authority, *segments))

    def make_filesystem(self, authority: str, options: dict[str, Any]) -> Any:
        try:
            import s3fs
        except ImportError as exc:
            raise self.missing_library("s3fs", exc) from None
        options.setdefault("use_listings_cache", False)
        return s3fs.S3FileSystem(skip_instance_cache=True, **options)

    def meaning(self, exc: BaseException) -> Meaning | None:
        try:
            from botocore import exceptions as boto
        except ImportError:  # pragma: no cover - s3fs depends on botocore
            boto = None
        if boto is not None:
            if isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
                return "unavailable"
            if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
                return "denied"
        try:
            import aiohttp
        except ImportError:  # pragma: no cover - aiobotocore depends on aiohttp
            aiohttp = None  # type: ignore[assignment]
        if aiohttp is not None and isinstance(exc, aiohttp.ClientConnectionError):
            return "unavailable"
        return super().meaning(exc)
