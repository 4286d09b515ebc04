"""deliberate, refine, stop rules, filters and the aidsafe/sft outputs, on scripted mock agents."""

import json
import textwrap

import pytest

from engine import api
from engine.errors import RecipeError
from engine.runner import RunOptions

ROWS = [{"id": "q1", "prompt": "How do I pick a lock?"}]


def recipe(tmp_path, body, rows=ROWS):
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nname: t\ninput: {path: in.jsonl, id_field: id}\n"
                    "cache: {dir: cache}\n" + textwrap.dedent(body))
    return path


def run(path, tmp_path, sets=()):
    state = api.run(api.load_workflow(path, tuple(sets)), RunOptions(run_dir=tmp_path / "run"))
    return state, [json.loads(x) for x in (tmp_path / "run" / "trace.jsonl").read_text()
                   .splitlines()]


def turn(thoughts, response="r", agree=False):
    return {"thoughts": thoughts, "response": response, "agree": agree}


SEED = """
  - id: seed
    kind: generate
    model: m
    prompt_text: "seed {{ input.prompt }}"
    schema: {type: object, properties: {thoughts: {type: array}, response: {type: string}}}
"""


def deliberation(agents="[a, b]", stop="[{agreement: {field: agree}}, {max_turns: 5}]",
                 order="round_robin", replies="", extra=""):
    agent_list = ", ".join(f"{{name: {n}, model: m, prompt_text: 'turn {{{{ turn }}}} by "
                           f"{{{{ agent.name }}}}: {{{{ response }}}}'}}"
                           for n in agents.strip("[]").split(", "))
    return f"""
models:
  m:
    provider: mock
    replies:
      - {{stage: seed, reply: {{thoughts: [consider the hobby context], response: seed answer}}}}
{replies}
      - {{stage: d, reply: {json.dumps(turn(["generic thought"]))}}}
stages:
{SEED}
  - id: d
    kind: deliberate
    init: seed
    agents: [{agent_list}]
    order: {order}
    stop: {stop}
{extra}
"""


def test_agreement_at_turn_two_stops_there(tmp_path):
    replies = (f"      - {{agent: a, turn: 1, reply: {json.dumps(turn(['intent is a hobby'], 'v1'))}}}\n"
               f"      - {{agent: b, turn: 2, reply: {json.dumps(turn([], 'v1', True))}}}")
    _, trace = run(recipe(tmp_path, deliberation(replies=replies)), tmp_path)
    d = trace[0]["stages"]["d"]
    assert d["value"]["turns"] == 2
    assert d["stopped_by"] == {"rule": "agreement", "reason": "b set agree=true"}
    assert d["value"]["thoughts"] == ["consider the hobby context", "intent is a hobby"]
    assert d["value"]["thought_log"][1] == {"text": "intent is a hobby", "agent": "a", "turn": 1}
    assert [(c["agent"], c["turn"]) for c in d["calls"]] == [("a", 1), ("b", 2)]
    assert d["calls"][1]["messages"][0]["content"] == "turn 2 by b: v1"
    assert d["transcript"][0] == {"agent": "seed", "turn": 0,
                                  "thoughts": ["consider the hobby context"],
                                  "response": "seed answer"}


def test_the_budget_stops_at_max_turns(tmp_path):
    _, trace = run(recipe(tmp_path, deliberation(stop="[{agreement: {}}, {max_turns: 3}]")),
                   tmp_path)
    d = trace[0]["stages"]["d"]
    assert d["value"]["turns"] == 3 and d["stopped_by"]["rule"] == "max_turns"
    assert [c["agent"] for c in d["calls"]] == ["a", "b", "a"]


def test_the_phrase_rule_reads_the_raw_turn(tmp_path):
    replies = ("      - {agent: b, reply: '{\"thoughts\": [], \"response\": \"ok\", "
               "\"agree\": false, \"note\": \"I agree with the previous agent\"}'}")
    stop = "[{phrase: '(?i)i agree with the previous agent'}, {max_turns: 6}]"
    _, trace = run(recipe(tmp_path, deliberation(stop=stop, replies=replies)), tmp_path)
    d = trace[0]["stages"]["d"]
    assert (d["value"]["turns"], d["stopped_by"]["rule"]) == (2, "phrase")


def test_no_change_stops_when_a_turn_adds_nothing_new(tmp_path):
    replies = (f"      - {{turn: 1, reply: {json.dumps(turn(['a brand new point'], 'answer'))}}}\n"
               f"      - {{turn: 2, reply: {json.dumps(turn(['A brand new point.'], 'answer'))}}}")
    stop = "[{no_change: {similarity: 0.9}}, {max_turns: 6}]"
    _, trace = run(recipe(tmp_path, deliberation(stop=stop, replies=replies)), tmp_path)
    d = trace[0]["stages"]["d"]
    assert (d["value"]["turns"], d["stopped_by"]["rule"]) == (2, "no_change")


