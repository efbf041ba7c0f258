"""MPIJob (v2beta1): the hostfile and the launcher's variables, as mpi-operator sets them.

The hostfile has one line per worker (the launcher first with ``runLauncherAsWorker``):
``host slots=N`` for OpenMPI, ``host:N`` for Intel MPI and MPICH. The launcher gets
``K_MPI_JOB_ROLE=launcher``, the implementation's variables pointing at the hostfile
(``OMPI_MCA_orte_default_hostfile``, ``I_MPI_HYDRA_HOST_FILE`` or ``HYDRA_HOST_FILE``) and
its slots, and, unless it also works, empty ``NVIDIA_VISIBLE_DEVICES`` and
``NVIDIA_DRIVER_CAPABILITIES``; workers get ``K_MPI_JOB_ROLE=worker``.

Kubernetes mounts the hostfile from a ConfigMap at ``/etc/mpi/hostfile``. Hosts are only
known once the gang is placed, so here the hostfile's text travels in
``LUMIFLOW_MPI_HOSTFILE`` (with address placeholders the backend resolves) and the
launcher's command is wrapped in a POSIX shell line that writes it to the job's directory
and then ``exec``s the user's command (same process, same signals). A worker whose
container has no command runs sshd under mpi-operator; here it idles until the job ends
(the launcher's ``mpirun`` starts ranks on 127.0.0.1 itself on the local cluster).

Success: when the launcher succeeded.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from lumiflow.controllers.frameworks.base import FrameworkLogic, JobContext, all_succeeded, host
from lumiflow.resources.frameworks import Framework
from lumiflow.resources.trainingjob import ReplicaState, TrainingJob

HOSTFILE_ENV = "LUMIFLOW_MPI_HOSTFILE"
RSH_ARGS = "-o ConnectionAttempts=10"
#: Writes $LUMIFLOW_MPI_HOSTFILE to the path in $1, then runs the rest of the arguments.
WRITE_HOSTFILE = (
    'mkdir -p "$(dirname "$1")" && printf "%s" "$' + HOSTFILE_ENV + '" > "$1" && shift && exec "$@"'
)
#: What a worker without a command runs (mpi-operator: /usr/sbin/sshd -De).
IDLE = ["sleep", "2147483647"]


def hostfile_path(ctx: JobContext) -> Path:
    base = ctx.job_dir if ctx.job_dir is not None else Path(tempfile.gettempdir()) / f"lumiflow-{ctx.uid}"
    return base / "mpi" / "hostfile"


def hostfile(job: TrainingJob) -> str:
    slots = job.spec.slotsPerWorker or 1
    hosts: list[str] = []
    if job.spec.runLauncherAsWorker:
        hosts.append(host("Launcher", 0))
    workers = job.spec.replicaSpecs.get("Worker")
    hosts.extend(host("Worker", i) for i in range(workers.replicas if workers else 0))
    if job.spec.mpiImplementation in ("Intel", "MPICH"):
        return "".join(f"{h}:{slots}\n" for h in hosts)
    return "".join(f"{h} slots={slots}\n" for h in hosts)


class MPI(FrameworkLogic):
    framework = Framework.MPI

    def environment(self, job: TrainingJob, replica_type: str, index: int, ctx: JobContext) -> dict[str, str]:
        if replica_type != "Launcher":
            return {"K_MPI_JOB_ROLE": "worker"}
        path = str(hostfile_path(ctx))
        slots = str(job.spec.slotsPerWorker or 1)
        env = {"K_MPI_JOB_ROLE": "launcher"}
        implementation = job.spec.mpiImplementation or "OpenMPI"
        if implementation == "OpenMPI":
            env.update(
                {
                    "OMPI_MCA_orte_keep_fqdn_hostnames": "true",
                    "OMPI_MCA_orte_default_hostfile": path,
                    "OMPI_MCA_plm_rsh_args": RSH_ARGS,
                    "OMPI_MCA_orte_set_default_slots": slots,
                }
            )
        elif implementation == "Intel":
            env.update(
                {
                    "I_MPI_HYDRA_HOST_FILE": path,
                    "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS": RSH_ARGS,
                    "I_MPI_PERHOST": slots,
                }
            )
        else:
            env.update({"HYDRA_HOST_FILE": path, "HYDRA_LAUNCH_EXTRA_ARGS": RSH_ARGS})
        if not job.spec.runLauncherAsWorker:
            env.update({"NVIDIA_VISIBLE_DEVICES": "", "NVIDIA_DRIVER_CAPABILITIES": ""})
        env[HOSTFILE_ENV] = hostfile(job)
        return env

    def command(
        self, job: TrainingJob, replica_type: str, index: int, argv: list[str], ctx: JobContext
    ) -> list[str]:
        if replica_type == "Launcher":
            return ["sh", "-c", WRITE_HOSTFILE, "lumiflow-mpi-hostfile", str(hostfile_path(ctx)), *argv]
        return argv or list(IDLE)

    def succeeded(self, job: TrainingJob, replicas: Sequence[ReplicaState]) -> bool:
        return all_succeeded(job, replicas, "Launcher")
