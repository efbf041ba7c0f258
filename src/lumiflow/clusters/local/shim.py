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
import io  # loaded at start-up anyway (the standard streams)
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
    warm = False  # this shim was forked by a warm fork server (site and preloads imported)


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


class _RunPython(BaseException):
    """Raised in a warm shim's child to unwind to :func:`main`, which runs the Python program
    at the interpreter's top level (so its exit, threads and atexit work as in ``python``)."""

    def __init__(self, launch: dict[str, object]) -> None:
        super().__init__()
        self.launch = launch


def _fork_python(launch: dict[str, object], log_fd: int) -> int:
    """Forks the replica's Python program off this warm shim (see :func:`_run_python`)."""
    pid = os.fork()
    if pid == 0:  # child: set up as _spawn does, then unwind to main()
        try:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            cwd = launch.get("cwd")
            if cwd:
                os.chdir(str(cwd))
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # above all the ``lock``
        except BaseException:
            os._exit(126)
        raise _RunPython(launch)
    return pid


def _set_cmdline(argv: list[str]) -> None:
    """Shows ``argv`` as this process's command line (``ps``, ``/proc/PID/cmdline``) by
    rewriting the interpreter's argument area in place, as ``setproctitle`` does: a forked
    replica shows its own command, not the fork server's. Longer commands are cut to the area
    (the warm fork server starts with room to spare). Best effort."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
        data = b"\0".join(os.fsencode(a) for a in argv)[: end - start - 1]
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(data.ljust(end - start, b"\0"))
    except (OSError, ValueError, IndexError):
        pass


def _stdio(fd: int, mode: str, like: object, unbuffered: bool) -> io.TextIOWrapper:
    """A standard stream as python makes it (``-u``: unbuffered bytes, written through)."""
    raw = io.FileIO(fd, mode, closefd=False)
    buffer: io.RawIOBase | io.BufferedIOBase
    buffer = io.BufferedReader(raw) if mode == "r" else raw if unbuffered else io.BufferedWriter(raw)
    return io.TextIOWrapper(
        buffer,
        encoding=getattr(like, "encoding", None),
        errors=getattr(like, "errors", None),
        line_buffering=fd == 2 and not unbuffered,
        write_through=unbuffered,
    )


def _run_python(launch: dict[str, object]) -> None:
    """Runs ``python [-u] SCRIPT ARGS`` or ``python [-u] -m MODULE ARGS`` in this forked, warm
    interpreter as ``python`` would have: the environment, standard streams, ``sys.argv``,
    ``sys.path[0]`` and a fresh ``__main__``; an uncaught exception prints its traceback
    (without this module's frames) and exits 1. Never returns (see :func:`_finish`)."""
    import importlib
    import importlib.machinery
    import runpy
    import types

    spec = launch["python"]
    assert isinstance(spec, dict)
    env = launch["env"]
    assert isinstance(env, dict)
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():  # most are the fork server's already
        if os.environ.get(key) != value:
            os.environ[key] = value
    unbuffered = bool(spec.get("unbuffered")) or bool(env.get("PYTHONUNBUFFERED"))
    sys.stdin = sys.__stdin__ = _stdio(0, "r", sys.stdin, False)  # type: ignore[misc]
    sys.stdout = sys.__stdout__ = _stdio(1, "w", sys.stdout, unbuffered)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = _stdio(2, "w", sys.stderr, unbuffered)  # type: ignore[misc]
    argv = list(launch["argv"])  # type: ignore[call-overload]
    sys.orig_argv = argv
    _set_cmdline(argv)
    target = str(spec["target"])
    args = [str(a) for a in spec.get("args", [])]
    importlib.invalidate_caches()
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    code = 0
    try:
        if spec["kind"] == "module":
            sys.argv = ["-m", *args]
            sys.path.insert(0, os.getcwd())
            runpy._run_module_as_main(target, alter_argv=True)  # type: ignore[attr-defined]
        elif os.path.isfile(target):
            sys.argv = [target, *args]
            sys.path.insert(0, os.path.dirname(os.path.realpath(target)))
            program, filename = runpy._get_code_from_file("__main__", target)  # type: ignore[attr-defined]
            main.__dict__.update(
                __file__=filename,
                __cached__=None,
                __loader__=importlib.machinery.SourceFileLoader("__main__", filename),
                __package__=None,
                __spec__=None,
            )
            exec(program, main.__dict__)
        elif os.path.exists(target):  # a folder or zip file with __main__.py
            sys.argv = [target, *args]
            runpy.run_path(target, run_name="__main__")
        else:
            sys.stderr.write(
                f"{sys.executable}: can't open file {os.path.abspath(target)!r}: "
                "[Errno 2] No such file or directory\n"
            )
            code = 2
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException as exc:
        tb = exc.__traceback__
        # Drop the frames of this module and runpy's: the traceback starts in the program.
        while tb is not None and (
            tb.tb_frame.f_globals is globals() or tb.tb_frame.f_globals.get("__name__") == "runpy"
        ):
            tb = tb.tb_next
        try:
            sys.excepthook(type(exc), exc.with_traceback(tb), tb)  # the hook prints exc's own
        except BaseException:  # a broken hook: python prints nothing more either
            pass
        code = -signal.SIGINT if isinstance(exc, KeyboardInterrupt) else 1
        del exc, tb
    _finish(code, main)


def _exit_code(value: object) -> int:
    """``SystemExit.code`` as python's exit status (a message is printed, and means 1)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    try:
        sys.stderr.write(f"{value}\n")
    except BaseException:
        pass
    return 1


def _finish(code: int, main: object) -> None:
    """Ends the program as the interpreter's exit would, for what a program can observe: its
    non-daemon threads are joined, atexit handlers run, its ``__main__`` globals released
    (so that unclosed files are flushed and ``__del__`` runs, values set to None in Python's
    order), garbage collected, the standard streams flushed. The warm interpreter's own
    modules, which the program did not create, are not torn down: that teardown touches
    every page shared with the fork server (~9 ms here) for nothing the program would see.
    A KeyboardInterrupt ends the process by SIGINT, as python does."""
    import atexit
    import gc

    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    atexit._run_exitfuncs()
    _flush_stdio()
    namespace = getattr(main, "__dict__", {})
    for keys in (
        [k for k in namespace if k.startswith("_") and not k.startswith("__")],
        [k for k in namespace if k != "__builtins__"],
    ):
        for key in keys:
            try:
                namespace[key] = None
            except BaseException:
                pass
    gc.collect()
    _flush_stdio()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    os._exit(code)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:  # as python: a failed flush at exit is ignored
            pass


def main() -> None:
    launch = None
    try:
        if sys.argv[1] == "--serve":
            preload = sys.argv[4].split(",") if sys.argv[3:4] == ["--preload"] else None
            serve(int(sys.argv[2]), preload)
        else:
            run(sys.argv[1], int(sys.argv[2]))
    except _RunPython as exc:  # a warm shim's child, which becomes the replica's program
        launch = exc.launch
    if launch is not None:  # outside the except: the program must not see _RunPython as context
        _run_python(launch)


def serve(sock_fd: int, preload: list[str] | None = None) -> None:
    """The fork server's loop (see the module docstring). With ``preload`` (a warm fork
    server, started with site-packages), imports those modules first, and its shims run
    ``python`` commands by forking (see :func:`_run_python`)."""
    import socket

    if preload is not None:
        _warm_up(preload)
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
            except _RunPython:
                raise  # the replica's program, in the shim's child: it unwinds to main()
            except BaseException as exc:  # a shim must never return into the server loop
                code = 1
                try:
                    os.write(2, f"lumiflow shim: {exc!r}\n".encode())
                except OSError:
                    pass
            os._exit(code)
        os.close(lock_fd)
        os.close(start_fd)
        sock.sendall(f"{pid}\n".encode())


def _warm_up(preload: list[str]) -> None:
    """Imports what forked programs will need (a failed import is skipped: the program
    imports it itself), then freezes the heap so that forks share its pages."""
    import gc
    import importlib
    import importlib.machinery  # used by every forked program
    import pkgutil  # noqa: F401  # runpy's _get_code_from_file imports it: ~2.5 ms per program
    import runpy  # noqa: F401
    import types  # noqa: F401

    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        del sys.path[0]  # ``python shim.py`` put the shim's folder first
    _state.warm = True
    _set_cmdline([sys.executable, "lumiflow-fork-server", "--warm"])  # ``--room`` made space for commands
    for name in preload:
        if name:
            try:
                importlib.import_module(name)
            except Exception as exc:
                os.write(2, f"lumiflow fork server: cannot preload {name}: {exc!r}\n".encode())
    gc.collect()
    gc.freeze()


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
    if _state.warm and launch.get("python"):
        pid, error = _fork_python(launch, log_fd), None
    else:
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
