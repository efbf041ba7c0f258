"""``from lumiflow import dsl``: the pipeline DSL (:mod:`lumiflow.pipelines.dsl`) and artifact types."""

from lumiflow.pipelines.dsl import *  # noqa: F403
