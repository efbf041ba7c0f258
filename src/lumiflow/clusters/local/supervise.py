"""Starting shims and hearing when they end.

:class:`ForkServer` starts shims by asking a small fork server to fork one (a launch costs a
fork, not an interpreter start); :class:`Watcher` polls a pidfd per live shim and calls back
with the gang id when one exits (pidfds work for processes that are not our children, so
shims re-attached after a server restart are watched the same way).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import subprocess
import threading
from pathlib import Path

from lumiflow.clusters.base import Notify

log = logging.getLogger(__name__)

SHIM = Path(__file__).with_name("shim.py")
CMDLINE_ROOM = 4096  # bytes of command line a replica forked by a warm fork server can show


class Watcher(threading.Thread):
    """Polls pidfds of live shims; calls back with the gang id when one exits."""

    def __init__(self, on_exit: Notify) -> None:
        super().__init__(name="lumiflow-local-watcher", daemon=True)
        self._on_exit = on_exit
        self._poll = select.poll()
        self._fds: dict[int, tuple[str, subprocess.Popen[bytes] | None]] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll.register(self._wake_r, select.POLLIN)
        self._closed = False

    def watch(self, pid: int, gang_id: str, popen: subprocess.Popen[bytes] | None = None) -> bool:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        with self._lock:
            self._fds[fd] = (gang_id, popen)
            self._poll.register(fd, select.POLLIN)
        os.write(self._wake_w, b"x")
        return True

    def run(self) -> None:
        while not self._closed:
            try:
                events = self._poll.poll(1000)
            except InterruptedError:
                continue
            for fd, _mask in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    entry = self._fds.pop(fd, None)
                    with contextlib.suppress(KeyError, ValueError):
                        self._poll.unregister(fd)
                os.close(fd)
                if entry is None:
                    continue
                gang_id, popen = entry
                if popen is not None:
                    with contextlib.suppress(Exception):
                        popen.wait(timeout=1)
                try:
                    self._on_exit(gang_id)
                except Exception:  # pragma: no cover - callbacks must not raise
                    log.exception("notify failed")

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")


class ForkServer:
    """Starts shims by asking a small fork server (``shim.py --serve``) to fork one.

    A *warm* fork server (``preload`` given) runs with site-packages and imports the preloads
    first; its shims start a ``python SCRIPT`` / ``python -m MODULE`` replica by forking that
    warm interpreter instead of exec'ing a new one (see ``shim._run_python``).

    Forking that single-threaded, already-initialised process costs about a millisecond;
    starting an interpreter for each shim costs 15-20 ms on this kind of machine, on the
    critical path of every job. If the fork server cannot be started or dies, ``spawn``
    raises OSError and the caller starts the shim as a process of its own instead.
    """

    def __init__(
        self, python: str, *, preload: tuple[str, ...] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.python = python
        self.preload = preload
        self.env = env
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.preload is None:  # standard library only, as a shim started directly
                argv = [self.python, "-S", "-I", str(SHIM), "--serve", str(theirs.fileno())]
            else:  # warm: site-packages and the preloads imported, with the replicas' environment
                argv = [
                    self.python,
                    str(SHIM),
                    "--serve",
                    str(theirs.fileno()),
                    "--preload",
                    ",".join(self.preload),
                    "--room",  # room for the forked replicas' command lines (shim._set_cmdline)
                    "." * CMDLINE_ROOM,
                ]
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                close_fds=True,
                env=self.env,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        return ours

    def spawn(self, replica_dir: Path, lock_fd: int, start_fd: int) -> int:
        """Forks a shim for ``replica_dir``; returns its pid. Raises OSError."""
        with self._lock:
            sock = self._sock or self._start()
            try:
                socket.send_fds(sock, [str(replica_dir).encode()], [lock_fd, start_fd])
                answer = b""
                while not answer.endswith(b"\n"):
                    part = sock.recv(64)
                    if not part:
                        raise OSError("the fork server closed its socket")
                    answer += part
                pid = int(answer)
            except (OSError, ValueError):
                self.close()
                raise OSError("the shim fork server failed") from None
            if pid <= 0:
                raise OSError("the shim fork server refused the request")
            return pid

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self._proc.wait(timeout=5)
            self._proc = None
