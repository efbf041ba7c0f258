"""Platform settings: one pydantic-settings object, built by the CLI or a test and injected.

Sources, lowest precedence first: built-in defaults, the YAML config file
(``--config`` or ``$LUMIFLOW_HOME/lumiflow.yaml`` when present), environment variables
(``LUMIFLOW_`` prefix, ``__`` between levels: ``LUMIFLOW_SERVER__PORT=9000``), and the
values passed to :meth:`Settings.load` by the caller (command-line flags).

Nothing here is a module-level singleton; ``create_app(settings)`` and the CLI build their own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from lumiflow.common.errors import ValidationFailed


def default_home() -> Path:
    return Path(os.environ.get("LUMIFLOW_HOME") or Path.home() / ".lumiflow").expanduser()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Largest request body accepted; Kubernetes' own limit for an object is 1.5 MiB.
    max_body_bytes: int = Field(1_572_864, ge=1024)
    #: The URL clients and jobs use to reach this server (defaults to http://host:port).
    public_url: str | None = None


class DatabaseSettings(_Strict):
    #: SQLAlchemy URL; defaults to SQLite in WAL mode under LUMIFLOW_HOME.
    url: str | None = None
    pool_size: int = Field(8, ge=1)


#: Keys that only mean something with ``mode: oidc``.
_OIDC_ONLY = ("audience", "client_id", "client_secret", "cli_client_id", "embedded_tokens", "embedded_issuer")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class AuthSettings(_Strict):
    """Who may call: the embedded token issuer, or an OpenID Connect issuer.

    ``mode: embedded`` (default): the server signs its own tokens; ``issuer`` is the name in
    their ``iss`` claim. ``mode: oidc``: ``issuer`` is the URL of any OpenID Connect issuer
    (Keycloak, ...) whose access tokens, meant for ``audience``, are accepted; the CLI signs in
    with the device-authorization grant (``cli_client_id``, a public client) and the
    dashboard with authorization code + PKCE (``client_id``, with ``client_secret`` when the
    client is confidential). With ``embedded_tokens: true`` the server's own tokens (service
    accounts from ``lumi users add``, the bootstrap admin) keep working beside it.
    """

    mode: Literal["embedded", "oidc"] = "embedded"
    issuer: str | None = None
    audience: str | None = None
    #: Claim holding the user name, and the claim (a list of strings; a dotted path such as
    #: ``realm_access.roles`` reaches into nested claims) holding the groups.
    username_claim: str = Field("preferred_username", min_length=1, max_length=200)
    groups_claim: str = Field("groups", min_length=1, max_length=200)
    client_id: str | None = None
    client_secret: str | None = None
    #: The public client the CLI uses for the device flow (default: ``client_id``).
    cli_client_id: str | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "offline_access"])
    embedded_tokens: bool = False
    #: ``iss`` of the server's own tokens in oidc mode (in embedded mode, ``issuer`` is).
    embedded_issuer: str = "lumiflow"
    #: Clock skew tolerated on ``exp``/``nbf``/``iat``.
    clock_skew_seconds: float = Field(30.0, ge=0, le=300)
    #: A token signed with a key the cache does not know makes the server refetch the
    #: issuer's keys, at most once per this many seconds.
    jwks_refetch_seconds: float = Field(10.0, ge=0, le=3600)
    #: Keys and the discovery document are refreshed this often even when nothing is unknown.
    jwks_cache_seconds: float = Field(3600.0, ge=1)
    #: A CA bundle to verify the issuer's TLS certificate (default: the system's).
    ca_file: str | None = None
    #: Lifetime of a dashboard session (signing in again is needed after it).
    session_hours: float = Field(12.0, gt=0, le=24 * 30)
    #: Lifetime of tokens issued by ``lumi users add`` / ``lumi tokens create``.
    token_ttl_days: float = Field(365.0, gt=0)
    admin_user: str = "admin"
    admin_group: str = "admins"
    #: Groups mapped to roles; ``*`` matches every signed-in user.
    roles: dict[str, list[str]] = Field(default_factory=lambda: {"admin": ["admins"], "user": ["*"]})

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = set(value) - {"admin", "user"}
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; allowed: admin, user")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not scope or any(c.isspace() for c in scope):
                raise ValueError(f"scope {scope!r} must be one word")
        return value

    @model_validator(mode="after")
    def _mode(self) -> AuthSettings:
        if self.mode == "embedded":
            stray = [k for k in _OIDC_ONLY if k in self.model_fields_set]
            if stray:
                keys = ", ".join(f"auth.{k}" for k in stray)
                raise ValueError(f"{keys}: only used with auth.mode: oidc (auth.mode is embedded)")
            if self.issuer is None:
                self.issuer = "lumiflow"
            return self
        missing = [f"auth.{k}" for k in ("issuer", "audience", "client_id") if not getattr(self, k)]
        if missing:
            raise ValueError(f"{', '.join(missing)}: needed with auth.mode: oidc")
        assert self.issuer is not None
        parts = urlsplit(self.issuer)
        loopback = parts.hostname in _LOOPBACK_HOSTS or f"[{parts.hostname}]" in _LOOPBACK_HOSTS
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError(
                f"auth.issuer: {self.issuer!r} must be an https:// URL (http:// only on localhost)"
            )
        if parts.query or parts.fragment or not parts.netloc:
            raise ValueError(f"auth.issuer: {self.issuer!r} must be a URL without query or fragment")
        if self.embedded_tokens and self.embedded_issuer == self.issuer:
            raise ValueError("auth.embedded_issuer: must differ from auth.issuer")
        return self

    # --- derived -----------------------------------------------------------------

    @property
    def own_issuer(self) -> str:
        """The ``iss`` of the tokens this server signs."""
        return (self.issuer or "lumiflow") if self.mode == "embedded" else self.embedded_issuer

    @property
    def accepts_own_tokens(self) -> bool:
        return self.mode == "embedded" or self.embedded_tokens

    @property
    def device_client_id(self) -> str | None:
        return self.cli_client_id or self.client_id


class ProfileSettings(_Strict):
    #: Quota given to a personal profile when it is created on a user's first request.
    default_quota: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "0", "workloads": "10"}
    )


class ClusterConfig(_Strict):
    name: str
    type: str = "local"
    #: The cluster a profile's work goes to when it names none.
    home: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    #: Backend-specific options (``capacity``, ``address``, ...), validated by the backend.
    options: dict[str, Any] = Field(default_factory=dict)


class ControllerSettings(_Strict):
    #: Every object is reconciled at least this often, even with no change (level-triggered).
    resync_seconds: float = Field(30.0, gt=0)
    #: Gang restarts back off exponentially from this delay, up to ``restart_backoff_max``.
    restart_backoff_seconds: float = Field(1.0, ge=0)
    restart_backoff_max: float = Field(300.0, ge=0)
    #: Seconds between SIGTERM and SIGKILL when a replica is stopped.
    grace_period_seconds: float = Field(30.0, ge=0)
    workers_per_controller: int = Field(2, ge=1, le=32)


class ReplicaDefaults(_Strict):
    #: Request assumed for a replica that states none (Kubernetes LimitRange's role).
    cpu: str = "1"
    memory: str = "512Mi"


class ArtifactSettings(_Strict):
    """Where pipeline artifacts live: ``file://`` (default: under the home), ``s3://``,
    ``root://`` (XRootD); each profile gets its own folder under the root."""

    root: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)
    #: Folders steps may read but never write (CVMFS, a shared dataset area).
    readonly_roots: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LUMIFLOW_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    home: Path = Field(default_factory=default_home)
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    profiles: ProfileSettings = Field(default_factory=ProfileSettings)
    clusters: list[ClusterConfig] = Field(
        default_factory=lambda: [ClusterConfig(name="local", type="local", home=True)]
    )
    controllers: ControllerSettings = Field(default_factory=ControllerSettings)
    replica_defaults: ReplicaDefaults = Field(default_factory=ReplicaDefaults)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment is merged by ``load`` (file < environment < flags); only explicit
        # values reach the model, so a stray LUMIFLOW_* variable never breaks start-up.
        return (init_settings,)

    @field_validator("clusters")
    @classmethod
    def _one_home(cls, value: list[ClusterConfig]) -> list[ClusterConfig]:
        if not value:
            raise ValueError("at least one cluster is needed")
        names = [c.name for c in value]
        if len(set(names)) != len(names):
            raise ValueError(f"cluster names must be unique: {names}")
        homes = [c for c in value if c.home]
        if len(homes) > 1:
            raise ValueError("only one cluster can be home")
        if not homes:
            value[0] = value[0].model_copy(update={"home": True})
        return value

    # --- derived -----------------------------------------------------------------

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.home / 'lumiflow.db'}"

    @property
    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        host = self.server.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{self.server.port}"

    @property
    def home_cluster(self) -> str:
        return next(c.name for c in self.clusters if c.home)

    @classmethod
    def load(
        cls,
        *,
        home: Path | str | None = None,
        config_file: Path | str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> Settings:
        """Builds settings from the config file, the environment and ``overrides``.

        Raises :class:`ValidationFailed` naming the bad key, never a pydantic traceback.
        """
        resolved_home = Path(home).expanduser() if home else default_home()
        file_values: dict[str, Any] = {}
        path = Path(config_file).expanduser() if config_file else resolved_home / "lumiflow.yaml"
        if config_file and not path.exists():
            raise ValidationFailed(f"config file {path} does not exist", field="--config")
        if path.exists():
            try:
                loaded = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ValidationFailed(f"config file {path} is not valid YAML: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ValidationFailed(f"config file {path} must hold a mapping")
            file_values = loaded
        try:
            # Environment variables take precedence over the file and under the flags.
            merged = _deep_merge(_deep_merge(file_values, _env_values()), overrides or {})
            merged["home"] = resolved_home
            return cls(**merged)
        except ValidationError as exc:
            message, field = _describe(exc)
            raise ValidationFailed(f"invalid settings: {message}", field=field) from exc
        except ValueError as exc:
            raise ValidationFailed(f"invalid settings: {exc}") from exc


def _describe(exc: ValidationError) -> tuple[str, str | None]:
    """``auth.issuer: must be an https:// URL`` rather than pydantic's multi-line report."""
    parts: list[str] = []
    first: str | None = None
    for error in exc.errors():
        loc = ".".join(str(p) for p in error.get("loc", ()))
        msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        # A check across keys names them itself ("auth.issuer, auth.audience: needed ...").
        named = msg.split(":", 1)[0] if loc and msg.startswith(f"{loc}.") else None
        text = msg if named else (f"{loc}: {msg}" if loc else msg)
        first = first or (named.split(",")[0] if named else loc or None)
        parts.append(text)
    return "; ".join(parts), first


def _env_values() -> dict[str, Any]:
    """``LUMIFLOW_A__B=v`` → ``{"a": {"b": v}}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    skip = {"LUMIFLOW_HOME", "LUMIFLOW_URL", "LUMIFLOW_TOKEN", "LUMIFLOW_PROFILE", "LUMIFLOW_CONFIG"}
    for key, raw in os.environ.items():
        if not key.startswith("LUMIFLOW_") or key in skip:
            continue
        path = key[len("LUMIFLOW_") :].lower().split("__")
        if path[0] not in Settings.model_fields:
            continue
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        cursor = out
        for part in path[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[path[-1]] = value
    return out


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
