"""The `judge` stage kind and workflows/grade.yaml on scripted mock judges."""

import json
from pathlib import Path

import pytest

from engine import api
from engine.errors import RecipeError
from engine.runner import RunOptions

ROOT = Path(__file__).resolve().parents[2]
GRADE = ROOT / "workflows" / "grade.yaml"
DIMENSIONS = ["relevance", "coherence", "completeness", "faithfulness_policy_cot",
              "faithfulness_policy_response", "faithfulness_cot_response"]


def grades(values, rationale="ok"):
    return {**dict(zip(DIMENSIONS, values, strict=True)), "rationale": rationale}


def run_grade(tmp_path, sets, limit=1):
    wf = api.load_workflow(GRADE, tuple(sets), cache_dir=str(tmp_path / "cache"))
    api.run(wf, RunOptions(run_dir=tmp_path / "run", limit=limit))
    read = lambda name: [json.loads(x) for x in  # noqa: E731
                         (tmp_path / "run" / name).read_text().splitlines()]
    return read


def test_scores_are_averaged_over_judges_and_each_is_kept(tmp_path):
    a = json.dumps([{"reply": grades([5, 4, 3, 4, 5, 4], "judge a")}])
    b = json.dumps([{"reply": grades([4, 4, 2, 3, 5, 5], "judge b")}])
    read = run_grade(tmp_path, [
        "models.judge.provider=mock", f"models.judge.replies={a}",
        "models.judge_b={provider: mock, replies: " + b + "}",
        "stages.grade.models=[judge, judge_b]"])
    record = read("grades.jsonl")[0]
    assert record["scores"] == {"relevance": 4.5, "coherence": 4.0, "completeness": 2.5,
                                "faithfulness_policy_cot": 3.5,
                                "faithfulness_policy_response": 5.0,
                                "faithfulness_cot_response": 4.5}
    assert record["judges"]["judge"]["rationale"] == "judge a"
    assert record["judges"]["judge_b"]["scores"]["completeness"] == 2


def test_out_of_range_or_missing_scores_are_invalid_replies(tmp_path):
    bad = grades([6, 4, 3, 4, 5, 4])
    missing = {k: v for k, v in grades([5, 4, 3, 4, 5, 4]).items() if k != "coherence"}
    good = grades([5, 4, 3, 4, 5, 4])
    replies = json.dumps([{"replies": [bad, missing, good]}])
    read = run_grade(tmp_path, ["models.judge.provider=mock",
                                f"models.judge.replies={replies}"])
    calls = read("trace.jsonl")[0]["stages"]["grade"]["calls"]
    assert [c.get("error", "") for c in calls][:2] == [
        "relevance: 6 is greater than the maximum of 5",
        "reply: 'coherence' is a required property"]
    assert "error" not in calls[2] and read("grades.jsonl")[0]["scores"]["relevance"] == 5


def test_a_grade_fails_the_item_after_max_attempts(tmp_path):
    replies = json.dumps([{"reply": grades([0, 4, 3, 4, 5, 4])}])
    read = run_grade(tmp_path, ["models.judge.provider=mock", f"models.judge.replies={replies}",
                                "stages.grade.max_attempts=2"])
    failure = read("failures.jsonl")[0]
    assert failure["kind"] == "invalid_reply" and "less than the minimum of 1" in failure["error"]


def test_judge_recipes_are_checked(tmp_path):
    with pytest.raises(RecipeError) as err:
        api.load_workflow(GRADE, ("stages.grade.scores.relevance=[5, 1]",
                                  "stages.grade.models=[judge, nobody]"))
    text = str(err.value)
    assert "score 'relevance': the lowest must be below the highest" in text
    assert "unknown model 'nobody'" in text
