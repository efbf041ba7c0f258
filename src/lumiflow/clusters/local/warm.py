"""Which replicas a warm fork server may start by forking, instead of exec'ing ``python``.

Starting an interpreter with site-packages costs ~20-30 ms here, and importing what a step
or a trial needs (``lumiflow.runtime``, ``json``, ...) as much again: on a pipeline step or a
short trial that is most of its time. A warm fork server (``shim.py --serve ... --preload``)
has done both once; a replica whose command is ``python [-u] SCRIPT ARGS...`` or
``python [-u] -m MODULE ARGS...`` is started by forking it, then setting the environment,
standard streams, ``sys.argv``, ``sys.path[0]`` and ``__main__`` as ``python`` would (see
``shim._run_python``). Each replica is still a process of its own.

A command is forked only when the result is the program ``python`` would run: the
interpreter is the cluster's (``python`` names it, or a name that resolves to it on the
replica's PATH), no other interpreter option than ``-u`` is given, and every variable the
interpreter reads at start-up (``PYTHON*`` but ``PYTHONUNBUFFERED``, the locale's, ``TZ``,
``HOME``) has the value the warm server started with. Anything else is exec'd as before.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

#: What a warm fork server imports before it forks: the pipeline step runner (standard
#: library below it). Every module preloaded makes each fork dearer (the page tables of a
#: bigger process: +0.65 ms per fork with ``lumiflow.runtime.reporting``'s http.client), so
#: what only some programs use is left for them to import.
DEFAULT_PRELOAD = ("lumiflow.runtime.component",)

#: Read at start-up besides PYTHON* and LC_*: the locale, the time zone, the user site.
_STARTUP_VARS = ("LANG", "LANGUAGE", "TZ", "HOME")


def _startup_keys(env: Mapping[str, str]) -> set[str]:
    return {
        k
        for k in env
        if (k.startswith("PYTHON") and k != "PYTHONUNBUFFERED") or k.startswith("LC_") or k in _STARTUP_VARS
    }


def _same_interpreter(name: str, python: str, env: Mapping[str, str]) -> bool:
    if name == python:
        return True
    if "/" in name:
        found: str | None = name
    else:
        found = shutil.which(name, path=env.get("PATH", ""))
    if not found:
        return False
    try:
        return os.path.samefile(found, python)
    except OSError:
        return False


def python_launch(
    argv: Sequence[str], env: Mapping[str, str], *, python: str, server_env: Mapping[str, str]
) -> dict[str, Any] | None:
    """The fork plan for ``argv`` (kind ``path`` or ``module``, target, args, unbuffered), or
    None when the command must be exec'd (see the module docstring)."""
    if len(argv) < 2 or not _same_interpreter(argv[0], python, env):
        return None
    rest = list(argv[1:])
    unbuffered = False
    if rest[0] == "-u":
        unbuffered = True
        rest = rest[1:]
    if not rest:
        return None
    if rest[0] == "-m":
        if len(rest) < 2 or not rest[1] or rest[1].startswith("-"):
            return None
        plan = {"kind": "module", "target": rest[1], "args": rest[2:]}
    elif rest[0].startswith("-") or not rest[0]:
        return None  # another interpreter option (or reading stdin): exec it
    else:
        plan = {"kind": "path", "target": rest[0], "args": rest[1:]}
    for key in _startup_keys(env) | _startup_keys(server_env):
        if env.get(key) != server_env.get(key):
            return None
    return {**plan, "unbuffered": unbuffered}
