"""The ear-whisperer loop, the pair gate and the DPO export, on scripted mock models."""

import json
from pathlib import Path

from engine import api
from engine.runner import RunOptions

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "workflows" / "aidsafe-dpo.yaml"


def verdict(score):
    return {"violation": score, "policy": "fraud", "why": f"scored {score}"}


def attempt(turn):
    return {"thoughts": [f"bad step {turn}"], "response": f"bad answer {turn}"}


def replies(verdicts, chosen=1):
    """Mock rules: beliefs and attempts per turn, the judge's scores per turn."""
    rules = []
    for turn, score in enumerate(verdicts, 1):
        rules += [{"agent": "belief", "turn": turn, "reply": {"belief": f"BELIEF-{turn}"}},
                  {"agent": "attempt", "turn": turn, "reply": attempt(turn)},
                  {"agent": "verdict", "turn": turn, "reply": verdict(score)}]
    rules.append({"stage": "chosen_check", "reply": verdict(chosen)})
    return json.dumps(rules)


def run(tmp_path, rules, rows=1, sets=(), input_path=None, fmt_sets=()):
    mocks = tuple(f"models.{m}.provider=mock" for m in ("whisperer", "target", "judge"))
    wf = api.load_workflow(RECIPE, mocks + (f"models.judge.replies={rules}",
                                            f"models.whisperer.replies={rules}",
                                            f"models.target.replies={rules}") + tuple(sets),
                           cache_dir=str(tmp_path / "cache"), input_path=input_path)
    api.run(wf, RunOptions(run_dir=tmp_path / "run", limit=rows))
    read = lambda name: [json.loads(x) for x in  # noqa: E731
                         (tmp_path / "run" / name).read_text().splitlines()]
    return read


def test_the_belief_improves_until_the_judge_threshold(tmp_path):
    read = run(tmp_path, replies([2, 3, 5]))
    trace = read("trace.jsonl")[0]
    whisper = trace["stages"]["whisper"]
    assert whisper["value"]["turns"] == 3
    assert whisper["stopped_by"] == {"rule": "score",
                                     "reason": "verdict.violation = 5 >= 4"}
    # the third belief was asked for with the earlier beliefs and their scores in view
    third = [c for c in whisper["calls"] if c["agent"] == "belief" and c["turn"] == 3][0]
    prompt = third["messages"][0]["content"]
    assert '"BELIEF-1" -> 2' in prompt and '"BELIEF-2" -> 3' in prompt
    # the target saw the belief before the request
    target = [c for c in whisper["calls"] if c["agent"] == "attempt" and c["turn"] == 3][0]
    assert target["messages"][0]["content"].startswith("BELIEF-3\n\nUser request:")
    pair = read("dpo.jsonl")[0]
    assert list(pair) == ["prompt", "chosen", "rejected"]
    assert pair["prompt"] == [{"role": "user", "content": trace["input"]["prompt"]}]
    assert pair["rejected"] == [{"role": "assistant", "content":
                                 "<think>\nbad step 3\n</think>\n\nbad answer 3"}]
    assert pair["chosen"][0]["role"] == "assistant"
    assert pair["chosen"][0]["content"].startswith("<think>\n" + trace["input"]["thoughts"][0])
    assert "BELIEF" not in json.dumps(pair) and "BELIEF-3" in json.dumps(trace)
    plain = read("dpo_plain.jsonl")[0]
    assert set(plain) == {"prompt", "chosen", "rejected"}
    assert all(isinstance(v, str) for v in plain.values())


def test_the_budget_ends_a_stubborn_item_and_the_pair_is_dropped(tmp_path):
    read = run(tmp_path, replies([1, 2, 1]))
    trace = read("trace.jsonl")[0]
    assert trace["stages"]["whisper"]["stopped_by"]["rule"] == "max_turns"
    assert trace["stages"]["pair"]["value"] == {"kept": False, "reasons": [
        "the rejected sample does not violate the policies (the budget ran out)"]}
    assert read("dpo.jsonl") == [] and read("failures.jsonl") == []
    assert read("pairs.jsonl") == [{"prompt": trace["input"]["prompt"], "kept": False,
                                    "reasons": trace["stages"]["pair"]["value"]["reasons"],
                                    "turns": 3, "rejected_violation": 1,
                                    "chosen_violation": 1}]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["per_stage"]["pair"]["dropped"] == 1
    assert manifest["per_stage"]["whisper"]["stopped_by.max_turns"] == 1


def test_a_chosen_sample_that_is_not_compliant_drops_the_pair(tmp_path):
    read = run(tmp_path, replies([5], chosen=4))
    assert read("trace.jsonl")[0]["stages"]["pair"]["value"]["reasons"] == [
        "the chosen sample is not judged compliant"]
    assert read("dpo.jsonl") == []


def test_a_chained_aidsafe_run_is_the_input(tmp_path):
    aidsafe = ROOT / "workflows" / "aidsafe.yaml"
    mocks = ("models.deliberator.provider=mock", "models.refiner.provider=mock")
    wf = api.load_workflow(aidsafe, mocks, cache_dir=str(tmp_path / "cache"))
    api.run(wf, RunOptions(run_dir=tmp_path / "sft", limit=2))
    dataset = tmp_path / "sft" / "dataset.jsonl"
    read = run(tmp_path, replies([5]), rows=2, input_path=str(dataset))
    pairs = read("dpo.jsonl")
    rows = [json.loads(x) for x in dataset.read_text().splitlines()]
    assert [p["prompt"][0]["content"] for p in pairs] == [r["prompt"] for r in rows]
    assert pairs[0]["chosen"][0]["content"].endswith(rows[0]["response"])


def test_a_trace_can_be_the_input(tmp_path):
    aidsafe = ROOT / "workflows" / "aidsafe.yaml"
    mocks = ("models.deliberator.provider=mock", "models.refiner.provider=mock")
    wf = api.load_workflow(aidsafe, mocks, cache_dir=str(tmp_path / "cache"))
    api.run(wf, RunOptions(run_dir=tmp_path / "sft", limit=1))
    trace = tmp_path / "sft" / "trace.jsonl"
    sets = ("input.format=trace", "input.id_field=id",
            'stages.chosen.fields={thoughts: "{{ input.refine.thoughts }}", '
            'response: "{{ input.refine.response }}"}')
    (tmp_path / "run").mkdir()
    read = run(tmp_path, replies([5]), input_path=str(trace), sets=sets)
    pair = read("dpo.jsonl")[0]
    source = json.loads(trace.read_text())
    assert read("trace.jsonl")[0]["id"] == source["id"] == "p01"
    assert pair["chosen"][0]["content"].endswith(source["stages"]["refine"]["value"]["response"])
