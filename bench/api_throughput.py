"""API throughput: GETs/s and creates/s of lumiflow's HTTP API versus the framework floor.

Two servers run side by side in one run, each a single uvicorn process on SQLite:

* lumiflow (``lumi up``, embedded defaults: SQLite in WAL mode, controllers running);
* the peer: a minimal FastAPI + uvicorn app written here (``--serve-peer``) with the same
  two routes, that answers a GET with one row read from SQLite and a POST with one insert,
  served the same way (uvicorn, one worker, sync GET handler in the thread pool, POST body
  read asynchronously and inserted in the thread pool, bearer header checked, no access log).

Load: ``wrk`` when installed (Lua scripts send the bearer header and give every POST body a
unique name), else an asyncio httpx load generator in a separate process. Each phase runs
for ``--duration`` seconds with ``--connections`` concurrent clients:

* GET one suspended TrainingJob (``GET /api/v1/profiles/admin/trainingjobs/NAME``);
* create suspended TrainingJobs with unique names (``POST /api/v1/apply``).

Between phases the benchmark waits until the measured server is idle again; for lumiflow
after the create phase that wait is its controllers' backlog (reported as ``settle_s``).

Goals: >= 1,000 GET/s and >= 200 creates/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from _harness import (
    LumiServer,
    clean_env,
    console,
    cpu_seconds,
    emit_json,
    free_port,
    machine,
    stop_process,
    suspended_job,
    table,
    wait_idle,
    wait_until,
)

GOAL_GET_RPS = 1000.0
GOAL_CREATE_RPS = 200.0
GET_NAME = "bench-get"
GET_PATH = f"/api/v1/profiles/admin/trainingjobs/{GET_NAME}"
APPLY_PATH = "/api/v1/apply"
NAME_SLOT = "NAME-SLOT"

# --- the peer: FastAPI + uvicorn + sqlite3, nothing else ----------------------------------------
# (FastAPI and Request are imported at module level: with postponed annotations FastAPI
# resolves a handler's annotations in the module's globals.)


def build_peer_app(db_path: str, token: str) -> FastAPI:
    setup = sqlite3.connect(db_path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute(
        "CREATE TABLE IF NOT EXISTS objects (id INTEGER PRIMARY KEY, profile TEXT NOT NULL, "
        "name TEXT NOT NULL, body TEXT NOT NULL, UNIQUE(profile, name))"
    )
    setup.close()
    local = threading.local()
    expected = f"Bearer {token}"

    def conn() -> sqlite3.Connection:
        c = getattr(local, "conn", None)
        if c is None:
            c = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False, timeout=30)
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA busy_timeout=30000")
            local.conn = c
        return c

    def check(request: Request) -> None:
        if request.headers.get("authorization") != expected:
            raise HTTPException(status_code=401)

    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/profiles/{profile}/trainingjobs/{name}")
    def get(profile: str, name: str, request: Request) -> Any:
        check(request)
        row = (
            conn()
            .execute("SELECT body FROM objects WHERE profile = ? AND name = ?", (profile, name))
            .fetchone()
        )
        if row is None:
            raise HTTPException(status_code=404)
        return json.loads(row[0])

    @app.post("/api/v1/apply", status_code=201)
    async def apply(request: Request) -> Any:
        check(request)
        doc = await request.json()

        def insert() -> None:
            c = conn()
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute(
                    "INSERT INTO objects (profile, name, body) VALUES (?, ?, ?)",
                    ("admin", doc["metadata"]["name"], json.dumps(doc)),
                )
            except Exception:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

        await run_in_threadpool(insert)
        return doc

    return app


def serve_peer(port: int, db_path: str, token: str) -> None:
    app = build_peer_app(db_path, token)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class PeerServer:
    def __init__(self, workdir: Path, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.db = workdir / "peer.db"
        self.log_path = workdir / "peer.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> PeerServer:
        argv = [sys.executable, __file__, "--serve-peer", str(self.port), "--peer-db", str(self.db)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**clean_env(), "PEER_TOKEN": self.token},
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"peer exited: {self.log_path.read_text()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=60, interval=0.1, what="the peer server")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc)


# --- load generators ------------------------------------------------------------------------------

WRK_REPORT = r"""
done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""

