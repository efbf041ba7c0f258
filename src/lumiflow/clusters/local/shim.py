"""The shim: a tiny supervisor that runs one replica and outlives the server.

Run as ``python -S -I shim.py REPLICA_DIR START_FD`` (standard library only, no site
packages). Start-up is on every job's critical path, so the start path imports only
C modules (``marshal``, ``_signal``, ``errno``) besides ``os``: ``json`` alone costs ~17 ms
here, as much as the interpreter itself; it is imported lazily, when a stop or the exit
needs it. It

1. reads ``launch.bin`` (marshal: argv, env, cwd, grace) from REPLICA_DIR and writes
   ``shim.json``;
2. starts the command in its own session and process group, stdout and stderr appended to
   ``log``; ``child.json`` records the pid;
3. writes one line to START_FD (``ok`` or ``error ...``) so the launcher knows the replica
   started, then closes it;
4. on SIGTERM/SIGINT forwards SIGTERM to the command's process group and, after the grace
   period, SIGKILL. The server writes the time of that SIGKILL (``killAt``) into ``stop``
   before it signals, so ``stop(grace_seconds=...)`` can shorten the gang's grace; a later,
   earlier ``killAt`` (another SIGTERM) moves the SIGKILL forward;
5. when the command exits, kills what is left of its process group (as a container's
   processes all end with it) and writes ``exit.json`` atomically: the outcome survives
   a server that is down at that moment.

The launcher holds an exclusive ``flock`` on ``lock`` before it starts the shim and passes
the locked descriptor on; the shim holds it until it exits. "Lock held" therefore means
"a shim for this replica is alive", with no race and no confusion from reused PIDs.

Fork server: ``python -S -I shim.py --serve SOCKET_FD`` runs a small process that forks a
shim for each request received on a Unix socket (the replica directory, with the lock and
start descriptors passed as SCM_RIGHTS), so that a launch costs a fork of this small,
single-threaded process instead of starting an interpreter. Each shim calls ``setsid`` and
lives on when the fork server or the lumiflow server ends; the fork server ends when its
socket closes (the lumiflow server is gone).
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]  # the C module: no enum import
import errno
import marshal
import os
import sys
import time


class _State:
    stop_requested = False
    child = 0
    grace = 30.0
    replica_dir = ""
    kill_at = 0.0  # wall-clock time of the SIGKILL once a stop was requested


_state = _State()


def _write_text(path: str, text: str) -> None:
    """Atomic (rename) but not fsynced: the files must survive the server, not the machine."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_json(path: str, value: object) -> None:
    import json  # off the start path

    _write_text(path, json.dumps(value))


def _kill_deadline() -> float:
    """The ``killAt`` the server wrote into ``stop``, else the gang's grace from now."""
    import json  # off the start path

    default = time.time() + _state.grace
    try:
        with open(os.path.join(_state.replica_dir, "stop")) as fh:
            value = json.load(fh).get("killAt")
    except (OSError, ValueError, AttributeError):
        return default
    return float(value) if isinstance(value, int | float) else default


