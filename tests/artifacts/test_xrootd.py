"""The artifact store on a real XRootD server (Debian's ``xrootd-server``), in a private network
namespace whose only interface is loopback.

:func:`test_xrootd_backend_in_a_private_network` re-runs pytest under ``unshare --net`` on every
test marked ``xrootd`` (the suite's ``[xrootd]`` entries and the test below), with the XRootD
client's timeouts shortened (``servers.XROOTD_CLIENT_ENV``); inside, the session fixture
``xrootd_server`` starts the server as the ``xrootd`` user.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lumiflow.artifacts import ArtifactStore
from tests.artifacts.servers import (
    INSIDE,
    XROOTD_CLIENT_ENV,
    XRootDServer,
    inside_private_network,
    xrootd_missing,
)
from tests.helpers import ROOT

#: A guard against a hang: the inner run takes about 15 s on an idle 2-core machine.
INNER_TIMEOUT = 240


@pytest.mark.timeout(INNER_TIMEOUT + 30)
def test_xrootd_backend_in_a_private_network(tmp_path: Path) -> None:
    """Runs every test marked ``xrootd`` in a private network namespace with the server."""
    reason = xrootd_missing()
    if reason:
        pytest.skip(reason)
    if inside_private_network():
        pytest.skip("the launcher itself runs in the machine's network namespace")
    command = [
        "unshare",
        "--net",
        "--",
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "xrootd",
        f"--basetemp={tmp_path / 'inner'}",
        "tests/artifacts/test_store_suite.py",
        "tests/artifacts/test_xrootd.py",
    ]
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, INSIDE: "1", **XROOTD_CLIENT_ENV},
        capture_output=True,
        text=True,
        timeout=INNER_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    print(output[-4000:], f"\ninner run: {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, f"the XRootD tests failed (exit {result.returncode}):\n{output[-20000:]}"
    assert " passed" in output and "skipped" not in output.splitlines()[-1], output[-4000:]


@pytest.mark.xrootd
@pytest.mark.timeout(60)
def test_the_server_is_the_xrootd_user_on_loopback_only(xrootd_server: XRootDServer, tmp_path: Path) -> None:
    assert [name for _, name in socket.if_nameindex()] == ["lo"]
    assert xrootd_server.process is not None
    status = Path(f"/proc/{xrootd_server.process.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uid_line.split()[1:]) == {str(pwd.getpwnam("xrootd").pw_uid)}, uid_line

    root = xrootd_server.root()
    store = ArtifactStore(root, storage_options={"timeout": 10})
    (tmp_path / "f").write_bytes(b"on EOS, nearly")
    stored = store.put(tmp_path / "f", store.uri_for("team", "f"))
    assert stored.uri == f"{root}/team/f" and stored.uri.startswith("root://127.0.0.1:")
    folder = root.rsplit("/", 1)[1]
    assert xrootd_server.owner(f"{folder}/team/f") == pwd.getpwnam("xrootd").pw_uid
