"""The real OpenID Connect issuer of the tests (``issuer.mjs``: npm's oidc-provider on Node),
and the browser-free ways the tests use it.

One issuer process serves the session (starting Node costs seconds on a loaded machine).
Users, groups and token lifetimes live in a JSON state file the issuer reads at every use,
so a test changes them without a restart; :meth:`Issuer.restart` regenerates the issuer's
signing keys (a key rotation). A test that changes the state gives it back as it found it
(:meth:`Issuer.changed`).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from lumiflow.common.oauth import TokenSet, refresh, token_request
from tests.helpers import free_port

HERE = Path(__file__).resolve().parent
AUDIENCE = "lumiflow"
DASHBOARD_CLIENT = ("lumiflow", "lumiflow-secret")
CLI_CLIENT = "lumiflow-cli"
ROBOT_CLIENT = ("robot", "robot-secret")
OTHER_RESOURCE = "urn:other:api"

#: Who exists in the issuer at the start of every test.
USERS: dict[str, dict[str, Any]] = {
    "alice": {"password": "alice-pw", "groups": ["physics", "ml-users"]},
    "bob": {"password": "bob-pw", "groups": ["biology"]},
    "olga": {"password": "olga-pw", "groups": ["admins"]},
    "service-account-robot": {"groups": ["robots"]},
}


def node_available() -> str | None:
    """Why the issuer cannot run here, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed (the tests' OIDC issuer runs on it)"
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        return "tests/oidc/node_modules is missing: run `make system-deps` (npm ci)"
    return None


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


def forms_of(html: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


class Issuer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port, self.port2 = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.url2 = f"http://127.0.0.1:{self.port2}"
        self.state_path = workdir / "issuer-state.json"
        self.log_path = workdir / "issuer.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.reset()

    # --- process ---------------------------------------------------------------------------

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open by the child
        self.proc = subprocess.Popen(
            [
                "node",
                str(HERE / "issuer.mjs"),
                "--port",
                str(self.port),
                "--port2",
                str(self.port2),
                "--state",
                str(self.state_path),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=str(HERE),
        )
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        line = b""
        while not line.endswith(b"\n"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the OIDC issuer did not start: {self.log_path.read_text()[-2000:]}")
            if selector.select(timeout=0.5):
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                line += chunk
        selector.close()
        ready = json.loads(line.decode().splitlines()[0])
        assert ready["issuer"] == self.url, ready

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def restart(self) -> None:
        """A new process on the same ports: new signing keys, every issued token forgotten."""
        self.stop()
        self.start()

    # --- state -----------------------------------------------------------------------------

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path)

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_path.read_text()))

    def reset(self) -> None:
        self._write({"users": json.loads(json.dumps(USERS)), "access_token_ttl": 300})

    def set_groups(self, user: str, groups: list[str]) -> None:
        state = self.state()
        state["users"][user]["groups"] = groups
        self._write(state)

    def delete_user(self, user: str) -> None:
        state = self.state()
        del state["users"][user]
        self._write(state)

    def set_token_ttl(self, seconds: int) -> None:
        state = self.state()
        state["access_token_ttl"] = seconds
        self._write(state)

    @contextlib.contextmanager
    def changed(self) -> Iterator[Issuer]:
        """Gives the users and lifetimes back as they were when the block ends."""
        try:
            yield self
        finally:
            self.reset()

    # --- tokens without a browser ----------------------------------------------------------

    def robot_token(self, *, resource: str | None = None, second_issuer: bool = False) -> str:
        """A client-credentials token (service account ``service-account-robot``, ES256)."""
        form = {"grant_type": "client_credentials", "scope": "api"}
        if resource:
            form["resource"] = resource
        url = self.url2 if second_issuer else self.url
        with httpx.Client(timeout=30) as http:
            tokens = token_request(
                http, f"{url}/token", form, client_id=ROBOT_CLIENT[0], client_secret=ROBOT_CLIENT[1]
            )
        return tokens.access_token

    def approve(
        self, http: httpx.Client, page: httpx.Response, *, user: str, password: str
    ) -> httpx.Response:
        """Plays the user in the issuer's pages from ``page`` on: submits the device code
        confirmation forms and the login form, following redirects (not to lumiflow)."""
        for _ in range(12):
            if page.status_code in (302, 303):
                location = urljoin(str(page.url), page.headers["location"])
                if not location.startswith(self.url):
                    return page
                page = http.get(location)
                continue
            forms = forms_of(page.text)
            if not forms:
                return page
            form = forms[0]
            action = urljoin(str(page.url), form["action"] or str(page.url))
            fields = dict(form["fields"])
            if "/login" in action:
                fields.update({"username": user, "password": password})
            page = http.post(action, data=fields)
        raise AssertionError(f"the issuer's pages did not end: {page.status_code} {page.text[:500]}")

    def device_approve(self, verification_uri: str, *, user: str, password: str) -> None:
        with httpx.Client(timeout=30, follow_redirects=False) as http:
            done = self.approve(http, http.get(verification_uri), user=user, password=password)
        assert 'id="device-done"' in done.text, done.text[:1000]

    def user_tokens(self, user: str) -> TokenSet:
        """Access and refresh token of ``user`` through the device flow (no CLI, no browser)."""
        with httpx.Client(timeout=30) as http:
            body = http.post(
                f"{self.url}/device/auth",
                data={"client_id": CLI_CLIENT, "scope": "openid profile groups offline_access"},
            ).json()
            self.device_approve(
                body["verification_uri_complete"], user=user, password=USERS[user]["password"]
            )
            return token_request(
                http,
                f"{self.url}/token",
                {
                    "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                    "device_code": body["device_code"],
                },
                client_id=CLI_CLIENT,
            )

    def refresh(self, refresh_token: str) -> TokenSet:
        with httpx.Client(timeout=30) as http:
            return refresh(http, f"{self.url}/token", refresh_token, client_id=CLI_CLIENT)

    def dashboard_sign_in(
        self, http: httpx.Client, dashboard: str, *, user: str, password: str
    ) -> httpx.Response:
        """Authorization code + PKCE through a real dashboard, as a browser without JavaScript
        would: returns the dashboard's answer to the callback (its session cookie is in ``http``)."""
        start = http.get(f"{dashboard}/ui/login/sso")
        assert start.status_code == 303, start.text[:500]
        back = self.approve(http, http.get(start.headers["location"]), user=user, password=password)
        location = back.headers["location"]
        assert location.startswith(f"{dashboard}/ui/auth/callback"), location
        return http.get(location)


def callback_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def oidc_auth(issuer: Issuer | str, **extra: Any) -> dict[str, Any]:
    """The ``auth`` settings of a lumiflow pointed at this issuer (or at a URL)."""
    return {
        "mode": "oidc",
        "issuer": issuer if isinstance(issuer, str) else issuer.url,
        "audience": AUDIENCE,
        "client_id": DASHBOARD_CLIENT[0],
        "client_secret": DASHBOARD_CLIENT[1],
        "cli_client_id": CLI_CLIENT,
        "scopes": ["openid", "profile", "groups", "offline_access"],
        "roles": {"admin": ["admins"], "user": ["*"]},
        **extra,
    }
