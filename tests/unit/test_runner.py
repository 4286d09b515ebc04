"""The runner end to end on `mock` models (no sockets)."""

import json
import textwrap

import pytest

from engine import api
from engine.errors import RecipeError
from engine.llm.cache import CallCache
from engine.runner import RunOptions, read_done


def write_recipe(tmp_path, body, rows=None, name="t"):
    rows = rows if rows is not None else [{"id": f"r{i}", "prompt": f"question {i}"}
                                          for i in range(5)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    header = f"version: 1\nname: {name}\ninput: {{path: in.jsonl, id_field: id}}\n" \
             "cache: {dir: cache}\n"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(header + textwrap.dedent(body))
    return recipe


MOCK = """
models:
  m:
    provider: mock
    replies:
      - {prompt: "question 3", reply: "not json at all"}
      - {stage: gen, reply: {answer: "yes", score: 4}}
"""
GEN = """
stages:
  - id: gen
    kind: generate
    model: m
    prompt_text: "Answer {{ input.prompt }}"
    schema: {type: object, required: [answer], properties: {answer: {type: string},
             score: {type: integer}}}
outputs:
  - {format: jsonl, path: out.jsonl, fields: {id: "{{ input.id }}", answer: "{{ gen.answer }}",
     score: "{{ gen.score }}", both: "{{ gen.answer }}-{{ gen.score }}"}}
"""


def run(recipe, tmp_path, **kw):
    wf = api.load_workflow(recipe, tuple(kw.pop("sets", ())), offline=kw.pop("offline", False))
    return api.run(wf, RunOptions(run_dir=tmp_path / "run", **kw))


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_run_writes_records_in_order_and_failures(tmp_path):
    state = run(write_recipe(tmp_path, MOCK + GEN), tmp_path)
    out = lines(tmp_path / "run" / "out.jsonl")
    assert [r["id"] for r in out] == ["r0", "r1", "r2", "r4"]
    assert out[0] == {"id": "r0", "answer": "yes", "score": 4, "both": "yes-4"}
    failures = lines(tmp_path / "run" / "failures.jsonl")
    assert [(f["id"], f["stage"], f["kind"]) for f in failures] == [
        ("r3", "gen", "invalid_reply")]
    assert "not JSON" in failures[0]["error"]
    assert (state.done, state.failed) == (4, 1)
    trace = lines(tmp_path / "run" / "trace.jsonl")
    call = trace[0]["stages"]["gen"]["calls"][0]
    assert call["messages"] == [{"role": "user", "content": "Answer question 0"}]
    assert call["parsed"] == {"answer": "yes", "score": 4} and call["cache_hit"] is False
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["done"] == 4
    assert manifest["per_stage"]["gen"]["calls"] == 4
    assert set(manifest["hashes"]["sha256"]) == {"r.yaml", "in.jsonl"}


def test_rerun_resumes_and_fresh_replays_from_cache_identically(tmp_path):
    recipe = write_recipe(tmp_path, MOCK + GEN)
    run(recipe, tmp_path)
    first = (tmp_path / "run" / "out.jsonl").read_bytes()
    again = run(recipe, tmp_path)
    # r3 (invalid) is tried again: its 3 attempts come from the cache
    assert (again.done, again.resumed, again.llm.stats.calls) == (0, 4, 3)
    assert again.llm.stats.cache_hits == 3
    assert (tmp_path / "run" / "out.jsonl").read_bytes() == first
    fresh = run(recipe, tmp_path, fresh=True)
    assert fresh.llm.stats.calls == fresh.llm.stats.cache_hits == 7
    assert (tmp_path / "run" / "out.jsonl").read_bytes() == first


def test_torn_trace_line_is_repaired_without_duplicates(tmp_path):
    recipe = write_recipe(tmp_path, MOCK + GEN)
    run(recipe, tmp_path, limit=2)
    trace = tmp_path / "run" / "trace.jsonl"
    with trace.open("a") as fh:
        fh.write('{"id": "r2", "stages": {"gen"')          # a kill mid-write
    assert read_done(trace) == {'"r0"', '"r1"'}
    run(recipe, tmp_path)
    assert [r["id"] for r in lines(trace)] == ["r0", "r1", "r2", "r4"]
    assert [r["id"] for r in lines(tmp_path / "run" / "out.jsonl")] == ["r0", "r1", "r2", "r4"]


def test_samples_are_distinct_cache_entries(tmp_path):
    body = """
    models: {m: {provider: mock}}
    stages:
      - {id: gen, kind: generate, model: m, prompt_text: "{{ input.prompt }}", samples: 3}
    """
    run(write_recipe(tmp_path, body, rows=[{"id": "a", "prompt": "p"}]), tmp_path)
    value = lines(tmp_path / "run" / "trace.jsonl")[0]["stages"]["gen"]["value"]
    assert len(value) == 3 and len(set(value)) == 3
    assert CallCache(tmp_path / "cache").stats()["entries"] == 3


def test_invalid_reply_is_asked_again_with_the_next_sample(tmp_path):
    body = """
    models:
      m: {provider: mock, replies: [{replies: ["broken {", '{"ok": true}']}]}
    stages:
      - {id: gen, kind: generate, model: m, prompt_text: "{{ input.prompt }}", parse: json,
         max_attempts: 2}
    """
    run(write_recipe(tmp_path, body, rows=[{"id": "a", "prompt": "p"}]), tmp_path)
    calls = lines(tmp_path / "run" / "trace.jsonl")[0]["stages"]["gen"]["calls"]
    assert [(c["sample"], "error" in c) for c in calls] == [(0, True), (1, False)]


def test_offline_with_empty_cache_fails_items_cleanly(tmp_path):
    state = run(write_recipe(tmp_path, MOCK + GEN), tmp_path, offline=True)
    assert (state.done, state.failed) == (0, 5)
    failure = lines(tmp_path / "run" / "failures.jsonl")[0]
    assert failure["kind"] == "offline_miss" and failure["stage"] == "gen"
    assert "model 'm'" in failure["error"]


def test_when_skips_a_stage_and_later_stages_see_none(tmp_path):
    body = """
    models: {m: {provider: mock, replies: [{reply: "fine"}]}}
    stages:
      - {id: a, kind: generate, model: m, prompt_text: "{{ input.prompt }}",
         when: "{{ input.id != 'r1' }}"}
      - {id: b, kind: generate, model: m, prompt_text: "{{ a if a is not none else 'none' }}"}
    """
    run(write_recipe(tmp_path, body, rows=[{"id": "r0", "prompt": "x"},
                                           {"id": "r1", "prompt": "y"}]), tmp_path)
    trace = lines(tmp_path / "run" / "trace.jsonl")
    assert trace[1]["stages"]["a"] == {"skipped": True, "value": None}
    assert trace[1]["stages"]["b"]["calls"][0]["messages"][0]["content"] == "none"


def test_duplicate_ids_and_bad_rows_fail_alone(tmp_path):
    body = """
    models: {m: {provider: mock}}
    stages: [{id: a, kind: generate, model: m, prompt_text: "{{ input.prompt }}"}]
    """
    recipe = write_recipe(tmp_path, body, rows=[{"id": "x", "prompt": "1"},
                                                {"id": "x", "prompt": "2"}])
    with (tmp_path / "in.jsonl").open("a") as fh:
        fh.write("{broken\n" + json.dumps({"id": "y", "prompt": "3"}) + "\n")
    state = run(recipe, tmp_path)
    kinds = [f["kind"] for f in lines(tmp_path / "run" / "failures.jsonl")]
    assert kinds == ["duplicate_id", "bad_input"] and state.done == 2


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_csv_and_json_inputs(tmp_path, fmt):
    body = """
    models: {m: {provider: mock, replies: [{reply: ok}]}}
    stages: [{id: a, kind: generate, model: m, prompt_text: "{{ input.prompt }}"}]
    """
    recipe = write_recipe(tmp_path, body.replace("", ""), rows=[])
    rows = [{"id": "a", "prompt": "one"}, {"id": "b", "prompt": "two"}]
    path = tmp_path / f"in.{fmt}"
    path.write_text("id,prompt\na,one\nb,two\n" if fmt == "csv" else json.dumps(rows))
    wf = api.load_workflow(recipe, (), input_path=str(path))
    state = api.run(wf, RunOptions(run_dir=tmp_path / "run"))
    assert state.done == 2


def test_a_recipe_without_input_says_so(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nname: t\nmodels: {m: {provider: mock}}\n"
                      "stages: [{id: a, kind: generate, model: m, prompt_text: hi}]\n")
    with pytest.raises(RecipeError) as err:
        api.run(api.load_workflow(recipe), RunOptions(run_dir=tmp_path / "run"))
    assert "no input" in str(err.value)


def test_render_calls_no_model(tmp_path):
    trace = api.render_item(api.load_workflow(write_recipe(tmp_path, MOCK + GEN)), "r2")
    assert trace["id"] == "r2"
    assert trace["stages"]["gen"]["calls"][0]["messages"][0]["content"] == "Answer question 2"
    assert not (tmp_path / "cache").exists()


def test_resuming_with_a_changed_recipe_is_refused(tmp_path):
    recipe = write_recipe(tmp_path, MOCK + GEN)
    run(recipe, tmp_path, limit=2)
    from engine.errors import RunError
    with pytest.raises(RunError) as err:
        run(recipe, tmp_path, sets=["stages.gen.prompt_text=New {{ input.prompt }}"])
    assert "different version of this recipe" in str(err.value) and "--fresh" in err.value.hint
    state = run(recipe, tmp_path, sets=["models.m.concurrency=3"])   # speed only: resumes
    assert state.resumed == 2


def test_editing_mock_replies_changes_the_cache_key(tmp_path):
    recipe = write_recipe(tmp_path, MOCK + GEN, rows=[{"id": "r3", "prompt": "question 3"}])
    assert run(recipe, tmp_path).failed == 1
    fixed = ["models.m.replies=[{stage: gen, reply: {answer: fixed, score: 1}}]"]
    state = run(recipe, tmp_path, sets=fixed, fresh=True)
    assert state.done == 1 and state.llm.stats.cache_hits == 0


def test_a_duplicate_id_is_reported_again_on_resume(tmp_path):
    body = """
    models: {m: {provider: mock}}
    stages: [{id: a, kind: generate, model: m, prompt_text: "{{ input.prompt }}"}]
    """
    recipe = write_recipe(tmp_path, body, rows=[{"id": "x", "prompt": "1"},
                                                {"id": "x", "prompt": "2"}])
    run(recipe, tmp_path)
    again = run(recipe, tmp_path)
    assert [f["kind"] for f in lines(tmp_path / "run" / "failures.jsonl")] == ["duplicate_id"]
    assert (again.done, again.resumed, again.failed) == (0, 1, 1)


def test_csv_rows_with_extra_fields_fail_alone(tmp_path):
    body = """
    models: {m: {provider: mock}}
    stages: [{id: a, kind: generate, model: m, prompt_text: "{{ input.prompt }}"}]
    """
    recipe = write_recipe(tmp_path, body, rows=[])
    (tmp_path / "in.csv").write_text("id,prompt\na,one\nb,two,extra\n")
    wf = api.load_workflow(recipe, (), input_path=str(tmp_path / "in.csv"))
    state = api.run(wf, RunOptions(run_dir=tmp_path / "run"))
    failure = lines(tmp_path / "run" / "failures.jsonl")[0]
    assert (state.done, failure["kind"]) == (1, "bad_input")
    assert "more fields than the header" in failure["error"]


def test_a_template_error_at_render_fails_only_that_item(tmp_path):
    body = """
    models: {m: {provider: mock}}
    stages: [{id: a, kind: generate, model: m, prompt_text: "{{ 10 // input.n }}"}]
    """
    recipe = write_recipe(tmp_path, body, rows=[{"id": "a", "n": 2}, {"id": "b", "n": 0}])
    state = run(recipe, tmp_path)
    failure = lines(tmp_path / "run" / "failures.jsonl")[0]
    assert (state.done, failure["id"], failure["kind"]) == (1, "b", "template")
    assert "ZeroDivisionError" in failure["error"]


def test_a_lone_undefined_expression_is_an_error_not_null(tmp_path):
    body = """
    models: {m: {provider: mock}}
    stages: [{id: a, kind: generate, model: m, prompt_text: "{{ input.prompt }}"}]
    outputs: [{format: jsonl, path: o.jsonl, fields: {c: "{{ input.get('cat', none) }}",
               d: "{{ input.cat }}"}}]
    """
    recipe = write_recipe(tmp_path, body, rows=[{"id": "a", "prompt": "p", "cat": 1},
                                                {"id": "b", "prompt": "q"}])
    state = run(recipe, tmp_path)
    assert state.done == 1 and lines(tmp_path / "run" / "failures.jsonl")[0]["id"] == "b"


def test_a_bug_in_a_stage_fails_its_item_and_the_run_goes_on(tmp_path, monkeypatch):
    from engine.stages.generate import Generate
    real = Generate.run

    async def flaky(stage, item):
        if item.id == "r1":
            raise TypeError("boom")
        return await real(stage, item)

    monkeypatch.setattr(Generate, "run", staticmethod(flaky))
    state = run(write_recipe(tmp_path, MOCK + GEN), tmp_path)
    failures = lines(tmp_path / "run" / "failures.jsonl")
    assert ("r1", "internal_error", "TypeError: boom") in [
        (f["id"], f["kind"], f["error"]) for f in failures]
    assert state.done == 3


@pytest.mark.parametrize("policy,calls,kind,value", [
    (", on_invalid: fail", 1, "invalid_reply", None),
    (", on_invalid: retry, max_attempts: 2", 2, "invalid_reply", None),
    ("", 3, "invalid_reply", None),
    (", on_invalid: keep_raw", 1, None, "   "),
])
def test_on_invalid_policies(tmp_path, policy, calls, kind, value):
    body = """
    models: {m: {provider: mock, replies: [{reply: "   "}]}}
    stages:
      - {id: a, kind: generate, model: m, prompt_text: "{{ input.prompt }}"POLICY}
    """.replace("POLICY", policy)
    recipe = write_recipe(tmp_path, body, rows=[{"id": "a", "prompt": "p"}])
    run(recipe, tmp_path)
    if kind:
        failure = lines(tmp_path / "run" / "failures.jsonl")[0]
        assert failure["kind"] == kind and "reply is empty" in failure["error"]
        assert len(failure["trace"]["stages"]["a"]["calls"]) == calls
    else:
        stage = lines(tmp_path / "run" / "trace.jsonl")[0]["stages"]["a"]
        assert stage["value"] == value and stage["calls"][-1]["kept_raw"] is True


def test_on_invalid_fail_with_max_attempts_is_refused(tmp_path):
    body = """
    models: {m: {provider: mock}}
    stages:
      - {id: a, kind: generate, model: m, prompt_text: hi, on_invalid: fail, max_attempts: 3}
    """
    with pytest.raises(RecipeError) as err:
        api.load_workflow(write_recipe(tmp_path, body))
    assert "max_attempts would never be used" in str(err.value)


def test_editing_an_included_template_misses_the_item_replay(tmp_path):
    (tmp_path / "main.j2").write_text('Q: {{ input.prompt }} {% include "_inc.j2" %}')
    (tmp_path / "_inc.j2").write_text("PART-A")
    body = """
    models: {m: {provider: mock}}
    stages: [{id: a, kind: generate, model: m, prompt: main.j2}]
    """
    recipe = write_recipe(tmp_path, body, rows=[{"id": "x", "prompt": "hello"}])
    run(recipe, tmp_path)
    (tmp_path / "_inc.j2").write_text("PART-B")
    from engine.errors import RunError
    with pytest.raises(RunError) as err:          # resuming would mix old and new records
        run(recipe, tmp_path)
    assert "_inc.j2" in str(err.value)
    run(recipe, tmp_path, fresh=True)
    call = lines(tmp_path / "run" / "trace.jsonl")[0]["stages"]["a"]["calls"][0]
    assert call["messages"][0]["content"] == "Q: hello PART-B" and not call["cache_hit"]
