"""Real servers for the artifact store's suite: an S3 server (moto's, in this process's network)
and an XRootD server (Debian's ``xrootd-server``) in a private network namespace.

The XRootD server runs as the ``xrootd`` user, exporting ``/data`` from a temporary directory
that user owns, on a free port of a network namespace whose only interface is loopback:
``test_xrootd.py::test_xrootd_backend_in_a_private_network`` re-runs pytest on the tests marked
``xrootd`` under ``unshare --net`` with :data:`INSIDE` set, and the session fixture
``xrootd_server`` (``conftest.py``) brings ``lo`` up and starts the server there. Both servers
are stopped by the PID their fixture started, nothing else.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from tests.helpers import free_port, wait_until

#: Set (to "1") for the pytest that runs inside the private network namespace.
INSIDE = "LUMIFLOW_TEST_XROOTD_NETNS"
#: The XRootD client reads these once per process: timeouts checked every second rather than
#: every 15, one connection attempt within 2 s, so that an unreachable server is noticed fast.
XROOTD_CLIENT_ENV = {"XRD_TIMEOUTRESOLUTION": "1", "XRD_CONNECTIONWINDOW": "2", "XRD_CONNECTIONRETRY": "1"}
#: How long a server may take to listen (a loaded 2-core machine).
START_TIMEOUT = 60.0


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class MotoServer:
    """``python -m moto.server`` on 127.0.0.1 and a free port."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / "moto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        process = self.process
        wait_until(
            lambda: process.poll() is not None or _listening(self.port),
            timeout=START_TIMEOUT,
            message=f"moto server on port {self.port}",
        )
        assert process.poll() is None, f"moto server exited:\n{self.log.read_text()[-4000:]}"

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def storage_options(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint,
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"},
        }

    def new_bucket(self) -> str:
        import boto3

        name = f"lumiflow-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
        return name


def xrootd_missing() -> str | None:
    """Why the XRootD tests cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "the XRootD tests need root: a private network namespace (unshare --net), the xrootd user"
    for tool in ("unshare", "ip", "xrootd"):
        if shutil.which(tool) is None:
            package = {"xrootd": "xrootd-server", "ip": "iproute2"}.get(tool, "util-linux")
            return f"the XRootD tests need {tool!r} (Debian package {package}: make system-deps)"
    try:
        pwd.getpwnam("xrootd")
    except KeyError:
        return "the XRootD tests need the 'xrootd' user (Debian package xrootd-server)"
    try:
        import fsspec_xrootd  # noqa: F401
        from XRootD import client  # noqa: F401
    except ImportError as exc:
        return f"the XRootD tests need fsspec-xrootd and the xrootd wheel ({exc}): pip install 'lumiflow[artifacts]'"
    probe = subprocess.run(["unshare", "--net", "--", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"the XRootD tests need a private network namespace: unshare --net failed ({probe.stderr.strip()})"
    return None


def inside_private_network() -> bool:
    """True in a network namespace whose only interface is loopback."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


class XRootDServer:
    """Debian's ``xrootd`` as the ``xrootd`` user, exporting ``/data`` on loopback."""

    def __init__(self) -> None:
        # Not under pytest's basetemp: /tmp/pytest-of-root is root's alone (mode 0700).
        self.base = Path(tempfile.mkdtemp(prefix="lumiflow-xrootd-"))
        self.port = free_port()
        self.log = self.base / "xrootd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        self.port = free_port()
        account = pwd.getpwnam("xrootd")
        self.base.chmod(0o755)
        for folder in ("export/data", "admin", "run"):
            (self.base / folder).mkdir(parents=True)
        config = self.base / "xrootd.cfg"
        config.write_text(
            f"xrd.port {self.port}\n"
            "all.export /data\n"
            f"oss.localroot {self.base / 'export'}\n"
            f"all.adminpath {self.base / 'admin'}\n"
            f"all.pidpath {self.base / 'run'}\n"
        )
        for folder, _, files in os.walk(self.base):
            os.chown(folder, account.pw_uid, account.pw_gid)
            for name in files:
                os.chown(Path(folder) / name, account.pw_uid, account.pw_gid)
        with (self.base / "xrootd.out").open("wb") as out:
            self.process = subprocess.Popen(
                ["xrootd", "-c", str(config), "-l", str(self.log), "-n", "lumiflow-test"],
                user="xrootd",
                group="xrootd",
                extra_groups=[],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        process = self.process
        wait_until(
            lambda: process.poll() is not None or _listening(self.port),
            timeout=START_TIMEOUT,
            message=f"xrootd on port {self.port}",
        )
        assert process.poll() is None, f"xrootd exited:\n{self.logs()}"

    def logs(self) -> str:
        texts = [p.read_text(errors="replace") for p in sorted(self.base.glob("xrootd.*")) if p.is_file()]
        return "\n".join(texts)[-4000:]

    def stop(self) -> None:
        try:
            if self.process is not None:
                _stop(self.process)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def root(self) -> str:
        """A fresh folder under the export, for one test."""
        return f"root://127.0.0.1:{self.port}//data/{uuid.uuid4().hex[:12]}"

    def owner(self, relative: str) -> int:
        return (self.base / "export" / "data" / relative).stat().st_uid