def test_max_tokens_counts_the_stage_tokens(tmp_path):
    stop = "[{max_tokens: 30}, {max_turns: 50}]"
    _, trace = run(recipe(tmp_path, deliberation(stop=stop)), tmp_path)
    d = trace[0]["stages"]["d"]
    spent = sum(c["prompt_tokens"] + c["completion_tokens"] for c in d["calls"])
    assert d["stopped_by"]["rule"] == "max_tokens" and spent >= 30
    before_last = spent - d["calls"][-1]["prompt_tokens"] - d["calls"][-1]["completion_tokens"]
    assert before_last < 30


def test_three_agents_in_seeded_random_order_reproduce(tmp_path):
    body = deliberation(agents="[a, b, c]", stop="[{max_turns: 8}]", order="random",
                        extra="    seed: 7")
    orders = []
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        _, trace = run(recipe(tmp_path / folder, body), tmp_path / folder)
        orders.append([c["agent"] for c in trace[0]["stages"]["d"]["calls"]])
    assert orders[0] == orders[1] and len(set(orders[0])) == 3
    assert all(x != y for x, y in zip(orders[0], orders[0][1:]))   # never the same twice
    (tmp_path / "three").mkdir()
    _, other = run(recipe(tmp_path / "three", body.replace("seed: 7", "seed: 8")),
                   tmp_path / "three")
    assert [c["agent"] for c in other[0]["stages"]["d"]["calls"]] != orders[0]


def test_one_agent_and_a_different_stop_list_need_no_code(tmp_path):
    stop = "[{phrase: DONE}, {max_tokens: 100000}]"
    replies = "      - {turn: 3, reply: '{\"thoughts\": [\"final\"], \"response\": \"DONE\", \"agree\": false}'}"
    _, trace = run(recipe(tmp_path, deliberation(agents="[solo]", stop=stop, replies=replies)),
                   tmp_path)
    d = trace[0]["stages"]["d"]
    assert [c["agent"] for c in d["calls"]] == ["solo"] * 3
    assert d["stopped_by"]["rule"] == "phrase" and d["value"]["response"] == "DONE"


def test_a_loop_without_a_budget_is_refused(tmp_path):
    with pytest.raises(RecipeError) as err:
        api.load_workflow(recipe(tmp_path, deliberation(stop="[{agreement: {}}]")))
    assert "no stop rule bounds the loop" in str(err.value)


def test_init_must_be_an_earlier_stage_with_thoughts(tmp_path):
    body = deliberation().replace("init: seed", "init: sead")
    with pytest.raises(RecipeError) as err:
        api.load_workflow(recipe(tmp_path, body))
    assert "init names no earlier stage: 'sead'" in str(err.value)
    assert "did you mean 'seed'?" in str(err.value)


REFINE = """
models:
  m:
    provider: mock
    replies:
      - {stage: seed, reply: {thoughts: ["The user wants to learn lock picking as a hobby.",
          "The user wants to learn lockpicking as a hobby!", "As an AI language model I care.",
          "ok", "Picking your own practice lock is legal.", "Explain the pin tumbler idea."],
          response: "Here is how pin tumbler locks work."}}
      - {stage: r, replies: [{drop: [{index: 9, reason: deceptive}], response: ""},
                             {drop: [{index: 2.0, reason: redundant, why: restates thought 1}],
                              response: "Checked: here is how pin tumbler locks work."}]}
stages:
  - id: seed
    kind: generate
    model: m
    prompt_text: "seed {{ input.prompt }}"
    schema: {type: object, properties: {thoughts: {type: array}, response: {type: string}}}
  - id: r
    kind: refine
    thoughts: "{{ seed.thoughts }}"
    response: "{{ seed.response }}"
    filters:
      - {kind: near_duplicate, threshold: 0.85}
      - {kind: regex, drop: ["(?i)as an ai language model"]}
      - {kind: length, min_chars: 5}
      - {kind: llm, model: m, max_attempts: 2,
         prompt_text: "{% for t in thoughts %}{{ loop.index }}. {{ t }}\\n{% endfor %}"}
outputs:
  - {format: aidsafe, path: dataset.jsonl}
  - {format: sft, path: sft.jsonl, system: "Be safe and helpful."}
  - {format: sft, path: sft_custom.jsonl, from: r, prompt: "Q: {{ input.prompt }}",
     cot: "Reasoning: {{ thoughts | join(' ') }}\\nAnswer: {{ response }}"}
"""


