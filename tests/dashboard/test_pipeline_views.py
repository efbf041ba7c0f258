"""What the pipeline pages compute, without a server: a run's graph from its spec and its
nodes (groups, a skipped branch, loops drawn per iteration or compactly, edges from
dependsOn and arguments), its summary and steps, a step's values, a lineage graph, and the
SVG, which is well-formed XML in which user text stays text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from lumiflow.server.dashboard import dag_svg
from lumiflow.server.dashboard.pipeline_views import (
    condition_text,
    default_step,
    human_size,
    lineage_view,
    pipeline_steps,
    run_graph,
    step_rows,
    step_view,
    summarize_run,
)
from tests.dashboard.pipelines_for_pages import BAD_NAME, NOTE, demo, spec_of

pytestmark = pytest.mark.timeout(60)

SVG = "{http://www.w3.org/2000/svg}"
EH = "exit-handler-1"


def run_doc(nodes: dict[str, Any], state: str = "RUNNING", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "r", "namespace": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"pipelineSpec": spec_of(demo), "parameters": {"n": 5}},
        "status": {"state": state, "startTime": "2026-01-01T00:00:00Z", "nodes": nodes, **status},
    }


DATA = {"uri": "file:///a/data", "digest": "sha256:" + "ab" * 32, "size": 2048, "type": "Dataset"}
RUNNING = {
    EH: {"state": "RUNNING"},
    f"{EH}/make-lines": {
        "state": "SUCCEEDED",
        "cached": True,
        "attempts": 0,
        "outputs": {"data": {"artifact": {**DATA, "metadata": {"note": NOTE, "lines": 5}}}},
        "inputs": {"n": 5, "note": NOTE},
    },
    f"{EH}/count-lines": {"state": "SUCCEEDED", "outputs": {"Output": 5}, "workload": "r-1-1", "attempts": 1},
    f"{EH}/condition-1": {"state": "RUNNING"},
    f"{EH}/condition-1/big": {"state": "RUNNING", "workload": "r-2-1", "attempts": 1},
    f"{EH}/condition-2": {"state": "SKIPPED", "message": "its condition is false"},
    f"{EH}/boom": {"state": "FAILED", "message": "exit code 1", "workload": "r-3-2", "attempts": 2},
    f"{EH}/for-1": {"state": "RUNNING", "iterations": 3},
    f"{EH}/for-1[0]/square": {"state": "SUCCEEDED"},
    f"{EH}/for-1[1]/square": {"state": "RUNNING"},
}


def flat(nodes: list[dag_svg.GraphNode]) -> dict[str, dag_svg.GraphNode]:
    out = {}
    for n in nodes:
        out[n.id] = n
        out.update(flat(n.children))
    return out


def test_the_graph_follows_the_spec_and_the_states() -> None:
    graph = run_graph(spec_of(demo), RUNNING, final=False)
    nodes = flat(graph.roots)
    assert [n.id for n in graph.roots] == ["announce", EH]
    assert nodes[EH].kind == "exit-handler" and nodes[EH].detail == "then announce"
    assert nodes[f"{EH}/condition-1"].kind == "condition"
    assert nodes[f"{EH}/condition-1"].detail == "count-lines.Output > 3"
    assert nodes[f"{EH}/condition-2"].detail == "not (count-lines.Output > 3)"
    # A skipped branch's step never got a node: it is drawn skipped, like its group.
    assert nodes[f"{EH}/condition-2/small"].state == "SKIPPED"
    # Not started yet: pending (the exit step), including the third iteration.
    assert nodes["announce"].state == "PENDING"
    assert [n.id for n in nodes[f"{EH}/for-1"].children] == [f"{EH}/for-1[{i}]" for i in range(3)]
    assert nodes[f"{EH}/for-1[2]/square"].state == "PENDING"
    assert nodes[f"{EH}/make-lines"].cached and nodes[f"{EH}/boom"].attempts == 2
    assert nodes[f"{EH}/boom"].label == BAD_NAME
    edges = {(e.source, e.target, e.kind) for e in graph.edges}
    assert edges == {
        (f"{EH}/make-lines", f"{EH}/count-lines", "data"),
        (f"{EH}/count-lines", f"{EH}/condition-1", "data"),
        (f"{EH}/count-lines", f"{EH}/condition-2", "data"),
        (f"{EH}/count-lines", f"{EH}/boom", "data"),
        (EH, "announce", "exit"),
    }  # count-lines -> big is covered by count-lines -> condition-1
    # Once the run has ended, what never got a node did not run.
    done = flat(run_graph(spec_of(demo), RUNNING, final=True).roots)
    assert done["announce"].state == "SKIPPED"


def test_long_loops_are_drawn_once_with_their_count() -> None:
    nodes = {
        **RUNNING,
        f"{EH}/for-1": {"state": "RUNNING", "iterations": 40},
        **{f"{EH}/for-1[{i}]/square": {"state": "SUCCEEDED"} for i in range(38)},
        f"{EH}/for-1[38]/square": {"state": "FAILED"},
        f"{EH}/for-1[39]/square": {"state": "RUNNING"},
    }
    graph = run_graph(spec_of(demo), nodes, final=False)
    body = flat(graph.roots)[f"{EH}/for-1[*]/square"]
    assert body.count == 40 and body.state == "FAILED"
    assert body.link == f"{EH}/for-1[38]/square"  # a click opens the failed iteration
    assert body.summary == "1 failed, 1 running, 38 ok"
    # The table still lists every iteration.
    rows = step_rows(run_doc(nodes))
    assert len([r for r in rows if r.id.startswith(f"{EH}/for-1[")]) == 40
    svg = dag_svg.run_graph(graph.roots, graph.edges, href=lambda n: f"?step={n}", label="x")
    root = ET.fromstring(str(svg))
    compact = root.find(f".//{SVG}g[@data-node='{EH}/for-1[*]/square']")
    assert compact is not None and "compact" in compact.attrib["class"]


def test_summary_rows_and_default_step() -> None:
    doc = run_doc(RUNNING)
    summary = summarize_run(doc)
    assert (summary.pipeline, summary.inline, summary.state) == ("dashboard-demo", True, "RUNNING")
    # Ended: make-lines, count-lines, boom, square[0] and the skipped branch's small.
    assert (summary.done, summary.total) == (5, 9)
    assert not summary.final
    rows = step_rows(doc)
    assert [r.id for r in rows][:3] == ["announce", f"{EH}/make-lines", f"{EH}/count-lines"]
    assert default_step(doc) == f"{EH}/boom"
    assert pipeline_steps(spec_of(demo)) == 7


def test_a_steps_values() -> None:
    view = step_view(run_doc(RUNNING), f"{EH}/make-lines")
    assert view is not None and view.cached and view.state == "SUCCEEDED"
    (data,) = view.outputs
    assert data.artifact is not None and data.artifact["uri"] == DATA["uri"]
    assert data.metadata == [("lines", "5"), ("note", NOTE)]
    assert [(v.name, v.text) for v in view.inputs] == [("n", "5"), ("note", NOTE)]
    assert step_view(run_doc(RUNNING), EH) is None  # a group is not a step
    assert step_view(run_doc(RUNNING), "nope") is None
    pending = step_view(run_doc(RUNNING), "announce")
    assert pending is not None and pending.state == "PENDING" and pending.workload is None
    launched = step_view(
        run_doc({f"{EH}/big": {}, f"{EH}/condition-1/big": {"workload": "TrainingJob/j"}}),
        f"{EH}/condition-1/big",
    )
    assert launched is not None and launched.launched == ("TrainingJob", "j")
    assert human_size(2048) == "2.0 KiB" and human_size(12) == "12 B" and human_size(None) == "-"
    assert condition_text(
        {"op": "and", "args": [{"op": "==", "left": {"parameter": "a"}, "right": {"constant": "x"}}]}
    ) == ('(parameters.a == "x")')


def test_user_text_in_the_svg_is_text() -> None:
    nodes = {**RUNNING, f"{EH}/boom": {"state": "FAILED", "message": "<script>alert(1)</script> & more"}}
    graph = run_graph(spec_of(demo), nodes, final=False)
    svg = str(
        dag_svg.run_graph(graph.roots, graph.edges, href=lambda n: f'?step="{n}"&x=<', label="<i>run</i>")
    )
    root = ET.fromstring(svg)  # well-formed: every name and message escaped
    assert not [e for e in root.iter() if e.tag.removeprefix(SVG) in ("b", "script", "i", "img")]
    boom = root.find(f".//{SVG}g[@data-node='{EH}/boom']")
    assert boom is not None and "state-failed" in boom.attrib["class"]
    texts = "".join(boom.itertext())
    assert "<b>boom</b>" in texts and "<script>alert(1)</script> & more" in texts
    links = [a.attrib["href"] for a in root.iter(f"{SVG}a")]
    assert f'?step="{EH}/boom"&x=<' in links
    assert root.attrib["aria-label"] == "<i>run</i>"
    assert "style" not in svg


def test_lineage_boxes_and_edges() -> None:
    graph = {
        "artifacts": [
            {
                "id": 1,
                "uri": "file:///d",
                "type": "Dataset",
                "name": "data",
                "digest": "sha256:" + "0" * 64,
                "size": 5,
            },
            {
                "id": 2,
                "uri": "file:///m",
                "type": "Model",
                "name": "<b>model</b>",
                "digest": None,
                "size": None,
            },
        ],
        "executions": [
            {
                "id": 7,
                "type": "PipelineStep",
                "name": "run-a/train",
                "state": "COMPLETE",
                "properties": {
                    "run": "run-a",
                    "step": "train",
                    "component": "train",
                    "parameters": {"lr": NOTE},
                },
            }
        ],
        "events": [
            {"execution": 7, "artifact": 1, "type": "INPUT", "name": "data"},
            {"execution": 7, "artifact": 2, "type": "OUTPUT", "name": "model"},
            {"execution": 9, "artifact": 2, "type": "OUTPUT", "name": "gone"},
        ],
    }
    view = lineage_view(
        graph,
        focus="file:///m",
        artifact_href=lambda uri: f"/lineage?uri={uri}",
        execution_href=lambda x: f"/runs/{x['properties']['run']}",
    )
    assert [(b.id, b.kind, b.focus) for b in view.boxes] == [
        ("x7", "execution", False),
        ("a1", "artifact", False),
        ("a2", "artifact", True),
    ]
    assert [(e.source, e.target, e.kind) for e in view.edges] == [
        ("a1", "x7", "INPUT"),
        ("x7", "a2", "OUTPUT"),
    ]
    assert "run run-a" in view.boxes[0].lines and f"lr={NOTE}"[:61] in "\n".join(view.boxes[0].lines)
    svg = str(dag_svg.lineage_graph(view.boxes, view.edges, label="lineage"))
    root = ET.fromstring(svg)
    assert not [e for e in root.iter() if e.tag.removeprefix(SVG) in ("b", "img")]
    ys = {
        g.attrib["data-node"]: float(g.find(f"{SVG}rect").attrib["y"])  # type: ignore[union-attr]
        for g in root.iter(f"{SVG}g")
        if "data-node" in g.attrib
    }
    assert ys["a1"] < ys["x7"] < ys["a2"]  # data above the step above the model
    artifact_rect = root.find(f".//{SVG}g[@data-node='a2']/{SVG}rect")
    assert artifact_rect is not None and artifact_rect.attrib["rx"] == "14"
