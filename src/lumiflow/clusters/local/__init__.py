"""The ``local`` cluster backend: replicas as supervised child processes on this machine."""

from lumiflow.clusters.local.backend import LocalCluster

__all__ = ["LocalCluster"]
