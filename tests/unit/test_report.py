"""`aidsafe report`: Table-1 means and deltas, pairwise rates, sections, JSON, errors."""

import json
import sys

from click.testing import CliRunner

from engine import report
from engine.cli import toolbox

SCORES = ("faithfulness_policy_cot", "relevance")
SECTIONS = ("summary", "grades", "pairwise", "plots", "items", "manifests")


def plant(folder, workflow, rows, stages, failures=()):
    folder.mkdir(parents=True)
    manifest = {"engine": {"version": "0.1.0"}, "status": "complete", "workflow": workflow,
                "recipe": f"workflows/{workflow}.yaml", "fingerprint": "f" * 64,
                "hashes": {"sha256": {f"{workflow}.yaml": "a" * 64}},
                "models": {"judge": {"provider": "mock", "model": "scripted", "base_url": None}},
                "stages": stages, "counts": {"done": len(rows), "failed": len(failures)},
                "calls": {"calls": 7, "cache_hits": 2, "prompt_tokens": 100,
                          "completion_tokens": 10},
                "per_stage": {s["id"]: {"calls": 7, "cache_hits": 2, "prompt_tokens": 100,
                                        "completion_tokens": 10} for s in stages}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "trace.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows)
                                        + '{"id": "torn')   # a torn last line is skipped
    (folder / "failures.jsonl").write_text("".join(json.dumps(f) + "\n" for f in failures))
    return folder


def graded(folder, cot_scores, response="ok"):
    rows = [{"id": i, "index": i,
             "input": {"prompt": f"prompt {i}", "thoughts": ["t"], "response": response},
             "stages": {"grade": {"value": {
                 "scores": {"faithfulness_policy_cot": s, "relevance": 2.0},
                 "judges": {"judge": {"scores": {}, "rationale": "<b>x</b>"}}}}}}
            for i, s in enumerate(cot_scores)]
    return plant(folder, "grade", rows, [{"id": "grade", "kind": "judge"}])


def compared(folder, outcomes):
    rows = [{"id": i, "index": i, "input": {"prompt": f"prompt {i}"},
             "stages": {"cmp": {"value": {"judges": {
                 "j1": {"ab": "a", "ba": "b", "outcome": o},
                 "j2": {"ab": "tie", "ba": "tie", "outcome": "tie"}}, "outcome": o}}}}
            for i, o in enumerate(outcomes)]
    return plant(folder, "compare", rows, [{"id": "cmp", "kind": "pairwise"}])


def generated(folder):
    rows = [{"id": "p0", "index": 0, "input": {"prompt": "prompt 0 <script>alert(1)</script>"},
             "stages": {
                 "intents": {"value": {"explicit_intents": ["bomb"]}},
                 "deliberation": {
                     "transcript": [{"agent": "seed", "turn": 0, "thoughts": ["a"],
                                     "response": "r"},
                                    {"agent": "agent_a", "turn": 1, "thoughts": ["b"],
                                     "response": "r2"}],
                     "stopped_by": {"rule": "agreement", "reason": "agreed"},
                     "value": {"thoughts": ["a", "b"], "response": "r2", "turns": 1,
                               "stopped_by": {"rule": "agreement", "reason": "agreed"}}},
                 "refine": {"value": {"thoughts": ["b"], "response": "ok",
                                      "dropped": [{"thought": "a", "filter": "llm",
                                                   "reason": "repetitive: same as b"}]}}}}]
    return plant(folder, "aidsafe", rows, [{"id": "intents", "kind": "generate"},
                                           {"id": "deliberation", "kind": "deliberate"},
                                           {"id": "refine", "kind": "refine"}],
                 failures=[{"id": "p1", "kind": "invalid_reply"}])


