"""Python replicas forked off the local cluster's warm fork server (``clusters/local/warm.py``):
the program must see what ``python SCRIPT`` / ``python -m MODULE`` would have given it, and
anything the fork cannot reproduce must be exec'd as before."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from lumiflow.clusters import ClusterBackend
from lumiflow.clusters.local.warm import python_launch
from tests.clusters.support import BackendFactory, gang, read_all, replica, wait_log, wait_terminal
from tests.helpers import pid_alive, wait_until

PYTHON = sys.executable

# What the program sees of itself; "forked" tells the two start paths apart: a warm fork
# has the preloaded runner imported before the program ran, an exec'd interpreter has not.
PROBE = """
import json, os, sys
print(json.dumps({
    "name": __name__,
    "file": globals().get("__file__"),
    "argv": sys.argv,
    "path0": sys.path[0],
    "cwd": os.getcwd(),
    "env": dict(os.environ),
    "forked": "lumiflow.runtime.component" in sys.modules,
    "main_is_me": sys.modules["__main__"].__dict__ is globals(),
    "stdin": sys.stdin.read(),
    "cmdline": open("/proc/self/cmdline", "rb").read().rstrip(b"\\0").decode().split("\\0")[:4],
    "context": repr(sys.exc_info()[1]),
}, default=repr))
"""


def _script(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _run(
    backend: ClusterBackend, factory: BackendFactory, argv: tuple[str, ...], **kw: object
) -> tuple[int, bytes]:
    gid = factory.gang_id()
    backend.launch(gang(gid, replica("main", argv, **kw)))  # type: ignore[arg-type]
    status = wait_terminal(backend, gid, timeout=20).replicas["main"]
    assert status.exit_code is not None
    return status.exit_code, read_all(backend, gid, "main")


@pytest.mark.timeout(60)
def test_a_script_forked_sees_what_python_would_give_it(
    local_factory: BackendFactory, tmp_path: Path
) -> None:
    backend = local_factory()
    script = _script(tmp_path / "code", "probe.py", PROBE)
    work = tmp_path / "work"
    work.mkdir()
    code, out = _run(
        backend,
        local_factory,
        (PYTHON, str(script), "--lr=0.1", "two words"),
        env={"MY_VAR": "x", "PYTHONUNBUFFERED": "1"},
        working_dir=work,
    )
    assert code == 0, out
    seen = json.loads(out)
    assert seen["forked"] is True
    assert seen["name"] == "__main__" and seen["main_is_me"] is True
    assert seen["file"] == str(script)
    assert seen["argv"] == [str(script), "--lr=0.1", "two words"]
    assert seen["path0"] == str(script.parent)
    assert seen["cwd"] == str(work)
    assert seen["env"]["MY_VAR"] == "x"
    assert "LUMIFLOW_HOME" not in seen["env"] or seen["env"]["LUMIFLOW_HOME"] == os.environ.get(
        "LUMIFLOW_HOME"
    )
    assert seen["stdin"] == ""
    assert seen["context"] == "None"  # no exception of the fork's machinery in flight
    # ps shows the replica's own command, not the fork server's.
    assert seen["cmdline"] == [PYTHON, str(script), "--lr=0.1", "two words"]

    # The same program exec'd (warm_python off) sees the same, but for the preloaded module.
    cold = local_factory(options={"capacity": {"cpu": 4}, "warm_python": False})
    code, out = _run(
        cold,
        local_factory,
        (PYTHON, str(script), "--lr=0.1", "two words"),
        env={"MY_VAR": "x"},
        working_dir=work,
    )
    exec_seen = json.loads(out)
    assert code == 0 and exec_seen["forked"] is False
    for key in ("name", "file", "argv", "path0", "cwd", "main_is_me", "stdin", "context"):
        assert exec_seen[key] == seen[key], key
    assert {k: v for k, v in exec_seen["env"].items() if k != "PYTHONUNBUFFERED"} == {
        k: v for k, v in seen["env"].items() if k != "PYTHONUNBUFFERED"
    }


@pytest.mark.timeout(60)
def test_a_module_forked_runs_with_the_working_directory_on_its_path(
    local_factory: BackendFactory, tmp_path: Path
) -> None:
    backend = local_factory()
    work = tmp_path / "work"
    _script(work, "probe_mod.py", PROBE)
    code, out = _run(backend, local_factory, (PYTHON, "-u", "-m", "probe_mod", "a"), working_dir=work)
    assert code == 0, out
    seen = json.loads(out)
    assert seen["forked"] is True
    assert seen["name"] == "__main__"
    assert seen["argv"] == [str(work / "probe_mod.py"), "a"]
    assert seen["path0"] == str(work)

    code, out = _run(backend, local_factory, (PYTHON, "-m", "no_such_module_here"), working_dir=work)
    assert code == 1
    assert b"No module named no_such_module_here" in out


@pytest.mark.timeout(60)
def test_exit_codes_tracebacks_threads_and_atexit_are_those_of_python(
    local_factory: BackendFactory, tmp_path: Path
) -> None:
    backend = local_factory()
    code, out = _run(
        backend, local_factory, (PYTHON, str(_script(tmp_path, "exit3.py", "import sys; sys.exit(3)")))
    )
    assert (code, out) == (3, b"")
    code, out = _run(
        backend, local_factory, (PYTHON, str(_script(tmp_path, "msg.py", "raise SystemExit('bad input')")))
    )
    assert (code, out) == (1, b"bad input\n")

    failing = _script(
        tmp_path, "boom.py", "def f():\n    raise ValueError('boom')\nprint('before', flush=True)\nf()\n"
    )
    code, out = _run(backend, local_factory, (PYTHON, str(failing)))
    assert code == 1
    text = out.decode()
    assert text.startswith("before\nTraceback (most recent call last):\n")
    assert f'File "{failing}", line 4, in <module>' in text
    assert text.rstrip().endswith("ValueError: boom")
    assert "shim.py" not in text and "runpy" not in text

    # A non-daemon thread finishes before the exit, atexit handlers run, buffered output is flushed.
    ending = _script(
        tmp_path,
        "ending.py",
        "import atexit, sys, threading, time\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "def late():\n    time.sleep(0.3)\n    print('thread done')\n"
        "threading.Thread(target=late).start()\n"
        "sys.stdout.write('buffered ')\n",
    )
    code, out = _run(backend, local_factory, (PYTHON, str(ending)))
    assert (code, out) == (0, b"buffered thread done\natexit ran\n")

    # A file the program never closed is flushed, and __del__ of its globals runs, at exit.
    unclosed = _script(
        tmp_path,
        "unclosed.py",
        "out = open('unclosed.txt', 'w')\nout.write('all of it')\n"
        "class Noisy:\n    def __del__(self):\n        print('del ran')\nkeep = Noisy()\n",
    )
    code, out = _run(backend, local_factory, (PYTHON, str(unclosed)), working_dir=tmp_path)
    assert (code, out) == (0, b"del ran\n")
    assert (tmp_path / "unclosed.txt").read_text() == "all of it"

    code, out = _run(backend, local_factory, (PYTHON, str(tmp_path / "missing.py")))
    assert code == 2
    assert b"can't open file" in out and b"missing.py" in out


@pytest.mark.timeout(60)
def test_stop_and_a_killed_shim_end_a_forked_program(local_factory: BackendFactory, tmp_path: Path) -> None:
    backend = local_factory()
    script = _script(
        tmp_path,
        "wait.py",
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('term', flush=True), sys.exit(7)))\n"
        "print('ready', flush=True)\n"
        "while True:\n    time.sleep(0.05)\n",
    )
    gid = local_factory.gang_id()
    backend.launch(gang(gid, replica("main", (PYTHON, str(script)))))
    wait_log(backend, gid, "main", b"ready\n")
    backend.stop(gid, 1)
    main = wait_terminal(backend, gid).replicas["main"]
    assert (main.exit_code, main.reason) == (7, "Stopped")
    assert read_all(backend, gid, "main").endswith(b"term\n")

    gid = local_factory.gang_id()
    launched = backend.launch(gang(gid, replica("main", (PYTHON, str(script)))))
    wait_log(backend, gid, "main", b"ready\n")
    child = launched.replicas["main"].pid
    assert child is not None
    rdir = backend.home / "clusters" / backend.name / gid / "1" / "main"
    shim = int(json.loads((rdir / "shim.json").read_text())["pid"])
    os.kill(shim, signal.SIGKILL)
    assert wait_terminal(backend, gid).replicas["main"].reason == "SupervisorLost"
    wait_until(lambda: not pid_alive(child), timeout=5, message="the forked program to be killed")


@pytest.mark.timeout(60)
def test_forked_programs_get_their_own_random_state(local_factory: BackendFactory, tmp_path: Path) -> None:
    backend = local_factory()
    script = _script(tmp_path, "rand.py", "import random, tempfile; print(random.random())\n")
    outs = {_run(backend, local_factory, (PYTHON, str(script)))[1] for _ in range(3)}
    assert len(outs) == 3


@pytest.mark.timeout(30)
def test_what_is_not_forked(tmp_path: Path) -> None:
    env = {"PATH": str(Path(PYTHON).parent) + ":/usr/bin", "LANG": "C.UTF-8"}
    plan = python_launch([PYTHON, "x.py", "-v"], env, python=PYTHON, server_env=env)
    assert plan == {"kind": "path", "target": "x.py", "args": ["-v"], "unbuffered": False}
    assert python_launch(["python", "-m", "pkg.mod"], env, python=PYTHON, server_env=env) == {
        "kind": "module",
        "target": "pkg.mod",
        "args": [],
        "unbuffered": False,
    }
    refused = [
        (["/bin/sh", "-c", "python x.py"], env),  # not the interpreter
        ([PYTHON, "-c", "print(1)"], env),  # an option the fork does not reproduce
        ([PYTHON, "-X", "dev", "x.py"], env),
        ([PYTHON], env),  # reads stdin
        ([PYTHON, "-m"], env),
        ([PYTHON, "x.py"], {**env, "PYTHONPATH": "/elsewhere"}),  # read at start-up
        ([PYTHON, "x.py"], {**env, "LANG": "de_DE.UTF-8"}),
        ([PYTHON, "x.py"], {**env, "TZ": "Europe/Zurich"}),
        (["/usr/bin/python3-not-ours", "x.py"], env),
    ]
    for argv, job_env in refused:
        assert python_launch(argv, job_env, python=PYTHON, server_env=env) is None, argv
    # PYTHONUNBUFFERED is set in the forked program itself.
    assert python_launch([PYTHON, "x.py"], {**env, "PYTHONUNBUFFERED": "1"}, python=PYTHON, server_env=env)


@pytest.mark.timeout(60)
def test_a_job_environment_the_fork_cannot_reproduce_is_exec_d(
    local_factory: BackendFactory, tmp_path: Path
) -> None:
    backend = local_factory()
    script = _script(tmp_path, "probe.py", PROBE)
    extra = tmp_path / "extra"
    extra.mkdir()
    code, out = _run(backend, local_factory, (PYTHON, str(script)), env={"PYTHONPATH": str(extra)})
    assert code == 0, out
    seen = json.loads(out)
    assert seen["forked"] is False
    assert str(extra) in seen["env"]["PYTHONPATH"]


@pytest.mark.timeout(60)
def test_bad_preload_option_is_refused_and_a_missing_module_is_skipped(
    local_factory: BackendFactory, tmp_path: Path
) -> None:
    from lumiflow.common.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as err:
        local_factory(options={"preload": "json"})
    assert err.value.field is not None and err.value.field.endswith("preload")
    backend = local_factory(options={"capacity": {"cpu": 4}, "preload": ["no_such_preload_module", "json"]})
    # The module that exists was imported before the program ran (python alone does not).
    probe = _script(tmp_path, "ok.py", "import sys; print('json' in sys.modules)")
    code, out = _run(backend, local_factory, (PYTHON, str(probe)))
    assert (code, out) == (0, b"True\n")
