"""``lumi login``, ``lumi whoami``, ``lumi users``, ``lumi tokens``."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from lumiflow.cli.output import console, emit_json, emit_yaml, output_option
from lumiflow.common.oauth import DeviceAuthorization
from lumiflow.common.timeutil import age
from lumiflow.sdk import Client, ClientConfig
from lumiflow.sdk.auth import device_login, sign_in_options


def _client(ctx: click.Context) -> Client:
    return Client(home=ctx.obj.get("home"))


def _emit(value: object, output: str) -> bool:
    if output == "json":
        emit_json(value)
        return True
    if output == "yaml":
        emit_yaml(value)
        return True
    return False


@click.command()
@click.argument("url", required=False)
@click.option(
    "--token",
    help="a token from `lumi users add` or `lumi tokens create`; without it, a server with single "
    "sign-on starts the device sign-in, any other asks for a token",
)
@click.option("--profile", "-p", help="default profile for commands that take -p")
@click.pass_context
def login(ctx: click.Context, url: str | None, token: str | None, profile: str | None) -> None:
    """Sign in to a lumiflow server and save the URL and your token in the CLI config.

    With single sign-on (the server's auth.mode is oidc), this prints a URL and a code:
    open the URL in any browser, sign in, and approve the code. The refresh token is kept
    in the config (mode 0600), so the CLI and the SDK stay signed in.
    """
    home = ctx.obj.get("home")
    url = (url or ClientConfig.load(home).url).rstrip("/")
    config = ClientConfig.load_file(home)
    config.clear_refresh()
    if not token:
        options = sign_in_options(url)
        if options.get("mode") == "oidc":
            signed_in = device_login(options, prompt=_show_code)
            config.refresh_token = signed_in.tokens.refresh_token
            config.token_endpoint = signed_in.token_endpoint
            config.client_id = signed_in.client_id
            config.issuer = signed_in.issuer
            token = signed_in.tokens.access_token
        else:
            token = click.prompt("token", hide_input=True).strip()
    me = Client(url, token=token, home=home).whoami()
    config.url, config.token, config.profile = url, token, profile
    path = config.save(home)
    console.print(
        f"logged in to {url} as [bold]{me['user']}[/bold] (groups: {', '.join(me['groups']) or '-'}); "
        f"default profile {profile or me['defaultProfile']} (config {path})"
    )


def _show_code(device: DeviceAuthorization) -> None:
    console.print("To sign in, open this URL in a browser:", highlight=False)
    click.echo(f"  {device.verification_uri_complete or device.verification_uri}")
    click.echo(f"and check that it shows the code: {device.user_code}")
    console.print("waiting for you to approve ...", highlight=False)
    sys.stdout.flush()


@click.command()
@output_option()
@click.pass_context
def whoami(ctx: click.Context, output: str) -> None:
    """Who the server thinks you are: user, groups, roles and profiles."""
    me = _client(ctx).whoami()
    if _emit(me, output):
        return
    console.print(
        f"user: [bold]{me['user']}[/bold]  groups: {', '.join(me['groups']) or '-'}  "
        f"roles: {', '.join(me['roles']) or '-'}  default profile: {me['defaultProfile']}"
    )
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("PROFILE")
    table.add_column("ROLE")
    for p in me["profiles"]:
        table.add_row(p["name"], p["role"])
    console.print(table)


@click.group()
def users() -> None:
    """Users of the embedded identity provider (admin)."""


@users.command("add")
@click.argument("name")
@click.option("--group", "-g", "groups", multiple=True, help="a group of the user (repeat for several)")
@click.option("--ttl-days", type=float, default=None, help="lifetime of the token (default: server setting)")
@output_option()
@click.pass_context
def users_add(
    ctx: click.Context, name: str, groups: tuple[str, ...], ttl_days: float | None, output: str
) -> None:
    """Add a user with groups and print a token for them."""
    result = _client(ctx).users.add(name, groups, ttl_days=ttl_days)
    if _emit(result, output):
        return
    console.print(f"user [bold]{name}[/bold] added (groups: {', '.join(result['user']['groups']) or '-'})")
    console.print("token (give it to the user: lumi login URL --token TOKEN):")
    click.echo(result["token"])


@users.command("list")
@output_option()
@click.pass_context
def users_list(ctx: click.Context, output: str) -> None:
    """List users."""
    items = _client(ctx).users.list()
    if _emit({"kind": "UserList", "items": items}, output):
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("NAME", "GROUPS", "AGE"):
        table.add_column(col)
    for u in items:
        table.add_row(u["name"], ", ".join(u["groups"]), age(u["createdAt"]))
    console.print(table)


@users.command("delete")
@click.argument("name")
@click.pass_context
def users_delete(ctx: click.Context, name: str) -> None:
    """Delete a user; their tokens stop working at once."""
    _client(ctx).users.delete(name)
    console.print(f"user {name} deleted; their tokens are revoked")


@click.group()
def tokens() -> None:
    """API tokens: create, list, revoke."""


@tokens.command("create")
@click.option("--user", help="admin: issue for another user")
@click.option("--description", default="", help="what the token is for")
@click.option("--ttl-days", type=float, default=None)
@output_option()
@click.pass_context
def tokens_create(
    ctx: click.Context, user: str | None, description: str, ttl_days: float | None, output: str
) -> None:
    """Issue a token (for yourself, or as admin for another user)."""
    result = _client(ctx).tokens.create(user=user, description=description, ttl_days=ttl_days)
    if _emit(result, output):
        return
    info = result["tokenInfo"]
    console.print(f"token {info['id']} for {info['user']} (expires {info['expiresAt']}):")
    click.echo(result["token"])


@tokens.command("list")
@click.option("--user", help="admin: another user's tokens")
@output_option()
@click.pass_context
def tokens_list(ctx: click.Context, user: str | None, output: str) -> None:
    """List tokens (ids only, never the secrets)."""
    items = _client(ctx).tokens.list(user=user)
    if _emit({"kind": "TokenList", "items": items}, output):
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("ID", "USER", "DESCRIPTION", "ISSUED", "EXPIRES", "REVOKED"):
        table.add_column(col)
    for t in items:
        table.add_row(
            t["id"],
            t["user"],
            t["description"],
            age(t["issuedAt"]),
            t["expiresAt"] or "-",
            "yes" if t["revokedAt"] else "",
        )
    console.print(table)


@tokens.command("revoke")
@click.argument("token_id")
@click.pass_context
def tokens_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token by id; requests with it get 401 from now on."""
    _client(ctx).tokens.revoke(token_id)
    console.print(f"token {token_id} revoked")
