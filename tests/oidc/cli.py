"""Running `lumi login` in the background and reading what it prints as it prints it (the
device flow shows a URL and a code, then waits for the user)."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
from pathlib import Path

from tests.helpers import LUMI, ROOT, wait_until


def start_login(url: str, home: Path) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    env = {
        **os.environ,
        "LUMIFLOW_HOME": str(home),
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }
    proc = subprocess.Popen(
        [*LUMI, "login", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=str(ROOT),
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def read_until(lines: queue.Queue[str], pattern: str, seen: list[str]) -> re.Match[str]:
    def found() -> re.Match[str] | None:
        while not lines.empty():
            seen.append(lines.get())
        return re.search(pattern, "".join(seen))

    return wait_until(found, timeout=60, interval=0.05, message=f"{pattern!r} in: {''.join(seen)}")