def _on_term(signum: int, frame: object) -> None:
    child = _state.child
    if not child:
        return
    deadline = _kill_deadline()
    if _state.stop_requested:
        if deadline >= _state.kill_at:
            return
    else:
        _state.stop_requested = True
        try:
            os.killpg(child, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _state.kill_at = deadline
    signal.setitimer(signal.ITIMER_REAL, max(0.001, deadline - time.time()))


def _on_alarm(signum: int, frame: object) -> None:
    child = _state.child
    if child:
        try:
            os.killpg(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _spawn(
    argv: list[str], env: dict[str, str], cwd: str | None, log_fd: int
) -> tuple[int, dict[str, object] | None]:
    """fork+exec with a close-on-exec pipe that carries the exec error, as subprocess does."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(err_r)
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            if cwd:
                os.chdir(cwd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            # Nothing else of the shim's reaches the command: above all not the inherited
            # ``lock`` descriptor, which would keep the replica "alive" after its shim died.
            os.closerange(3, err_w)
            os.closerange(err_w + 1, os.sysconf("SC_OPEN_MAX"))
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            code = exc.errno or 1
            message = f"{exc.strerror}: {argv[0]}"
            try:
                os.write(err_w, marshal.dumps({"errno": code, "message": message}))
            finally:
                os._exit(127 if code == errno.ENOENT else 126)
        except BaseException:
            os._exit(126)
    os.close(err_w)
    data = b""
    while True:
        part = os.read(err_r, 4096)
        if not part:
            break
        data += part
    os.close(err_r)
    if data:
        os.waitpid(pid, 0)
        return 0, marshal.loads(data)
    return pid, None


def main() -> None:
    if sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        run(sys.argv[1], int(sys.argv[2]))


def serve(sock_fd: int) -> None:
    """The fork server's loop (see the module docstring)."""
    import socket

    sock = socket.socket(fileno=sock_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # shims are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(sock, 8192, 2)
        except (OSError, ValueError):
            return
        if not message:
            return  # the lumiflow server closed its end
        replica_dir = message.decode()
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            sock.sendall(b"0\n")
            continue
        lock_fd, start_fd = fds
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.setsid()
                os.chdir(replica_dir)
                out = os.open(
                    os.path.join(replica_dir, "shim.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
                )
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(out, 2)
                os.close(out)
                os.close(null)
                run(replica_dir, start_fd)
            except BaseException as exc:  # a shim must never return into the server loop
                code = 1
                try:
                    os.write(2, f"lumiflow shim: {exc!r}\n".encode())
                except OSError:
                    pass
            finally:
                os._exit(code)
        os.close(lock_fd)
        os.close(start_fd)
        sock.sendall(f"{pid}\n".encode())


def run(replica_dir: str, start_fd: int) -> None:
    with open(os.path.join(replica_dir, "launch.bin"), "rb") as fh:
        launch = marshal.load(fh)
    _state.grace = float(launch.get("grace", 30.0))
    _state.replica_dir = replica_dir
    started = time.time()
    _write_text(os.path.join(replica_dir, "shim.json"), f'{{"pid": {os.getpid()}, "startedAt": {started!r}}}')
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    log_fd = os.open(os.path.join(replica_dir, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid, error = _spawn(launch["argv"], launch["env"], launch.get("cwd"), log_fd)
    exit_path = os.path.join(replica_dir, "exit.json")
    if error is not None:
        os.write(log_fd, f"lumiflow: cannot start {launch['argv'][0]!r}: {error['message']}\n".encode())
        os.close(log_fd)
        code = 127 if error.get("errno") == errno.ENOENT else 126
        _write_json(
            exit_path,
            {
                "exitCode": code,
                "reason": "StartError",
                "message": error["message"],
                "startedAt": started,
                "finishedAt": time.time(),
            },
        )
        os.write(start_fd, b"ok\n")
        os.close(start_fd)
        return
    os.close(log_fd)
    _state.child = pid
    _write_text(
        os.path.join(replica_dir, "child.json"), f'{{"pid": {pid}, "pgid": {pid}, "startedAt": {started!r}}}'
    )
    try:
        os.write(start_fd, b"ok\n")
        os.close(start_fd)
    except OSError:
        pass  # the launcher is gone; the replica runs on regardless
    # A stop request that arrived before the child existed.
    if os.path.exists(os.path.join(replica_dir, "stop")):
        _on_term(signal.SIGTERM, None)

    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            status = 0
            break
    signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        os.killpg(pid, signal.SIGKILL)  # leftovers of the replica's process group
    except (ProcessLookupError, PermissionError):
        pass
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        code = 128 + sig
        message = f"killed by signal {sig} ({signal.strsignal(sig) or 'unknown'})"
    else:
        code = os.WEXITSTATUS(status)
        message = f"exited with code {code}"
    if _state.stop_requested:
        reason = "Stopped"
    elif code == 0:
        reason = "Completed"
    elif os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        reason = "Killed"
    else:
        reason = "Error"
    _write_json(
        exit_path,
        {
            "exitCode": code,
            "reason": reason,
            "message": message,
            "startedAt": started,
            "finishedAt": time.time(),
        },
    )


if __name__ == "__main__":
    main()
