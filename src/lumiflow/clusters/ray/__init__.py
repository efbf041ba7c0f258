"""The ``ray`` cluster backend: a Workload's gang as a Ray placement group with one actor per
replica. Ray is an optional dependency (``pip install 'lumiflow[ray]'``); it is imported on
first use, so this package imports without it."""

from lumiflow.clusters.ray.backend import RayCluster

__all__ = ["RayCluster"]
