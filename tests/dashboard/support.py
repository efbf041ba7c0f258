"""Driving the dashboard without a browser (forms as a browser sends them), for the checks
that are about HTTP: cookies, CSRF, redirects, status codes."""

from __future__ import annotations

import html
import re
from typing import Any

from fastapi.testclient import TestClient

from lumiflow.server.app import create_app
from lumiflow.server.platform import Platform

CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, f"no CSRF token in the page: {page[:500]}"
    return html.unescape(found.group(1))


class Visitor:
    """One browser: a TestClient with its own cookie jar that does not follow redirects."""

    def __init__(self, platform: Platform) -> None:
        self.client = TestClient(create_app(platform, manage_lifecycle=False), follow_redirects=False)

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.client.post(path, data=data, **kw)

    def sign_in(self, token: str, next_url: str | None = None) -> Any:
        page = self.get("/ui/login", params={"next": next_url} if next_url else None)
        assert page.status_code == 200, page.text
        form = {"token": token, "csrf": csrf_of(page.text)}
        if next_url is not None:
            form["next"] = next_url
        return self.post("/ui/login", form)

    def csrf(self, path: str = "/ui/") -> str:
        page = self.get(path)
        assert page.status_code == 200, (path, page.status_code, page.text[:300])
        return csrf_of(page.text)

    def close(self) -> None:
        self.client.close()
