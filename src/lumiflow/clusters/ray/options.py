"""The options of a ``ray`` cluster (``clusters[].options`` in the configuration), checked
once when the backend is built: an unknown or malformed option is refused by name."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lumiflow.common.errors import ValidationFailed

OPTIONS = {
    "address": "the Ray head's GCS address, host:port (required)",
    "namespace": "Ray namespace of lumiflow's actors and placement groups (default lumiflow)",
    "strategy": "placement strategy of a gang: SPREAD (default), PACK, STRICT_SPREAD, STRICT_PACK",
    "placement_timeout": "seconds a launch waits for Ray to place a gang (default 10)",
    "start_timeout": "seconds a launch waits for the replicas' actors to start (default 120)",
    "node_dir": "directory for logs and working directories on each node (default: its temp dir)",
    "inherit_env": "variables of the node's environment that replicas inherit (besides the usual)",
}
STRATEGIES = ("SPREAD", "PACK", "STRICT_SPREAD", "STRICT_PACK")
_ADDRESS = re.compile(r"[^\s:/]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}")


@dataclass(frozen=True, slots=True)
class RayOptions:
    address: str
    namespace: str = "lumiflow"
    strategy: str = "SPREAD"
    placement_timeout: float = 10.0
    start_timeout: float = 120.0
    node_dir: str | None = None
    inherit_env: tuple[str, ...] = ()

    @classmethod
    def parse(cls, cluster: str, options: Mapping[str, Any]) -> RayOptions:
        field = f"clusters.{cluster}.options"

        def refuse(message: str, option: str | None = None) -> ValidationFailed:
            return ValidationFailed(
                f"cluster {cluster}: {message}", field=f"{field}.{option}" if option else field
            )

        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise refuse(f"unknown ray options {sorted(unknown)} (allowed: {sorted(OPTIONS)})")
        address = options.get("address")
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
            raise refuse(
                "option address must be the Ray head's GCS address host:port "
                f"(such as 10.0.0.5:6379), not {address!r}",
                "address",
            )
        strategy = str(options.get("strategy", "SPREAD")).upper()
        if strategy not in STRATEGIES:
            raise refuse(f"option strategy must be one of {', '.join(STRATEGIES)}", "strategy")
        seconds = {}
        for option, default in (("placement_timeout", 10.0), ("start_timeout", 120.0)):
            value = options.get(option, default)
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = -1.0
            if number <= 0:
                raise refuse(f"option {option} must be a positive number of seconds, not {value!r}", option)
            seconds[option] = number
        inherit = options.get("inherit_env", [])
        if not isinstance(inherit, list | tuple) or not all(isinstance(v, str) for v in inherit):
            raise refuse("option inherit_env must be a list of variable names", "inherit_env")
        node_dir = options.get("node_dir")
        return cls(
            address=address,
            namespace=str(options.get("namespace", "lumiflow")),
            strategy=strategy,
            node_dir=str(node_dir) if node_dir else None,
            inherit_env=tuple(inherit),
            **seconds,
        )
