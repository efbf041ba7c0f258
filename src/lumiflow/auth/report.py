"""Credentials a job's replicas use to push metrics (``lumiflow.report``), and nothing else.

A replica must not carry its user's token (it would outlive the job and open every API), so
each TrainingJob gets its own: ``lfr1.<job uid>.<HMAC-SHA256 of the uid>`` under a key that
lives in the platform's home (``keys/report.key``, 0600). The token names the job it may
write to; it is valid while that job exists, and useless for any other route.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from lumiflow.common.errors import Unauthorized

PREFIX = "lfr1"


def _load_or_create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    try:
        os.link(tmp, path)  # the first writer wins; a concurrent start reads its key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


class ReportTokens:
    def __init__(self, key_path: Path) -> None:
        self._key = _load_or_create(key_path)

    def _mac(self, uid: str) -> str:
        return hmac.new(self._key, uid.encode(), hashlib.sha256).hexdigest()

    def issue(self, uid: str) -> str:
        return f"{PREFIX}.{uid}.{self._mac(uid)}"

    def verify(self, token: str) -> str:
        """The job uid the token was issued for; raises Unauthorized otherwise."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or len(parts[1]) > 64:
            raise Unauthorized("not a metrics report token")
        if not hmac.compare_digest(parts[2], self._mac(parts[1])):
            raise Unauthorized("invalid metrics report token")
        return parts[1]