WRK_POST = r"""
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local name = string.format("%s-%d-%d", PREFIX, tid, counter)
  return wrk.format("POST", "/api/v1/apply", nil, string.format(BODY, name))
end
"""


def wrk_scripts(workdir: Path, prefix: str) -> tuple[Path, Path]:
    body = json.dumps(suspended_job(NAME_SLOT), separators=(",", ":")).replace(NAME_SLOT, "%s")
    get_script = workdir / "get.lua"
    get_script.write_text(WRK_REPORT)
    post_script = workdir / "post.lua"
    post_script.write_text(f'PREFIX = "{prefix}"\nBODY = [==[{body}]==]\n{WRK_POST}{WRK_REPORT}')
    return get_script, post_script


def run_wrk(
    *, url: str, path: str, script: Path, token: str, duration: float, connections: int, threads: int
) -> dict[str, Any]:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "30s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        "-s",
        str(script),
        url + path,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120, check=False)
    match = re.search(r"^WRKJSON (\{.*\})$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    ok = raw["requests"] - raw["status"]
    return {
        "requests": raw["requests"],
        "ok": ok,
        "non_2xx": raw["status"],
        "socket_errors": errors,
        "seconds": seconds,
        "rps": ok / seconds,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "mean_ms": raw["mean_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }


async def _httpx_load(
    url: str, kind: str, token: str, duration: float, connections: int, prefix: str
) -> None:
    latencies: list[float] = []
    non_2xx = 0
    errors = 0
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        start = time.perf_counter()
        deadline = start + duration

        async def worker(wid: int) -> None:
            nonlocal non_2xx, errors
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                t = time.perf_counter()
                try:
                    if kind == "get":
                        r = await client.get(GET_PATH)
                    else:
                        r = await client.post(APPLY_PATH, json=suspended_job(f"{prefix}-{wid}-{n}"))
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t)
                if r.status_code >= 300:
                    non_2xx += 1

        await asyncio.gather(*(worker(i) for i in range(connections)))
        seconds = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] * 1000 if latencies else 0.0

    print(
        "LOADJSON "
        + json.dumps(
            {
                "requests": len(latencies),
                "ok": len(latencies) - non_2xx,
                "non_2xx": non_2xx,
                "socket_errors": errors,
                "seconds": seconds,
                "rps": (len(latencies) - non_2xx) / seconds,
                "p50_ms": pct(50),
                "p90_ms": pct(90),
                "p99_ms": pct(99),
                "mean_ms": sum(latencies) / max(1, len(latencies)) * 1000,
                "max_ms": latencies[-1] * 1000 if latencies else 0.0,
            }
        ),
        flush=True,
    )


def run_httpx(
    *, url: str, kind: str, token: str, duration: float, connections: int, prefix: str
) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--load-gen", kind, "--load-url", url, "--prefix", prefix]
    argv += ["--duration", str(duration), "--connections", str(connections)]
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=False,
        env={**clean_env(), "LOAD_TOKEN": token},
    )
    match = re.search(r"^LOADJSON (\{.*\})$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"load generator failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    return dict(json.loads(match.group(1)))


# --- the run ----------------------------------------------------------------------------------------


def count_jobs(client: httpx.Client) -> int:
    total, token = 0, None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if token:
            params["continue"] = token
        page = client.get("/api/v1/profiles/admin/trainingjobs", params=params).json()
        total += len(page["items"])
        token = page.get("metadata", {}).get("continue")
        if not token:
            return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per phase [10]")
    ap.add_argument("--connections", type=int, default=16, help="concurrent clients [16]")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads [1: leave the 2nd core to servers]")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of all four phases [1]")
    ap.add_argument("--load", choices=["auto", "wrk", "httpx"], default="auto", help="load generator [auto]")
    ap.add_argument("--keep-home", action="store_true", help="keep lumiflow's temporary home")
    # Internal modes: the peer server and the httpx load generator run as separate processes.
    ap.add_argument("--serve-peer", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--peer-db", help=argparse.SUPPRESS)
    ap.add_argument("--load-gen", choices=["get", "post"], help=argparse.SUPPRESS)
    ap.add_argument("--load-url", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="c", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.serve_peer:
        serve_peer(args.serve_peer, args.peer_db, os.environ["PEER_TOKEN"])
        return
    if args.load_gen:
        asyncio.run(
            _httpx_load(
                args.load_url,
                args.load_gen,
                os.environ["LOAD_TOKEN"],
                args.duration,
                args.connections,
                args.prefix,
            )
        )
        return

    load = args.load
    if load == "auto":
        load = "wrk" if shutil.which("wrk") else "httpx"
    if load == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk), or pass --load httpx")
    run_id = uuid.uuid4().hex[:6]
    workdir = Path(tempfile.mkdtemp(prefix="lumibench-api-"))
    results: dict[str, list[dict[str, Any]]] = {}
    settle: list[float] = []
    stored_check: dict[str, int] = {}
    try:
        with LumiServer(keep=args.keep_home) as lumi, PeerServer(workdir, token="peer-" + run_id) as peer:
            with lumi.client() as c:
                c.post(APPLY_PATH, json=suspended_job(GET_NAME)).raise_for_status()
                jobs_before = count_jobs(c)
            httpx.post(
                f"{peer.url}{APPLY_PATH}",
                json=suspended_job(GET_NAME),
                headers={"Authorization": f"Bearer {peer.token}"},
            ).raise_for_status()
            servers = {"lumiflow": (lumi.url, lumi.token, lumi.pid), "peer": (peer.url, peer.token, peer.pid)}
            console.print(
                f"lumiflow {lumi.url} (pid {lumi.pid}) and peer {peer.url} (pid {peer.pid}); load: {load}, "
                f"{args.connections} connections, {args.duration:g} s per phase, {args.repeats} round(s)"
            )
            for rep in range(args.repeats):
                order = ["lumiflow", "peer"] if rep % 2 == 0 else ["peer", "lumiflow"]
                for phase in ("get", "post"):
                    for target in order:
                        url, token, pid = servers[target]
                        wait_idle(pid)
                        cpu_before = cpu_seconds(pid)
                        prefix = f"c{run_id}{rep}{target[0]}"
                        if load == "wrk":
                            get_lua, post_lua = wrk_scripts(workdir, prefix)
                            res = run_wrk(
                                url=url,
                                path=GET_PATH if phase == "get" else APPLY_PATH,
                                script=get_lua if phase == "get" else post_lua,
                                token=token,
                                duration=args.duration,
                                connections=args.connections,
                                threads=args.threads,
                            )
                        else:
                            res = run_httpx(
                                url=url,
                                kind=phase,
                                token=token,
                                duration=args.duration,
                                connections=args.connections,
                                prefix=prefix,
                            )
                        # Server CPU per request: steadier than req/s on a machine shared with
                        # other work, and 1000 / it bounds req/s for a process held to one core
                        # by the GIL.
                        res["cpu_ms_per_req"] = (
                            (cpu_seconds(pid) - cpu_before) * 1000 / max(1, res["requests"])
                        )
                        if phase == "post" and target == "lumiflow":
                            # Creates are answered before the controllers reconcile them: the
                            # rate they can be absorbed at includes draining that backlog.
                            res["settle_s"] = wait_idle(pid, timeout=600)
                            res["sustained_rps"] = res["ok"] / (res["seconds"] + res["settle_s"])
                            res["cpu_ms_per_req_with_controllers"] = (
                                (cpu_seconds(pid) - cpu_before) * 1000 / max(1, res["requests"])
                            )
                            settle.append(res["settle_s"])
                        results.setdefault(f"{target}_{phase}", []).append(res)
                        console.print(
                            f"  round {rep + 1} {target:8s} {phase:4s}: {res['rps']:8.1f}/s  "
                            f"p50 {res['p50_ms']:.1f} ms  p99 {res['p99_ms']:.1f} ms  "
                            f"server CPU {res['cpu_ms_per_req']:.2f} ms/req  "
                            f"non-2xx {res['non_2xx']}  socket errors {res['socket_errors']}",
                            style="dim",
                        )
            with lumi.client() as c:
                stored_check = {
                    "lumiflow_jobs_stored": count_jobs(c) - jobs_before,
                    "lumiflow_creates_ok": sum(r["ok"] for r in results.get("lumiflow_post", [])),
                }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def mean(key: str, field: str) -> float:
        runs = results[key]
        return sum(r[field] for r in runs) / len(runs)

    rows = []
    for key in ("lumiflow_get", "peer_get", "lumiflow_post", "peer_post"):
        target, phase = key.split("_")
        rows.append(
            [
                f"{target} {'GET one job' if phase == 'get' else 'create (apply)'}",
                mean(key, "rps"),
                mean(key, "p50_ms"),
                mean(key, "p99_ms"),
                mean(key, "cpu_ms_per_req"),
                sum(r["ok"] for r in results[key]),
                sum(r["non_2xx"] + r["socket_errors"] for r in results[key]),
            ]
        )
    console.print(
        table(
            f"API throughput, {args.connections} clients, {args.duration:g} s per phase, mean of {args.repeats}",
            ["server / request", "req/s", "p50 ms", "p99 ms", "server CPU ms/req", "ok", "errors"],
            rows,
        )
    )
    get_rps, create_rps = mean("lumiflow_get", "rps"), mean("lumiflow_post", "rps")
    ratio_get = get_rps / mean("peer_get", "rps")
    ratio_post = create_rps / mean("peer_post", "rps")
    cpu_ratio_get = mean("lumiflow_get", "cpu_ms_per_req") / mean("peer_get", "cpu_ms_per_req")
    cpu_ratio_post = mean("lumiflow_post", "cpu_ms_per_req") / mean("peer_post", "cpu_ms_per_req")
    get_met, post_met = get_rps >= GOAL_GET_RPS, create_rps >= GOAL_CREATE_RPS
    console.print(
        f"lumiflow/peer req/s: GET {ratio_get:.2f}x, create {ratio_post:.2f}x "
        f"(server CPU per request: GET {cpu_ratio_get:.1f}x, create {cpu_ratio_post:.1f}x); "
        f"GET goal >= {GOAL_GET_RPS:,.0f}/s: {'met' if get_met else 'NOT met'}; "
        f"create goal >= {GOAL_CREATE_RPS:,.0f}/s: {'met' if post_met else 'NOT met'}; "
        f"controllers' backlog after the create phase: {sum(settle) / max(1, len(settle)):.1f} s "
        f"(creates/s including it: {mean('lumiflow_post', 'sustained_rps'):.1f}); "
        f"stored {stored_check.get('lumiflow_jobs_stored')} jobs for {stored_check.get('lumiflow_creates_ok')} "
        "answered creates (plus those in flight when a phase ended)"
    )
    figures = {
        key: {
            "rps": mean(key, "rps"),
            "p50_ms": mean(key, "p50_ms"),
            "p99_ms": mean(key, "p99_ms"),
            "cpu_ms_per_req": mean(key, "cpu_ms_per_req"),
            "errors": sum(r["non_2xx"] + r["socket_errors"] for r in results[key]),
            "rounds": [r["rps"] for r in results[key]],
        }
        for key in results
    }
    figures["lumiflow_post"]["settle_s"] = sum(settle) / max(1, len(settle))
    figures["lumiflow_post"]["sustained_rps"] = mean("lumiflow_post", "sustained_rps")
    figures["lumiflow_post"]["cpu_ms_per_req_with_controllers"] = mean(
        "lumiflow_post", "cpu_ms_per_req_with_controllers"
    )
    emit_json(
        {
            "benchmark": "api_throughput",
            "load": load,
            "connections": args.connections,
            "duration_s": args.duration,
            "repeats": args.repeats,
            **figures,
            "ratio_get_lumiflow_to_peer": ratio_get,
            "ratio_create_lumiflow_to_peer": ratio_post,
            "cpu_per_req_ratio_get_lumiflow_to_peer": cpu_ratio_get,
            "cpu_per_req_ratio_create_lumiflow_to_peer": cpu_ratio_post,
            "goal_get_rps": GOAL_GET_RPS,
            "goal_create_rps": GOAL_CREATE_RPS,
            "goal_get_met": get_met,
            "goal_create_met": post_met,
            **stored_check,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
