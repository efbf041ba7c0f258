"""Sign-in costs and the dashboard's first byte.

1. Token validation per request, in-process, with the issuer's keys cached: an embedded
   (lumiflow-signed ES256) token and an OIDC access token from a real issuer (npm's
   oidc-provider, ES256 client-credentials token). Two figures each: a repeated token (the
   verified-token cache answers) and a fresh token (a signature check with cached keys).
2. The API's GET/s with OIDC tokens versus embedded tokens, in the same run, against one
   ``lumi up`` configured for single sign-on with embedded tokens beside it (wrk, 16
   connections).
3. The dashboard's time to first byte for the jobs page of a profile holding 1,000 jobs
   (paginated), next to the API's JSON page of the same jobs as the peer.

Run from the repository root: ``.venv/bin/python bench/auth_dashboard.py``. Needs Node with
tests/oidc/node_modules (``make system-deps``) and wrk (``apt-get install wrk``). The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tests.oidc.issuer import Issuer, node_available, oidc_auth  # noqa: E402

from _harness import LumiServer, console, emit_json, machine, rounded, summary, suspended_job, table  # noqa: E402


def wrk_get(url: str, token: str, *, seconds: float, connections: int) -> dict[str, float]:
    out = _run_wrk(url, token, seconds=seconds, connections=connections)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "errors": float(non2xx.group(1)) if non2xx else 0.0}


def _run_wrk(url: str, token: str, *, seconds: float, connections: int) -> str:
    import subprocess

    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    return result.stdout


def validation_costs(issuer: Issuer, tmp: Path, repeats: int) -> dict[str, Any]:
    """In-process: ``platform.authenticator.authenticate`` with warm key caches."""
    from lumiflow.common.settings import Settings
    from lumiflow.server.platform import Platform

    settings = Settings.load(
        home=tmp / "inproc", overrides={"auth": {**oidc_auth(issuer), "embedded_tokens": True}}
    )
    platform = Platform(settings)
    try:
        embedded = platform.bootstrap_admin()
        assert embedded
        oidc = issuer.robot_token()
        auth = platform.authenticator
        auth.authenticate(oidc)  # fetches discovery and keys once
        result: dict[str, Any] = {}
        for label, token in (("embedded", embedded), ("oidc", oidc)):
            auth.authenticate(token)
            start = time.perf_counter()
            for _ in range(repeats):
                auth.authenticate(token)
            result[f"{label}_cached_us"] = (time.perf_counter() - start) / repeats * 1e6
        # Fresh tokens: every call checks a signature (keys cached, token cache missed).
        fresh_embedded = [platform.identity.issue("admin", ["admins"]).token for _ in range(50)]
        platform.identity.refresh()
        fresh_oidc = [issuer.robot_token() for _ in range(50)]
        for label, tokens in (("embedded", fresh_embedded), ("oidc", fresh_oidc)):
            times = []
            for token in tokens:
                start = time.perf_counter()
                auth.authenticate(token)
                times.append((time.perf_counter() - start) * 1e6)
            result[f"{label}_fresh_us"] = summary(times)["p50"]
        return result
    finally:
        platform.stop()


def ttfb(url: str, *, headers: dict[str, str], repeats: int) -> dict[str, float]:
    parts = httpx.URL(url)
    times = []
    for _ in range(repeats):
        conn = http.client.HTTPConnection(parts.host, parts.port, timeout=30)
        target = parts.raw_path.decode()
        start = time.perf_counter()
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()  # returns once the status line and headers arrived
        times.append((time.perf_counter() - start) * 1000)
        body = response.read()
        assert response.status == 200, (response.status, body[:300])
        conn.close()
    return summary(times)


def dashboard_session(base: str, token: str) -> str:
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as http:
        page = http.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        answer = http.post("/ui/login", data={"token": token, "csrf": csrf, "next": "/ui/jobs"})
        assert answer.status_code in (302, 303), answer.text[:300]
        cookies = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
    return cookies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per phase")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the profile for the dashboard page")
    parser.add_argument("--ttfb-repeats", type=int, default=30)
    parser.add_argument("--validation-repeats", type=int, default=20000)
    args = parser.parse_args()
    missing = node_available()
    if missing:
        raise SystemExit(missing)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")

    tmp = Path(tempfile.mkdtemp(prefix="lumibench-auth-"))
    issuer = Issuer(tmp)
    issuer.start()
    try:
        costs = validation_costs(issuer, tmp, args.validation_repeats)
        config = yaml.safe_dump(
            {
                "auth": {**oidc_auth(issuer), "embedded_tokens": True},
                "clusters": [
                    {
                        "name": "local",
                        "type": "local",
                        "home": True,
                        "options": {"capacity": {"cpu": 64, "memory": "256Gi"}},
                    }
                ],
                "profiles": {"default_quota": {"cpu": "1000", "memory": "4Ti", "workloads": "5000"}},
            }
        )
        with LumiServer(config=config) as server:
            robot = issuer.robot_token()
            robot_headers = {"Authorization": f"Bearer {robot}"}
            with httpx.Client(base_url=server.url, timeout=30) as http:
                me = http.get("/api/v1/whoami", headers=robot_headers).json()
                robot_profile = me["defaultProfile"]
                r = http.post("/api/v1/apply", json=suspended_job("bench-oidc"), headers=robot_headers)
                assert r.status_code in (200, 201), r.text
                r = http.post("/api/v1/apply", json=suspended_job("bench-embedded"), headers=server.headers())
                assert r.status_code in (200, 201), r.text
            oidc_url = f"{server.url}/api/v1/profiles/{robot_profile}/trainingjobs/bench-oidc"
            embedded_url = f"{server.url}/api/v1/profiles/admin/trainingjobs/bench-embedded"
            # Alternate the order so that neither side always runs on a warmer server.
            gets: dict[str, list[dict[str, float]]] = {"embedded": [], "oidc": []}
            for order in (("embedded", "oidc"), ("oidc", "embedded")):
                for label in order:
                    url, token = (oidc_url, robot) if label == "oidc" else (embedded_url, server.token)
                    gets[label].append(
                        wrk_get(url, token, seconds=args.duration / 2, connections=args.connections)
                    )
            get_rps = {k: sum(r["rps"] for r in v) / len(v) for k, v in gets.items()}
            errors = {k: sum(r["errors"] for r in v) for k, v in gets.items()}

            # The dashboard's jobs page with 1,000 jobs in the profile.
            with httpx.Client(base_url=server.url, headers=server.headers(), timeout=60) as http:

                def create(i: int) -> None:
                    r = http.post("/api/v1/apply", json=suspended_job(f"page-{i:04d}"))
                    assert r.status_code in (200, 201), r.text

                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    list(pool.map(create, range(args.jobs)))
            cookies = dashboard_session(server.url, server.token)
            page = ttfb(
                f"{server.url}/ui/jobs?profile=admin", headers={"Cookie": cookies}, repeats=args.ttfb_repeats
            )
            api_page = ttfb(
                f"{server.url}/api/v1/profiles/admin/trainingjobs?limit=50",
                headers=server.headers(),
                repeats=args.ttfb_repeats,
            )
    finally:
        issuer.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    console.print(
        table(
            "token validation per request (in-process, keys cached)",
            ["token", "cached µs", "fresh µs"],
            [
                [
                    "embedded (ES256, lumiflow)",
                    f"{costs['embedded_cached_us']:.1f}",
                    f"{costs['embedded_fresh_us']:.0f}",
                ],
                [
                    "OIDC (ES256, oidc-provider)",
                    f"{costs['oidc_cached_us']:.1f}",
                    f"{costs['oidc_fresh_us']:.0f}",
                ],
            ],
        )
    )
    console.print(
        table(
            f"GET one job, wrk {args.connections} connections",
            ["token", "GET/s", "non-2xx"],
            [
                ["embedded", f"{get_rps['embedded']:.0f}", f"{errors['embedded']:.0f}"],
                ["OIDC", f"{get_rps['oidc']:.0f}", f"{errors['oidc']:.0f}"],
            ],
        )
    )
    console.print(
        table(
            f"time to first byte, profile with {args.jobs} jobs",
            ["page", "p50 ms", "p90 ms", "p99 ms"],
            [
                [
                    "dashboard /ui/jobs (HTML, first page)",
                    f"{page['p50']:.1f}",
                    f"{page['p90']:.1f}",
                    f"{page['p99']:.1f}",
                ],
                [
                    "API trainingjobs?limit=50 (JSON, peer)",
                    f"{api_page['p50']:.1f}",
                    f"{api_page['p90']:.1f}",
                    f"{api_page['p99']:.1f}",
                ],
            ],
        )
    )
    emit_json(
        rounded(
            {
                "benchmark": "auth_dashboard",
                "validation_us": costs,
                "get_rps": get_rps,
                "get_errors": errors,
                "ratio_get_oidc_to_embedded": get_rps["oidc"] / get_rps["embedded"],
                "jobs_in_profile": args.jobs,
                "dashboard_jobs_ttfb_ms": page,
                "api_jobs_page_ttfb_ms": api_page,
                "ratio_ttfb_dashboard_to_api": page["p50"] / api_page["p50"],
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
