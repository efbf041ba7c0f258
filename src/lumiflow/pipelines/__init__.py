"""Pipelines: the DSL (Kubeflow Pipelines v2's words), the intermediate spec and the compiler.

``lumiflow.pipelines.dsl`` (also ``from lumiflow import dsl``) writes pipelines,
``lumiflow.pipelines.compiler`` turns them into a ``lumiflow.pipelines.spec.PipelineSpec``
that the PipelineRun controller runs. The authoring modules (``dsl``, ``components``,
``spec``, ``graph``, ``compiler``) import only ``lumiflow.runtime``, ``lumiflow.common``,
pydantic and PyYAML, because the CLI compiles on the user's machine.
"""
