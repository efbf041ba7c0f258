"""``lumi up``, ``lumi down``, ``lumi status``, ``lumi db``: running the platform."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lumiflow.cli.output import (
    clusters_table,
    console,
    emit_json,
    emit_yaml,
    err_console,
    fail,
    output_option,
)
from lumiflow.common.errors import LumiflowError
from lumiflow.sdk import Client, ClientConfig
from lumiflow.sdk.config import home_dir

if TYPE_CHECKING:
    from lumiflow.common.settings import Settings


def _home(ctx: click.Context, home: str | None) -> Path:
    value = home or ctx.obj.get("home")
    return Path(value).expanduser() if value else home_dir()


def _state_path(home: Path) -> Path:
    return home / "server.json"


def _read_state(home: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(_state_path(home).read_text())
    except (FileNotFoundError, ValueError):
        return None
    pid = int(state.get("pid", 0))
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return dict(state)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _login_as_admin(home: Path, url: str) -> str | None:
    token_path = home / "admin.token"
    if not token_path.exists():
        return None
    token = token_path.read_text().strip()
    config = ClientConfig.load(home)
    config.url, config.token = url, token
    config.profile = None
    config.save(home)
    return token


@click.command()
@click.option(
    "--home", type=click.Path(file_okay=False), default=None, help="home folder (default ~/.lumiflow)"
)
@click.option("--host", default=None, help="address to listen on [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help="port to listen on [default: 8080]")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="a lumiflow.yaml (database, auth, clusters, quotas)",
)
@click.option("--detach", is_flag=True, help="run in the background; `lumi down` stops it")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
def up(
    ctx: click.Context,
    home: str | None,
    host: str | None,
    port: int | None,
    config_file: str | None,
    detach: bool,
    log_level: str,
) -> None:
    """Start the platform: API, controllers, scheduler and the local cluster.

    On first start it creates the database, the admin user and its token, and logs this
    CLI in as the admin (config in the home folder), so `lumi` commands work at once.
    Replicas keep running when the server stops and are re-attached at the next start.
    """
    home_path = _home(ctx, home)
    overrides: dict[str, Any] = {"server": {}}
    if host:
        overrides["server"]["host"] = host
    if port is not None:
        overrides["server"]["port"] = port
    from lumiflow.common.settings import Settings

    settings = Settings.load(home=home_path, config_file=config_file, overrides=overrides)
    running = _read_state(home_path)
    if running:
        fail(
            f"lumiflow is already running for {home_path} at {running.get('url')} (pid {running.get('pid')})"
        )
    if not _port_free(settings.server.host, settings.server.port):
        fail(f"port {settings.server.port} on {settings.server.host} is in use; pass --port")
    if detach:
        _up_detached(home_path, settings, config_file, log_level)
        return
    _serve(home_path, settings, log_level)


def _up_detached(home: Path, settings: Settings, config_file: str | None, log_level: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "lumiflow.cli.main",
        "up",
        "--home",
        str(home),
        "--host",
        settings.server.host,
        "--port",
        str(settings.server.port),
        "--log-level",
        log_level,
    ]
    if config_file:
        argv += ["--config", str(Path(config_file).resolve())]
    log_path = home / "server.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(home),
        )
    url = settings.public_url
    deadline = time.monotonic() + 120
    with console.status(f"starting lumiflow at {url} ..."):
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-20:]
                err_console.print("\n".join(tail), markup=False)
                fail(f"the server exited with status {proc.returncode} (log: {log_path})")
            state = _read_state(home)
            if state:
                try:
                    Client(url, token="-", home=home).health()
                    break
                except LumiflowError:
                    pass
            if time.monotonic() > deadline:
                fail(f"the server did not answer within 120 s (log: {log_path})")
            time.sleep(0.1)
    token = _login_as_admin(home, url)
    console.print(f"lumiflow is up at [bold]{url}[/bold] (pid {proc.pid}, log {log_path})")
    if token:
        console.print(f"admin token: {token}", markup=False)
        console.print(f"this CLI is logged in as admin (config {ClientConfig.path(home)})")
    console.print("stop it with: lumi down" + ("" if home == home_dir() else f" --home {home}"))


def _serve(home: Path, settings: Settings, log_level: str) -> None:
    import uvicorn

    from lumiflow.server.app import create_app, served_app
    from lumiflow.server.platform import Platform

    logging.basicConfig(
        level=getattr(logging, log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The server's threads (API, controllers, scheduler) mostly hand work to each other; a
    # thread woken by a store change waits for the GIL up to the switch interval while another
    # computes. 1 ms instead of Python's 5 ms: a tuning run's per-trial hand-offs measured
    # ~3 % faster end to end (bench/tune_bench.py), for a little more switching.
    sys.setswitchinterval(0.001)
    platform = Platform(settings)
    new_token = platform.bootstrap_admin()
    app = create_app(platform)
    url = settings.public_url
    _state_path(home).write_text(json.dumps({"pid": os.getpid(), "url": url, "home": str(home)}))
    try:
        token = _login_as_admin(home, url)
        click.echo(f"lumiflow {url} (home {home}, database {settings.database_url.split('://')[0]})")
        if new_token:
            click.echo(f"admin token (first start; also in {platform.admin_token_path}): {new_token}")
        elif token:
            click.echo(f"admin token: in {platform.admin_token_path}")
        config = uvicorn.Config(
            served_app(app, platform),
            host=settings.server.host,
            port=settings.server.port,
            log_level=log_level,
            access_log=log_level == "debug",
            timeout_graceful_shutdown=5,
            lifespan="on",
        )
        uvicorn.Server(config).run()
    finally:
        with contextlib.suppress(FileNotFoundError):
            state = json.loads(_state_path(home).read_text())
            if state.get("pid") == os.getpid():
                _state_path(home).unlink()


@click.command()
@click.option("--home", type=click.Path(file_okay=False), default=None)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="seconds to wait for it to stop")
@click.pass_context
def down(ctx: click.Context, home: str | None, timeout: float) -> None:
    """Stop the platform started by `lumi up --detach`.

    Replicas that are running keep running; the next `lumi up` re-attaches to them.
    """
    home_path = _home(ctx, home)
    state = _read_state(home_path)
    if not state:
        console.print(f"lumiflow is not running for {home_path}")
        return
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    with console.status(f"stopping lumiflow (pid {pid}) ..."):
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        _state_path(home_path).unlink()
    console.print(f"lumiflow stopped (pid {pid})")


@click.command()
@output_option()
@click.pass_context
def status(ctx: click.Context, output: str) -> None:
    """Show the server, who you are, and the clusters' capacity and queues."""
    client = Client(home=ctx.obj.get("home"))
    health = client.health()
    me = client.whoami()
    clusters = client.clusters()
    if output in ("json", "yaml"):
        value = {"url": client.url, "version": health.get("version"), "user": me, "clusters": clusters}
        if output == "json":
            emit_json(value)
        else:
            emit_yaml(value)
        return
    console.print(f"lumiflow {health.get('version')} at [bold]{client.url}[/bold]")
    console.print(
        f"signed in as [bold]{me['user']}[/bold] (roles: {', '.join(me['roles']) or 'none'}; "
        f"default profile {me['defaultProfile']})"
    )
    console.print(clusters_table(clusters))


