"""Every shipped workflow validates and runs offline on `mock` models."""

import json
from pathlib import Path

import pytest

from engine import api
from engine.runner import RunOptions

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted(p for p in (ROOT / "workflows").glob("*.yaml") if p.name != "policies.yaml")


def as_mock(path):
    names = api.load_workflow(path).models
    return tuple(f"models.{name}.provider=mock" for name in names)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_shipped_workflow_runs_on_mock(path, tmp_path):
    wf = api.load_workflow(path, as_mock(path), cache_dir=str(tmp_path / "cache"))
    state = api.run(wf, RunOptions(run_dir=tmp_path / "run", limit=3))
    assert (state.done, state.failed) == (3, 0)
    for spec in wf.outputs:
        records = [json.loads(x) for x in (tmp_path / "run" / spec.path).read_text().splitlines()]
        assert len(records) == 3 or spec.when, spec.path   # `when` may skip items


def test_aidsafe_and_zero_shot_write_the_same_dataset_shape(tmp_path):
    shapes = []
    for name in ("aidsafe", "zero-shot-cot"):
        path = ROOT / "workflows" / f"{name}.yaml"
        wf = api.load_workflow(path, as_mock(path), cache_dir=str(tmp_path / "cache"))
        api.run(wf, RunOptions(run_dir=tmp_path / name, limit=2))
        record = json.loads((tmp_path / name / "dataset.jsonl").read_text().splitlines()[0])
        sft = json.loads((tmp_path / name / "sft.jsonl").read_text().splitlines()[0])
        shapes.append((list(record), [m["role"] for m in sft["messages"]]))
    assert shapes[0] == shapes[1] == (["prompt", "thoughts", "response"], ["user", "assistant"])


def test_the_aidsafe_recipe_has_every_step_of_the_method():
    wf = api.load_workflow(ROOT / "workflows" / "aidsafe.yaml")
    assert [(s.id, s.kind) for s in wf.stages] == [
        ("intents", "generate"), ("seed", "generate"), ("deliberation", "deliberate"),
        ("refine", "refine")]
    deliberation = wf.stages[2].config
    assert [a.name for a in deliberation.agents] == ["agent_a", "agent_b"]
    assert {name for name, _ in deliberation.stop} >= {"agreement", "max_turns"}
    assert [f.kind for f in wf.stages[3].config.filters] == [
        "near_duplicate", "regex", "length", "llm"]
    assert [p.id for p in wf.policies] == ["violence", "fraud", "physical_harm",
                                           "illegal_activity", "helpfulness"]


def test_a_three_agent_five_turn_recipe_is_only_yaml(tmp_path):
    path = ROOT / "workflows" / "aidsafe.yaml"
    sets = as_mock(path) + (
        "stages.deliberation.agents=[{name: a, model: deliberator, prompt: deliberate.j2},"
        " {name: b, model: refiner, prompt: deliberate.j2},"
        " {name: c, model: deliberator, prompt: deliberate.j2}]",
        "stages.deliberation.order=random",
        "stages.deliberation.stop=[{max_turns: 5}]",
        "stages.refine.filters=[{kind: length, min_chars: 3}]")
    wf = api.load_workflow(path, sets, cache_dir=str(tmp_path / "cache"))
    api.run(wf, RunOptions(run_dir=tmp_path / "run", limit=1))
    trace = json.loads((tmp_path / "run" / "trace.jsonl").read_text())
    d = trace["stages"]["deliberation"]
    assert d["value"]["turns"] == 5 and d["stopped_by"]["rule"] == "max_turns"
    assert set(c["agent"] for c in d["calls"]) <= {"a", "b", "c"}