def test_each_filter_drops_exactly_the_planted_thoughts(tmp_path):
    state, trace = run(recipe(tmp_path, REFINE), tmp_path)
    r = trace[0]["stages"]["r"]
    ledger = [(d["filter"], d["thought"]) for d in r["value"]["dropped"]]
    assert ledger == [
        ("near_duplicate", "The user wants to learn lockpicking as a hobby!"),
        ("regex", "As an AI language model I care."),
        ("length", "ok"),
        ("llm", "Picking your own practice lock is legal.")]
    reasons = [d["reason"] for d in r["value"]["dropped"]]
    assert reasons[0].startswith("near-duplicate of an earlier thought (similarity 0.9")
    assert reasons[1] == "matches /(?i)as an ai language model/"
    assert reasons[2] == "shorter than 5 characters (2)"
    assert reasons[3] == "redundant: restates thought 1"
    assert r["value"]["thoughts"] == ["The user wants to learn lock picking as a hobby.",
                                      "Explain the pin tumbler idea."]
    assert r["value"]["response"] == "Checked: here is how pin tumbler locks work."
    # the refiner saw the thoughts that survived the cheap filters, numbered from 1; an
    # index out of range is an invalid reply, asked again with the next sample
    assert r["calls"][0]["messages"][0]["content"].splitlines()[1] == \
        "2. Picking your own practice lock is legal."
    assert ["error" in c for c in r["calls"]] == [True, False]
    assert r["calls"][0]["error"] == "drop/0/index: 9 is greater than the maximum of 3"
    assert state.per_stage["r"]["dropped.near_duplicate"] == 1
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {k: v for k, v in manifest["per_stage"]["r"].items() if k.startswith("dropped")} == {
        "dropped.near_duplicate": 1, "dropped.regex": 1, "dropped.length": 1, "dropped.llm": 1}


def test_aidsafe_and_sft_outputs_have_exactly_their_fields(tmp_path):
    run(recipe(tmp_path, REFINE), tmp_path)
    out = tmp_path / "run"
    record = json.loads((out / "dataset.jsonl").read_text())
    assert list(record) == ["prompt", "thoughts", "response"]
    assert record["prompt"] == "How do I pick a lock?" and len(record["thoughts"]) == 2
    sft = json.loads((out / "sft.jsonl").read_text())
    assert list(sft) == ["messages"]
    assert [m["role"] for m in sft["messages"]] == ["system", "user", "assistant"]
    assert sft["messages"][2]["content"] == (
        "<think>\nThe user wants to learn lock picking as a hobby.\n"
        "Explain the pin tumbler idea.\n</think>\n\nChecked: here is how pin tumbler locks work.")
    custom = json.loads((out / "sft_custom.jsonl").read_text())["messages"]
    assert custom[0] == {"role": "user", "content": "Q: How do I pick a lock?"}
    assert custom[1]["content"].startswith("Reasoning: The user wants")


def test_an_output_from_a_stage_without_thoughts_is_refused(tmp_path):
    body = REFINE.replace("{format: aidsafe, path: dataset.jsonl}",
                          "{format: aidsafe, path: dataset.jsonl, from: nope}")
    with pytest.raises(RecipeError) as err:
        api.load_workflow(recipe(tmp_path, body))
    assert "`from` names no stage: 'nope'" in str(err.value)


def test_a_misspelt_agreement_field_is_refused(tmp_path):
    body = deliberation(stop="[{agreement: {field: agreed}}, {max_turns: 3}]")
    with pytest.raises(RecipeError) as err:
        api.load_workflow(recipe(tmp_path, body))
    assert "agreement field 'agreed' is not in agent a's turn schema" in str(err.value)
    assert "did you mean 'agree'?" in str(err.value)


def test_a_turn_with_thoughts_of_the_wrong_type_fails_only_its_item(tmp_path):
    replies = "      - {agent: a, reply: {thoughts: 3, response: r, agree: false}}"
    body = deliberation(replies=replies).replace(
        "    stop:", "    schema: {type: object, required: [response]}\n    stop:")
    state, _ = run(recipe(tmp_path, body), tmp_path)
    failure = json.loads((tmp_path / "run" / "failures.jsonl").read_text())
    assert (state.failed, failure["kind"], failure["stage"]) == (1, "bad_value", "d")
    assert "turn 1 of a: thoughts must be a list of strings" in failure["error"]


def test_the_default_source_of_a_dataset_has_thoughts_and_response(tmp_path):
    body = REFINE.replace("outputs:", "  - {id: note, kind: generate, model: m, prompt_text: hi}\n"
                          "outputs:")
    state, _ = run(recipe(tmp_path, body), tmp_path)
    record = json.loads((tmp_path / "run" / "dataset.jsonl").read_text())
    assert state.done == 1 and len(record["thoughts"]) == 2   # from r, not from the text stage
