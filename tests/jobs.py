"""Building TrainingJob manifests for tests, and following them through the API."""

from __future__ import annotations

from typing import Any

from tests.helpers import wait_until


def job_manifest(
    name: str,
    script: str,
    *,
    replicas: int = 1,
    restart: str = "Never",
    run_policy: dict[str, Any] | None = None,
    profile: str | None = None,
    cpu: str = "100m",
    memory: str = "64Mi",
    gpu: int | None = None,
    env: dict[str, str] | None = None,
    replica_type: str = "Worker",
    labels: dict[str, str] | None = None,
    cluster: str | None = None,
) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpu is not None:
        requests["nvidia.com/gpu"] = str(gpu)
    metadata: dict[str, Any] = {"name": name}
    if profile:
        metadata["namespace"] = profile
    if labels:
        metadata["labels"] = labels
    spec: dict[str, Any] = {
        "framework": "generic",
        "replicaSpecs": {
            replica_type: {
                "replicas": replicas,
                "restartPolicy": restart,
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "command": ["python3", "-c", script],
                                "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                                "resources": {"requests": requests},
                            }
                        ]
                    }
                },
            }
        },
        "runPolicy": run_policy or {},
    }
    if cluster:
        spec["cluster"] = cluster
    return {"apiVersion": "lumiflow.dev/v1", "kind": "TrainingJob", "metadata": metadata, "spec": spec}


def get_job(api: Any, name: str, profile: str = "admin", token: str | None = None) -> dict[str, Any]:
    r = api.request("GET", f"/api/v1/profiles/{profile}/trainingjobs/{name}", token=token)
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_phase(
    api: Any, name: str, *phases: str, profile: str = "admin", timeout: float = 30.0, token: str | None = None
) -> dict[str, Any]:
    wanted = phases or ("Succeeded", "Failed")
    return wait_until(
        lambda: (job := get_job(api, name, profile, token)) and job["status"].get("phase") in wanted and job,
        timeout=timeout,
        message=f"{name} to reach {wanted}",
    )


def submit(
    api: Any, manifest: dict[str, Any], token: str | None = None, profile: str | None = None
) -> dict[str, Any]:
    params = {"profile": profile} if profile else {}
    r = api.request("POST", "/api/v1/apply", json=manifest, token=token, params=params)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def events(api: Any, name: str, profile: str = "admin") -> list[dict[str, Any]]:
    r = api.request("GET", f"/api/v1/profiles/{profile}/trainingjobs/{name}/events")
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def logs(
    api: Any, name: str, replica: str | None = None, profile: str = "admin", attempt: int | None = None
) -> str:
    params: dict[str, Any] = {}
    if replica:
        params["replica"] = replica
    if attempt is not None:
        params["attempt"] = attempt
    r = api.request("GET", f"/api/v1/profiles/{profile}/trainingjobs/{name}/logs", params=params)
    assert r.status_code == 200, r.text
    return str(r.text)