@click.group()
def db() -> None:
    """Database schema: show or upgrade it."""


@db.command("upgrade")
@click.option("--home", type=click.Path(file_okay=False), default=None)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None)
@click.pass_context
def db_upgrade(ctx: click.Context, home: str | None, config_file: str | None) -> None:
    """Apply the schema migrations this lumiflow ships."""
    from lumiflow.common.settings import Settings
    from lumiflow.store import migrate
    from lumiflow.store.sql import make_engine

    settings = Settings.load(home=_home(ctx, home), config_file=config_file)
    engine = make_engine(settings.database_url)
    try:
        before = migrate.current_revision(engine)
        after = migrate.upgrade(engine)
    finally:
        engine.dispose()
    console.print(f"schema: {before or 'empty'} -> {after}")


@db.command("current")
@click.option("--home", type=click.Path(file_okay=False), default=None)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None)
@click.pass_context
def db_current(ctx: click.Context, home: str | None, config_file: str | None) -> None:
    """Print the schema revision of the database and the one this lumiflow needs."""
    from lumiflow.common.settings import Settings
    from lumiflow.store import migrate
    from lumiflow.store.sql import make_engine

    settings = Settings.load(home=_home(ctx, home), config_file=config_file)
    engine = make_engine(settings.database_url)
    try:
        current = migrate.current_revision(engine)
    finally:
        engine.dispose()
    console.print(f"database: {current or 'empty'}; this lumiflow needs: {migrate.head_revision()}")
