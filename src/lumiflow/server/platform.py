"""The platform assembled: store, identity, clusters, scheduler and controllers, wired.

``Platform(settings)`` builds everything from settings (no globals); ``start()`` re-attaches
to running replicas and starts the loops; ``stop()`` stops the loops and leaves replicas
running (they are re-attached at the next start).
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from pathlib import Path

from lumiflow.artifacts.store import ArtifactStore
from lumiflow.auth import (
    AccessPolicy,
    EmbeddedIdentity,
    IdentityProvider,
    OIDCSignIn,
    SessionManager,
    build_identity,
    personal_profile_name,
)
from lumiflow.auth.identity import Identity
from lumiflow.auth.report import ReportTokens
from lumiflow.clusters.set import ClusterSet
from lumiflow.common.errors import AlreadyExists, LumiflowError, NotFound
from lumiflow.common.quantity import parse_cpu, parse_memory
from lumiflow.common.settings import Settings
from lumiflow.controllers import ControllerManager, JobSettings, TrainingJobController, WorkloadController
from lumiflow.controllers.metrics.collector import MetricsCollector
from lumiflow.pipelines.recurring import RecurringRunController
from lumiflow.pipelines.runs import PipelineRunController, PipelineSettings
from lumiflow.resources import Membership, Profile, default_registry
from lumiflow.resources.profile import PERSONAL_LABEL
from lumiflow.resources.workload import ACTIVE_PHASES
from lumiflow.scheduler import Scheduler
from lumiflow.store import SQLStore, StoredObject
from lumiflow.store.model import Change
from lumiflow.tuning.experiments import ExperimentController
from lumiflow.tuning.trials import TrialController

log = logging.getLogger(__name__)


class ProfileCache:
    """Profiles' memberships, kept current by store notifications (read on every request)."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._members: dict[str, Membership] = {}
        self._loaded = False
        store.subscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.kind == "Profile":
            with self._lock:
                self._loaded = False

    def _load(self) -> None:
        members: dict[str, Membership] = {}
        for obj in self.store.list("Profile").items:
            try:
                members[obj.name] = Membership.of(Profile.parse(obj.to_manifest()).spec)
            except LumiflowError:
                continue
        with self._lock:
            self._members = members
            self._loaded = True

    def membership(self, profile: str) -> Membership | None:
        with self._lock:
            loaded = self._loaded
        if not loaded:
            self._load()
        with self._lock:
            return self._members.get(profile)

    def names(self) -> list[str]:
        with self._lock:
            loaded = self._loaded
        if not loaded:
            self._load()
        with self._lock:
            return sorted(self._members)


