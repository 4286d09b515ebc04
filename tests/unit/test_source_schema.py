"""YAML positions and schema validation (no sockets)."""

import json
from pathlib import Path

import pytest

from engine.errors import RecipeError
from engine.loader import apply_overrides, load_workflow
from engine.schema import build_schema, dotted, validate
from engine.source import parse_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_positions_of_keys_and_values():
    doc = parse_yaml("a: 1\nb:\n  - x: 2\n    y: [1, 2]\n", "f.yaml")
    assert str(doc.loc(("b", 0, "y"))) == "f.yaml:4:8"
    assert str(doc.loc(("b", 0, "y"), key=True)) == "f.yaml:4:5"
    assert str(doc.loc(("b", 0, "missing"))) == "f.yaml:3:5"  # nearest located ancestor


def test_duplicate_key_and_syntax_error_are_located():
    with pytest.raises(RecipeError) as err:
        parse_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert str(err.value).startswith("f.yaml:3:1: error: duplicate key 'a'")
    with pytest.raises(RecipeError) as err:
        parse_yaml("a: [1\nb: 2\n", "f.yaml")
    assert "f.yaml:2:2: error: YAML syntax" in str(err.value)


def test_committed_schema_file_is_current():
    on_disk = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())
    assert on_disk == build_schema(), "run `make schema` to regenerate the schema file"


def test_unknown_nested_key_suggests_the_right_one():
    doc = parse_yaml("version: 1\nname: x\nmodels:\n  m: {provider: mock, concurency: 2}\n"
                     "stages: [{id: s, kind: generate, model: m, prompt_text: hi}]\n", "r.yaml")
    problems = validate(doc)
    assert [p.format() for p in problems] == [
        "r.yaml:4:23: error: unknown key 'concurency' in models.m\n"
        "  hint: did you mean 'concurrency'?"]


def test_all_schema_problems_are_reported_at_once():
    doc = parse_yaml("version: 2\nname: x\nmodels: {m: {provider: nope}}\n"
                     "stages: [{id: s, kind: gen}]\nextra: 1\n", "r.yaml")
    messages = [p.message for p in validate(doc)]
    assert len(messages) == 4, messages
    assert any("unknown provider 'nope'" in m for m in messages)
    assert any("unknown stage kind 'gen'" in m for m in messages)


def test_dotted_paths_name_stages_by_id():
    data = {"stages": [{"id": "a"}, {"id": "refine", "filters": [{}]}]}
    assert dotted(("stages", 1, "filters", 0), data) == "stages[1](refine).filters[0]"


def test_overrides_set_values_by_path_and_stage_id():
    doc = parse_yaml("models: {m: {provider: mock}}\nstages: [{id: s, model: m}]\n", "r.yaml")
    assert apply_overrides(doc, ["models.m.provider=openai", "stages.s.params.max_tokens=7",
                                 "input.limit=3"]) == []
    assert doc.data["models"]["m"]["provider"] == "openai"
    assert doc.data["stages"][0]["params"] == {"max_tokens": 7}
    assert doc.data["input"] == {"limit": 3}
    problems = apply_overrides(doc, ["nonsense"])
    assert problems and "expected --set PATH=VALUE" in problems[0].message


def test_shipped_workflows_validate():
    for recipe in sorted((ROOT / "workflows").glob("*.yaml")):
        if recipe.name == "policies.yaml":
            continue
        workflow = load_workflow(recipe)
        assert workflow.stages, recipe


def test_schema_and_reference_problems_are_reported_together(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"id": 1, "prompt": "x"}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nname: x\nmodels:\n  m: {provider: mock, concurency: 2}\n"
                      "  ok: {provider: mock}\ninput: {path: in.jsonl}\nstages:\n"
                      "  - {id: a, kind: generate, model: m, prompt_text: '{{ input.promt }}'}\n"
                      "  - {id: b, kind: generate, model: nope, prompt_text: '{{ a }}'}\n")
    with pytest.raises(RecipeError) as err:
        load_workflow(recipe)
    messages = [p.message for p in err.value.problems]
    assert len(messages) == 3, messages
    assert "unknown key 'concurency'" in messages[0]
    assert "input.promt" in messages[1] and "unknown model 'nope'" in messages[2]


def test_only_true_and_false_are_booleans():
    doc = parse_yaml("cache: {mode: off}\nanswer: no\nflag: true\n", "r.yaml")
    assert doc.data == {"cache": {"mode": "off"}, "answer": "no", "flag": True}


def test_a_pasted_secret_is_never_echoed(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nname: x\nmodels: {m: {provider: openai, model: x}}\n"
                      "stages: [{id: a, kind: generate, model: m, prompt_text: hi}]\n")
    for override in ["models.m.api_key_env=sk-proj-SECRET123",
                     "models.m.base_url=http://sk-SECRET123@host/v1"]:
        with pytest.raises(RecipeError) as err:
            load_workflow(recipe, (override,))
        assert "SECRET" not in str(err.value), str(err.value)