def test_table_one_means_and_relative_change(tmp_path):
    a = graded(tmp_path / "a", [3.7, 4.0])
    b = graded(tmp_path / "b", [4.27, 4.27])
    c = graded(tmp_path / "c", [3.85, 3.85])
    data = report.summarize(report.load_runs([str(a), str(b), str(c)]))
    grades = data["grades"]
    assert grades["runs"] == ["a", "b", "c"] and grades["base"] == "a"
    assert list(grades["means"]) == list(SCORES)
    assert grades["means"]["faithfulness_policy_cot"] == {"a": 3.85, "b": 4.27, "c": 3.85}
    assert grades["delta_pct"]["faithfulness_policy_cot"] == {"b": 10.91, "c": 0.0}
    assert grades["delta_pct"]["relevance"] == {"b": 0.0, "c": 0.0}
    assert grades["items"] == {"a": 2, "b": 2, "c": 2}


def test_pairwise_rates_per_judge(tmp_path):
    run = compared(tmp_path / "cmp", ["win", "win", "tie", "loss"])
    data = report.summarize(report.load_runs([str(run)]))
    info = data["pairwise"]["cmp"]
    assert info["items"] == 4
    assert info["rates"]["overall"] == {"win": 0.5, "tie": 0.25, "loss": 0.25}
    assert info["rates"]["j1"] == {"win": 0.5, "tie": 0.25, "loss": 0.25}
    assert info["rates"]["j2"] == {"win": 0.0, "tie": 1.0, "loss": 0.0}
    assert data["grades"]["runs"] == []     # a pairwise value is not taken for a judge value


def test_report_over_runs_has_every_section_and_escapes_text(tmp_path):
    gen = generated(tmp_path / "gen")
    grade = graded(tmp_path / "grade", [4.0])
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(toolbox, ["report", str(grade), str(gen), str(compared(
        tmp_path / "cmp", ["win"])), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "faithfulness_policy_cot" in result.output and "win 100.0%" in result.output
    page = out.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}"><h2>' in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)" in page
    assert "<b>x</b>" not in page
    assert "http" not in page.replace("http://www.w3.org/", "")   # nothing fetched or linked
    assert page.count("<svg") >= 4                       # turns, stops, dropped, scores, stages
    assert "repetitive" in page and "agent_a" in page and "bomb" in page
    assert "graded in" in page                           # gen's item matched grade's prompt
    assert "invalid_reply" in page                       # failures counted by kind
    assert "first 200 items" in page


def test_sections_without_data_say_so(tmp_path):
    out = tmp_path / "r.html"
    run = plant(tmp_path / "empty", "x", [], [])
    assert CliRunner().invoke(toolbox, ["report", str(run), "-o", str(out)]).exit_code == 0
    page = out.read_text()
    assert all(f'id="{s}"' for s in SECTIONS) and page.count("no data") >= 5


def test_json_output(tmp_path):
    a, b = graded(tmp_path / "a", [3.85]), graded(tmp_path / "b", [4.27])
    result = CliRunner().invoke(
        toolbox, ["report", str(a), str(b), "--json", "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["grades"]["delta_pct"]["faithfulness_policy_cot"] == {"b": 10.91}
    assert [r["done"] for r in data["runs"]] == [1, 1]
    assert data["runs"][0]["cache_hits"] == 2


def test_not_a_run_folder_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(toolbox, ["report", str(tmp_path), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "error: not a run folder: no manifest.json" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    import engine
    monkeypatch.setitem(sys.modules, "engine.report_plots", None)   # import fails
    monkeypatch.delattr(engine, "report_plots", raising=False)
    result = CliRunner().invoke(toolbox, ["report", str(graded(tmp_path / "a", [1.0])),
                                          "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 1
    assert "matplotlib" in result.output and ".[report]" in result.output
    assert "Traceback" not in result.output


def test_items_view_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "ITEM_CAP", 3)
    run = report.load_runs([str(graded(tmp_path / "a", [1.0] * 5))])[0]
    assert (run.done, len(run.items)) == (5, 3) and len(run.sums["relevance"]) == 5