class Platform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        home = settings.home
        home.mkdir(parents=True, exist_ok=True)
        self.store = SQLStore(settings.database_url, pool_size=settings.database.pool_size)
        try:
            self.kinds = default_registry()
            auth = settings.auth
            #: The server's own token issuer (embedded mode; service accounts in oidc mode).
            self.identity = EmbeddedIdentity(
                store=self.store,
                key_path=home / "keys" / "token-signing.pem",
                issuer=auth.own_issuer,
                token_ttl=timedelta(days=auth.token_ttl_days),
            )
            #: Who a bearer token belongs to, whichever issuer signed it.
            self.authenticator: IdentityProvider
            self.authenticator, self.oidc = build_identity(auth, embedded=self.identity)
            signin = None
            if self.oidc is not None:
                assert auth.client_id is not None
                signin = OIDCSignIn(
                    self.oidc, client_id=auth.client_id, client_secret=auth.client_secret, scopes=auth.scopes
                )
            self.access = AccessPolicy(auth.roles)
            #: Dashboard sessions; their tokens are authenticated like any bearer token.
            self.sessions = SessionManager(
                store=self.store,
                authenticate=self.authenticate,
                signin=signin,
                ttl=timedelta(hours=auth.session_hours),
            )
            self.profiles = ProfileCache(self.store)
            #: Credentials of jobs' replicas for pushing metrics (lumiflow.report).
            self.report_tokens = ReportTokens(home / "keys" / "report.key")
            self._known_users: set[str] = set()
            self._known_lock = threading.Lock()

            self._workload_controller: WorkloadController | None = None
            self.clusters = ClusterSet(settings.clusters, home=home, notify=self._on_backend_change)
            ctl = settings.controllers
            self.scheduler = Scheduler(store=self.store, clusters=self.clusters, resync=ctl.resync_seconds)
            self.manager = ControllerManager(
                self.store, workers=ctl.workers_per_controller, resync=ctl.resync_seconds
            )
            self._workload_controller = WorkloadController(
                self.store, clusters=self.clusters, wake_scheduler=self.scheduler.wake
            )
            defaults = settings.replica_defaults
            self.manager.add(self._workload_controller)
            self.manager.add(
                TrainingJobController(
                    self.store,
                    settings=JobSettings(
                        public_url=settings.public_url,
                        default_cpu=parse_cpu(defaults.cpu),
                        default_memory=parse_memory(defaults.memory),
                        grace_period_seconds=ctl.grace_period_seconds,
                        restart_backoff_seconds=ctl.restart_backoff_seconds,
                        restart_backoff_max=ctl.restart_backoff_max,
                        jobs_root=home / "jobs",
                        report_token=self.report_tokens.issue,
                    ),
                )
            )
            #: Reads jobs' metrics (logs, files, event files) on demand, for trials and charts.
            self.metrics = MetricsCollector(self.store, self.clusters)
            self.manager.add(TrialController(self.store, registry=self.kinds, collector=self.metrics))
            self.manager.add(ExperimentController(self.store, collector=self.metrics))
            art = settings.artifacts
            #: Pipelines' artifacts: file:// under the home by default, or s3://, root://.
            self.artifacts = ArtifactStore(
                art.root or (home / "artifacts").as_uri(),
                storage_options=art.storage_options,
                readonly_roots=art.readonly_roots,
            )
            self.manager.add(
                PipelineRunController(
                    self.store,
                    settings=PipelineSettings(
                        runs_root=home / "runs",
                        jobs_root=home / "jobs",
                        default_cpu=parse_cpu(defaults.cpu),
                        default_memory=parse_memory(defaults.memory),
                        public_url=settings.public_url,
                    ),
                    artifacts=self.artifacts,
                    registry=self.kinds,
                )
            )
            self.manager.add(RecurringRunController(self.store, registry=self.kinds))
            self.store.subscribe(self._wake_scheduler_on)
        except Exception:
            self.store.close()
            raise
        self._started = False

    # --- wiring ------------------------------------------------------------------------

    def _on_backend_change(self, cluster: str, gang_id: str) -> None:
        if self._workload_controller is not None:
            self._workload_controller.on_backend_change(cluster, gang_id)

    def _wake_scheduler_on(self, change: Change) -> None:
        if change.kind not in ("Workload", "Profile") or change.writer == "scheduler":
            return
        # A Workload's status write while it holds its resources (launching, replicas starting
        # or running) changes nothing the scheduler decides on; its creation, spec changes,
        # deletion, return to the queue and end do.
        if change.kind == "Workload" and change.type == "status" and change.phase in ACTIVE_PHASES:
            return
        self.scheduler.wake()

    # --- life ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.manager.start()
        self.scheduler.start()
        self.scheduler.wake()

    def stop(self) -> None:
        if self._started:
            self.scheduler.stop()
            self.manager.stop()
        self.clusters.close()
        if self.oidc is not None:
            self.oidc.close()
        self.store.close()
        self._started = False

    # --- identity and profiles ------------------------------------------------------------

    @property
    def admin_token_path(self) -> Path:
        return self.settings.home / "admin.token"

    def bootstrap_admin(self) -> str | None:
        """Creates the admin user on first start; returns the new token, else None.

        Not in oidc mode without ``embedded_tokens``: the issuer's admin groups are the admins.
        """
        auth = self.settings.auth
        if not auth.accepts_own_tokens:
            return None
        try:
            self.store.get_user(auth.admin_user)
            return None
        except NotFound:
            pass
        try:
            self.store.create_user(auth.admin_user, [auth.admin_group])
        except AlreadyExists:
            return None
        issued = self.identity.issue(auth.admin_user, [auth.admin_group], description="bootstrap admin token")
        self.identity.refresh()
        path = self.admin_token_path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(issued.token + "\n")
        return issued.token

    def authenticate(self, bearer: str) -> Identity:
        """The caller behind a bearer token, with roles from their groups; their personal
        profile is created on their first request (API, CLI or dashboard sign-in)."""
        identity = self.access.classify(self.authenticator.authenticate(bearer))
        if identity.has_role:
            self.ensure_personal_profile(identity)
        return identity

    def authenticate_cached(self, bearer: str) -> Identity | None:
        """:meth:`authenticate` for a token seen recently, without any I/O; else None."""
        identity = self.authenticator.cached(bearer)
        if identity is None:
            return None
        identity = self.access.classify(identity)
        if identity.has_role:
            with self._known_lock:
                if identity.user not in self._known_users:
                    return None  # the first request creates the personal profile
        return identity

    def personal_profile(self, identity: Identity) -> str:
        return personal_profile_name(identity.user)

    def ensure_personal_profile(self, identity: Identity) -> None:
        """Creates the caller's personal profile on their first request."""
        with self._known_lock:
            if identity.user in self._known_users:
                return
        name = self.personal_profile(identity)
        if self.profiles.membership(name) is None:
            spec = {
                "owner": {"kind": "User", "name": identity.user},
                "resourceQuotaSpec": {"hard": dict(self.settings.profiles.default_quota)},
            }
            obj = StoredObject(
                kind="Profile",
                api_version=Profile.API_VERSION,
                profile="",
                name=name,
                spec=Profile.parse(
                    {
                        "apiVersion": Profile.API_VERSION,
                        "kind": "Profile",
                        "metadata": {"name": name},
                        "spec": spec,
                    }
                ).spec.model_dump(mode="json", exclude_none=True),
                labels={PERSONAL_LABEL: "true"},
            )
            try:
                created = self.store.create(obj)
                self.store.record_event(
                    created, type="Normal", reason="Created", message=f"personal profile of {identity.user}"
                )
            except AlreadyExists:
                pass
        with self._known_lock:
            self._known_users.add(identity.user)
