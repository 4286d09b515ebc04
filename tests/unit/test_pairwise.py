"""The `pairwise` stage kind, input joins and workflows/compare.yaml on scripted mock judges."""

import json
from pathlib import Path

from engine import api
from engine.runner import RunOptions

ROOT = Path(__file__).resolve().parents[2]
COMPARE = ROOT / "workflows" / "compare.yaml"


def winner(word):
    return {"winner": word, "rationale": f"says {word}"}


def run_compare(tmp_path, sets, limit=2):
    wf = api.load_workflow(COMPARE, tuple(sets), cache_dir=str(tmp_path / "cache"))
    state = api.run(wf, RunOptions(run_dir=tmp_path / "run", limit=limit))
    rows = [json.loads(x) for x in (tmp_path / "run" / "comparisons.jsonl").read_text()
            .splitlines()]
    return state, rows


def test_positions_are_swapped_and_a_first_position_bias_cancels(tmp_path):
    biased = json.dumps([{"reply": winner("first")}])
    _, rows = run_compare(tmp_path, ["models.judge.provider=mock",
                                     f"models.judge.replies={biased}"])
    assert rows[0]["judges"]["judge"] == {"ab": "a", "ba": "b", "outcome": "tie"}
    trace = json.loads((tmp_path / "run" / "trace.jsonl").read_text().splitlines()[0])
    calls = trace["stages"]["compare"]["calls"]
    first_shown = [c["messages"][0]["content"].split("FIRST\nReasoning:\n")[1][:40]
                   for c in calls]
    assert first_shown[0] != first_shown[1]          # A first, then B first
    assert [c["turn"] for c in calls] == [1, 2]


def test_a_consistent_preference_wins_and_judges_vote(tmp_path):
    prefer_a = json.dumps([{"turn": 1, "reply": winner("first")},
                           {"turn": 2, "reply": winner("second")}])
    prefer_b = json.dumps([{"turn": 1, "reply": winner("second")},
                           {"turn": 2, "reply": winner("first")}])
    state, rows = run_compare(tmp_path, [
        "models.judge.provider=mock", f"models.judge.replies={prefer_a}",
        "models.j2={provider: mock, replies: " + prefer_a + "}",
        "models.j3={provider: mock, replies: " + prefer_b + "}",
        "stages.compare.models=[judge, j2, j3]"])
    assert {m: j["outcome"] for m, j in rows[0]["judges"].items()} == {
        "judge": "win", "j2": "win", "j3": "loss"}
    assert rows[0]["outcome"] == "win"
    assert state.per_stage["compare"]["outcome.win"] == 2


def test_a_row_without_a_match_in_the_joined_file_fails_alone(tmp_path):
    other = tmp_path / "b.jsonl"
    other.write_text(json.dumps({"prompt": "Explain how a nuclear reactor produces electricity.",
                                 "thoughts": ["x"], "response": "y"}) + "\n")
    wf = api.load_workflow(COMPARE, ("models.judge.provider=mock",
                                     f"input.join.path={other}"),
                           cache_dir=str(tmp_path / "cache"), allow_roots=(str(tmp_path),))
    state = api.run(wf, RunOptions(run_dir=tmp_path / "run"))
    failures = [json.loads(x) for x in (tmp_path / "run" / "failures.jsonl").read_text()
                .splitlines()]
    assert (state.done, state.failed) == (1, 5)
    assert all(f["kind"] == "bad_input" and "no row of" in f["error"] for f in failures)
