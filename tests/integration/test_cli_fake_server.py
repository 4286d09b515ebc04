"""The real CLI (`aidsafe-run`, `aidsafe`) as a subprocess against the in-repo fake OpenAI server.

Every test writes a one-stage `generate` recipe into tmp_path (see conftest.py), points
`provider: openai` at a fake server running in a thread of the test process, runs the console
scripts of the venv and checks the run folder, the cache and the server's request log.
No test asserts on how fast anything is; the only timing checks are lower bounds that follow
from the protocol (a Retry-After wait), which a slow machine cannot break.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

KEY_ENV = "AIDSAFE_TEST_API_KEY"   # the variable conftest strips from the inherited environment
PLANTED = "sk-test-PLANTED-123"
EIGHT = [f"question number {word}" for word in
         ("one", "two", "three", "four", "five", "six", "seven", "eight")]


def read_jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def body_key(request: dict[str, Any]) -> str:
    return json.dumps(request["body"], sort_keys=True)


def user_text(request: dict[str, Any]) -> str:
    return request["body"]["messages"][-1]["content"]


def expected_answer(prompt: str) -> str:
    """The fake server's default reply to the recipe's prompt (it echoes 40 characters)."""
    return f"fake reply to: {('Answer briefly: ' + prompt)[:40]}"


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr


def snapshot(folder: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names}


def all_files(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()]


# 1 ------------------------------------------------------------------------------------------

def test_run_writes_trace_failures_manifest_and_output_in_input_order(fake, make_recipe):
    # jitter with 5 requests in flight: replies come back out of order, records must not
    server = fake(latency=0.05, jitter=0.045, seed=3)
    recipe = make_recipe(server.base_url)
    proc = recipe.run("--concurrency", "5", quiet=False)
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    assert "5 done, 0 failed" in proc.stderr

    out, rows = recipe.out, recipe.rows
    assert sorted(p.name for p in out.iterdir()) == [
        "answers.jsonl", "failures.jsonl", "manifest.json", "trace.jsonl"]
    assert (out / "failures.jsonl").read_bytes() == b""

    answers = read_jsonl(out / "answers.jsonl")
    assert answers == [{"id": r["id"], "prompt": r["prompt"],
                        "answer": expected_answer(r["prompt"])} for r in rows]

    trace = read_jsonl(out / "trace.jsonl")
    assert [t["id"] for t in trace] == [r["id"] for r in rows]
    assert [t["input"] for t in trace] == rows
    for record in trace:
        (call,) = record["stages"]["gen"]["calls"]
        assert call["model"] == "writer" and call["cache_hit"] is False
        assert call["messages"] == [{"role": "user",
                                     "content": f"Answer briefly: {record['input']['prompt']}"}]
        assert record["stages"]["gen"]["value"] == expected_answer(record["input"]["prompt"])

    assert len(server.chats) == len(rows)
    assert sorted(user_text(r) for r in server.chats) == sorted(
        f"Answer briefly: {r['prompt']}" for r in rows)
    assert all(r["body"]["model"] == "fake-model" and r["body"]["max_tokens"] == 64
               for r in server.chats)

    m = manifest(out)
    assert m["status"] == "complete" and m["workflow"] == "fake-run"
    assert m["engine"]["name"] == "aidsafe" and m["engine"]["version"]
    assert m["counts"] == {"done": 5, "failed": 0, "resumed": 0, "in_outputs": 5,
                           "failures_by_kind": {}}
    writer = m["models"]["writer"]
    assert (writer["provider"], writer["model"], writer["base_url"]) == (
        "openai", "fake-model", server.base_url)
    assert writer["concurrency"] == 5
    sha = m["hashes"]["sha256"]
    for path in (recipe.path, recipe.input):
        assert sha[path.name] == hashlib.sha256(path.read_bytes()).hexdigest()
    prompt_tokens = sum(c["prompt_tokens"] for t in trace for c in t["stages"]["gen"]["calls"])
    completion_tokens = sum(c["completion_tokens"] for t in trace
                            for c in t["stages"]["gen"]["calls"])
    assert prompt_tokens > 0 and completion_tokens > 0
    assert m["calls"] == {"calls": 5, "cache_hits": 0, "prompt_tokens": prompt_tokens,
                          "completion_tokens": completion_tokens, "retries": 0}
    assert m["per_stage"]["gen"] == {"calls": 5, "cache_hits": 0,
                                     "prompt_tokens": prompt_tokens,
                                     "completion_tokens": completion_tokens}


# 2 ------------------------------------------------------------------------------------------

def test_rerun_resumes_with_no_requests_and_fresh_rerun_comes_from_cache(fake, make_recipe):
    server = fake()
    recipe = make_recipe(server.base_url)
    recipe.run(check=True)
    assert len(server.chats) == 5
    files = ("trace.jsonl", "answers.jsonl", "failures.jsonl")
    first = snapshot(recipe.out, files)

    server.reset()
    proc = recipe.run(quiet=False)
    assert proc.returncode == 0, proc.stderr
    assert "5 already done" in proc.stderr
    assert server.chats == []
    assert snapshot(recipe.out, files) == first
    assert manifest(recipe.out)["counts"]["resumed"] == 5
    assert manifest(recipe.out)["counts"]["done"] == 0

    proc = recipe.run("--fresh", quiet=False)
    assert proc.returncode == 0, proc.stderr
    assert server.chats == []
    assert (recipe.out / "answers.jsonl").read_bytes() == first["answers.jsonl"]
    assert (recipe.out / "failures.jsonl").read_bytes() == b""
    m = manifest(recipe.out)
    assert m["counts"]["done"] == 5 and m["counts"]["resumed"] == 0
    assert m["calls"]["calls"] == 5 and m["calls"]["cache_hits"] == 5
    # the trace differs only in the cache_hit flags
    fresh_trace = read_jsonl(recipe.out / "trace.jsonl")
    old_trace = [json.loads(line) for line in first["trace.jsonl"].decode().splitlines()]
    for record in fresh_trace:
        for call in record["stages"]["gen"]["calls"]:
            assert call.pop("cache_hit") is True
    for record in old_trace:
        for call in record["stages"]["gen"]["calls"]:
            assert call.pop("cache_hit") is False
    assert fresh_trace == old_trace


# 3 ------------------------------------------------------------------------------------------

def test_samples_are_separate_requests_and_cache_entries(fake, make_recipe):
    server = fake(rules=[("question", ["first take", "second take", "third take"])])
    recipe = make_recipe(server.base_url, prompts=["alpha question", "bravo question"],
                         stage={"samples": 3})
    recipe.run("--concurrency", "1", check=True)

    for prompt in ("alpha question", "bravo question"):
        sent = [r for r in server.chats if user_text(r) == f"Answer briefly: {prompt}"]
        assert len(sent) == 3, f"{prompt}: {len(sent)} requests"
    assert len(server.chats) == 6

    stats = recipe.toolbox("cache", "stats", "--cache-dir", str(recipe.cache), "--json",
                           check=True)
    data = json.loads(stats.stdout)
    assert data["entries"] == 6
    assert data["per_model"] == {"openai:fake-model": 6}

    answers = read_jsonl(recipe.out / "answers.jsonl")
    assert [a["id"] for a in answers] == ["p00", "p01"]
    for answer in answers:
        assert isinstance(answer["answer"], list) and len(answer["answer"]) == 3
        assert sorted(answer["answer"]) == ["first take", "second take", "third take"]
    for record in read_jsonl(recipe.out / "trace.jsonl"):
        assert [c["sample"] for c in record["stages"]["gen"]["calls"]] in (
            [0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0])

    server.reset()
    recipe.run("--fresh", check=True)
    assert server.chats == []
    assert read_jsonl(recipe.out / "answers.jsonl") == answers


# 4 ------------------------------------------------------------------------------------------

def test_offline_with_empty_cache_fails_every_item_cleanly(fake, make_recipe):
    server = fake()
    recipe = make_recipe(server.base_url)
    proc = recipe.run("--offline", quiet=False)
    # failed items are recorded and the run completes; when no item succeeded it exits 1
    assert proc.returncode == 1, proc.stderr
    no_traceback(proc)
    assert "0 done, 5 failed" in proc.stderr and "no item succeeded" in proc.stderr
    assert "offline_miss: 5" in proc.stderr
    assert server.chats == []

    failures = read_jsonl(recipe.out / "failures.jsonl")
    assert [f["id"] for f in failures] == [r["id"] for r in recipe.rows]
    for failure in failures:
        assert failure["stage"] == "gen"
        assert failure["kind"] == "offline_miss"
        assert "'writer'" in failure["error"] and "fake-model" in failure["error"]
        assert "offline" in failure["error"] and "no cached reply" in failure["error"]
    assert (recipe.out / "answers.jsonl").read_bytes() == b""
    assert (recipe.out / "trace.jsonl").read_bytes() == b""
    m = manifest(recipe.out)
    assert m["counts"]["failed"] == 5 and m["counts"]["done"] == 0
    assert m["counts"]["failures_by_kind"] == {"offline_miss": 5}
    assert m["cache"]["mode"] == "read_only"


# 5 ------------------------------------------------------------------------------------------

def _wait_for_lines(path: Path, count: int, proc, deadline: float) -> int:
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists():
            lines = path.read_bytes().count(b"\n")
            if lines >= count:
                return lines
        time.sleep(0.01)
    raise AssertionError(f"{path} never reached {count} lines (exit {proc.poll()})")


def test_killed_run_resumes_without_duplicates_or_repeated_calls(fake, make_recipe):
    reference_server = fake()
    reference = make_recipe(reference_server.base_url, folder="reference", prompts=EIGHT)
    reference.run(check=True)
    expected = read_jsonl(reference.out / "answers.jsonl")
    assert len(expected) == 8

    server = fake(latency=0.3)
    recipe = make_recipe(server.base_url, folder="killed", prompts=EIGHT)
    proc = recipe.popen("--concurrency", "1")
    try:
        done_at_kill = _wait_for_lines(recipe.out / "trace.jsonl", 2, proc,
                                       time.monotonic() + 60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    trace_at_kill = read_jsonl(recipe.out / "trace.jsonl")
    done_at_kill = len(trace_at_kill)
    assert 2 <= done_at_kill < 8
    first = list(server.chats)
    # one request at a time: every logged request but the last had its reply delivered
    finished = {body_key(r) for r in first[:-1]}
    finished_prompts = {t["input"]["prompt"] for t in trace_at_kill}

    server.reset()
    recipe.run("--concurrency", "1", check=True)
    second = list(server.chats)
    assert not finished & {body_key(r) for r in second}, "a paid call was made again"
    assert not any(p in user_text(r) for r in second for p in finished_prompts)
    assert len(first) + len(second) <= 8 + 1
    assert len({body_key(r) for r in second}) == len(second)

    answers = read_jsonl(recipe.out / "answers.jsonl")
    assert answers == expected
    trace = read_jsonl(recipe.out / "trace.jsonl")
    assert [t["id"] for t in trace] == [a["id"] for a in expected]
    m = manifest(recipe.out)
    assert m["counts"]["resumed"] == done_at_kill
    assert m["counts"]["done"] == 8 - done_at_kill


def test_torn_last_trace_line_is_repaired_on_rerun(fake, make_recipe):
    server = fake()
    recipe = make_recipe(server.base_url, prompts=EIGHT)
    recipe.run(check=True)
    answers_bytes = (recipe.out / "answers.jsonl").read_bytes()
    lines = (recipe.out / "trace.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == 8

    # a kill in the middle of writing item 5's trace line: 5 whole lines and half of one
    torn = b"".join(lines[:5]) + lines[5][: len(lines[5]) // 2]
    (recipe.out / "trace.jsonl").write_bytes(torn)
    recipe.toolbox("cache", "clear", "--cache-dir", str(recipe.cache), "--yes", check=True)
    server.reset()
    proc = recipe.run(quiet=False)
    assert proc.returncode == 0, proc.stderr
    assert "5 already done" in proc.stderr
    # only the three items that were not whole were asked again, each once
    assert sorted(user_text(r) for r in server.chats) == sorted(
        f"Answer briefly: {p}" for p in EIGHT[5:])

    trace_bytes = (recipe.out / "trace.jsonl").read_bytes()
    assert trace_bytes.endswith(b"\n")
    trace = [json.loads(line) for line in trace_bytes.splitlines()]   # every line is JSON
    assert [t["id"] for t in trace] == [f"p{i:02d}" for i in range(8)]
    assert (recipe.out / "answers.jsonl").read_bytes() == answers_bytes

    # a torn line after all 8 whole ones: cut off, nothing asked, nothing duplicated
    with (recipe.out / "trace.jsonl").open("ab") as fh:
        fh.write(lines[3][:40])
    server.reset()
    recipe.run(check=True)
    assert server.chats == []
    assert (recipe.out / "trace.jsonl").read_bytes() == trace_bytes
    assert (recipe.out / "answers.jsonl").read_bytes() == answers_bytes


# 6 ------------------------------------------------------------------------------------------

def test_5xx_is_retried_and_counted(fake, make_recipe):
    server = fake(fail_first=2, fail_status=503)
    recipe = make_recipe(server.base_url)
    proc = recipe.run(quiet=False)
    assert proc.returncode == 0, proc.stderr
    assert "5 done, 0 failed" in proc.stderr
    statuses = [r["status"] for r in server.chats]
    assert statuses[:2] == [503, 503] and statuses[2:] == [200] * 5
    assert manifest(recipe.out)["calls"]["retries"] == 2
    assert manifest(recipe.out)["calls"]["calls"] == 5
    assert [a["answer"] for a in read_jsonl(recipe.out / "answers.jsonl")] == [
        expected_answer(r["prompt"]) for r in recipe.rows]


def _seed_with_only_first_fault(rate: float, draws: int) -> int:
    """A fake-server seed whose first fault draw hits `rate` and the next `draws` miss."""
    for seed in range(100_000):
        rng = random.Random(seed)
        first, *rest = (rng.random() for _ in range(draws + 1))
        if first < rate and all(d >= rate for d in rest):
            return seed
    raise AssertionError("no seed found")


def test_429_retry_after_is_honoured(fake, make_recipe):
    # Backoff for a first retry is at most 0.5 s of jitter; a Retry-After of 0.8 s is longer,
    # so a gap of >= 0.8 s between the 429 and its retry shows the header was honoured.
    retry_after = 0.8
    server = fake(rate_limit_rate=0.3, retry_after=retry_after,
                  seed=_seed_with_only_first_fault(0.3, 6))
    recipe = make_recipe(server.base_url)
    proc = recipe.run("--concurrency", "1", quiet=False)
    assert proc.returncode == 0, proc.stderr
    assert "5 done, 0 failed" in proc.stderr
    chats = server.chats
    assert [r["status"] for r in chats] == [429] + [200] * 5
    # the slot is free while the item waits, so other items may go first; find the retry
    (retry,) = [r for r in chats[1:] if body_key(r) == body_key(chats[0])]
    assert retry["time"] - chats[0]["time"] >= retry_after
    assert len({body_key(r) for r in chats}) == 5
    assert manifest(recipe.out)["calls"]["retries"] == 1


def test_401_is_not_retried_and_names_the_key(fake, make_recipe):
    server = fake(api_key="sk-the-right-one")
    wrong = "sk-test-PLANTED-wrong"
    recipe = make_recipe(server.base_url, model={"api_key_env": KEY_ENV},
                         env={KEY_ENV: wrong})
    proc = recipe.run("--concurrency", "1", quiet=False)
    no_traceback(proc)
    # a wrong key fails every item the same way: the run stops at the first 401, with one
    # message naming the model's YAML line and the key hint, and never retries it
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("HTTP 401") == 1
    assert "recipe.yaml:" in proc.stderr and "model 'writer'" in proc.stderr
    assert "api_key_env" in proc.stderr
    assert [r["status"] for r in server.chats] == [401]
    assert read_jsonl(recipe.out / "trace.jsonl") == []
    assert manifest(recipe.out)["status"] == "stopped"
    assert manifest(recipe.out)["calls"]["retries"] == 0
    for path in all_files(recipe.out, recipe.cache):
        assert wrong.encode() not in path.read_bytes(), path
    assert wrong not in proc.stderr + proc.stdout


# 7 ------------------------------------------------------------------------------------------

def test_api_key_is_sent_as_bearer_and_never_written(fake, make_recipe):
    server = fake(api_key=PLANTED)   # the server answers 401 to anything but this bearer key
    recipe = make_recipe(server.base_url, model={"api_key_env": KEY_ENV},
                         env={KEY_ENV: PLANTED})
    proc = recipe.run(quiet=False)
    assert proc.returncode == 0, proc.stderr
    assert "5 done, 0 failed" in proc.stderr
    assert [r["status"] for r in server.chats] == [200] * 5
    assert PLANTED not in proc.stdout + proc.stderr
    # a resumed and a fresh run must not write it either
    recipe.run(check=True)
    recipe.run("--fresh", check=True)
    files = all_files(recipe.out, recipe.cache)
    assert any(p.name == "manifest.json" for p in files)
    assert any(p.parent == recipe.cache for p in files)
    for path in files:
        data = path.read_bytes()
        assert PLANTED.encode() not in data, path
        assert b"PLANTED" not in data, path


def test_credentials_in_base_url_are_refused_before_any_request(fake, make_recipe):
    server = fake()
    url = server.base_url.replace("http://", "http://someone:pw-PLANTED-456@")
    for args in [(), ("--set", f"models.writer.base_url={url}")]:
        recipe = make_recipe(url if not args else server.base_url)
        proc = recipe.run(*args, quiet=False)
        no_traceback(proc)
        assert proc.returncode == 2, proc.stderr
        assert "base_url holds credentials" in proc.stderr and "PLANTED" not in proc.stderr
    assert server.chats == []


def test_missing_api_key_variable_stops_the_run_before_any_request(fake, make_recipe):
    server = fake(api_key=PLANTED)
    recipe = make_recipe(server.base_url, model={"api_key_env": KEY_ENV})   # KEY_ENV unset
    proc = recipe.run(quiet=False)
    no_traceback(proc)
    assert proc.returncode == 1, proc.stderr
    assert f"${KEY_ENV}" in proc.stderr and "not set" in proc.stderr
    assert server.chats == []


# 8 ------------------------------------------------------------------------------------------

def test_set_overrides_reach_the_request_and_the_input(fake, make_recipe):
    server = fake()
    recipe = make_recipe(server.base_url)
    recipe.run("--set", "stages.gen.params.max_tokens=7", "--set", "input.limit=2",
               check=True)
    assert len(server.chats) == 2
    assert all(r["body"]["max_tokens"] == 7 for r in server.chats)
    assert all(r["body"]["temperature"] == 0.0 for r in server.chats)
    assert [a["id"] for a in read_jsonl(recipe.out / "answers.jsonl")] == ["p00", "p01"]
    assert manifest(recipe.out)["counts"]["done"] == 2


def test_set_overrides_model_params(fake, make_recipe):
    server = fake()
    recipe = make_recipe(server.base_url)
    recipe.run("--set", "models.writer.params.max_tokens=11", "--limit", "1", check=True)
    assert [r["body"]["max_tokens"] for r in server.chats] == [11]
    assert manifest(recipe.out)["models"]["writer"]["params"]["max_tokens"] == 11


def test_limit_processes_the_first_rows(fake, make_recipe):
    server = fake()
    recipe = make_recipe(server.base_url)
    recipe.run("--limit", "3", check=True)
    assert len(server.chats) == 3
    assert [a["id"] for a in read_jsonl(recipe.out / "answers.jsonl")] == ["p00", "p01", "p02"]
    assert [t["id"] for t in read_jsonl(recipe.out / "trace.jsonl")] == ["p00", "p01", "p02"]


def test_input_option_reads_another_file(fake, make_recipe, tmp_path):
    server = fake()
    recipe = make_recipe(server.base_url)
    other = tmp_path / "elsewhere" / "other.jsonl"
    other.parent.mkdir()
    rows = [{"id": "x1", "prompt": "zulu question"}, {"id": "x2", "prompt": "yankee question"}]
    other.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe.run("--input", str(other), check=True)
    assert sorted(user_text(r) for r in server.chats) == [
        "Answer briefly: yankee question", "Answer briefly: zulu question"]
    assert read_jsonl(recipe.out / "answers.jsonl") == [
        {"id": r["id"], "prompt": r["prompt"], "answer": expected_answer(r["prompt"])}
        for r in rows]
    sha = manifest(recipe.out)["hashes"]["sha256"]
    assert hashlib.sha256(other.read_bytes()).hexdigest() in sha.values()


# 9 ------------------------------------------------------------------------------------------

def test_dry_run_and_render_print_prompts_without_calls(fake, make_recipe):
    server = fake(api_key=PLANTED)
    # the key variable is not set: showing prompts must not need it
    recipe = make_recipe(server.base_url, model={"api_key_env": KEY_ENV},
                         stage={"system_text": "You are terse."})
    proc = recipe.run("--dry-run", quiet=False)
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    assert "Answer briefly: alpha question" in proc.stdout
    assert "You are terse." in proc.stdout
    assert "no model was called" in proc.stderr
    assert not recipe.out.exists()

    proc = recipe.toolbox("render", str(recipe.path), "--item", "p02", check=True)
    assert "Answer briefly: charlie question" in proc.stdout
    assert "alpha question" not in proc.stdout
    assert "stage gen" in proc.stdout and "model writer" in proc.stdout

    proc = recipe.toolbox("render", str(recipe.path), "--item", "1", check=True)
    assert "Answer briefly: bravo question" in proc.stdout
    assert server.chats == []
    assert not recipe.cache.exists() or not any(recipe.cache.iterdir())


# 10 -----------------------------------------------------------------------------------------

def test_invalid_json_reply_fails_only_that_item(fake, make_recipe):
    server = fake(rules=[("charlie", "this is certainly not JSON"),
                         ("question", '{"ok": true}')])
    recipe = make_recipe(server.base_url, stage={"parse": "json", "max_attempts": 2})
    proc = recipe.run(quiet=False)
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    assert "4 done, 1 failed" in proc.stderr
    assert "invalid_reply: 1" in proc.stderr

    (failure,) = read_jsonl(recipe.out / "failures.jsonl")
    assert failure["id"] == "p02" and failure["stage"] == "gen"
    assert failure["kind"] == "invalid_reply"
    assert "2 attempt" in failure["error"] and "not JSON" in failure["error"]
    assert [c["attempt"] for c in failure["trace"]["stages"]["gen"]["calls"]] == [1, 2]
    charlie = [r for r in server.chats if "charlie" in user_text(r)]
    assert len(charlie) == 2
    assert len(server.chats) == 6

    answers = read_jsonl(recipe.out / "answers.jsonl")
    assert [a["id"] for a in answers] == ["p00", "p01", "p03", "p04"]
    assert all(a["answer"] == {"ok": True} for a in answers)
    m = manifest(recipe.out)
    assert m["counts"]["done"] == 4 and m["counts"]["failed"] == 1
    assert m["counts"]["failures_by_kind"] == {"invalid_reply": 1}

    # a rerun asks again only for the failed item, and the cache already holds both attempts
    server.reset()
    proc = recipe.run(quiet=False)
    assert proc.returncode == 0, proc.stderr
    assert "4 already done" in proc.stderr
    assert server.chats == []
    assert len(read_jsonl(recipe.out / "failures.jsonl")) == 1


# usage errors ---------------------------------------------------------------------------------

def test_bad_set_path_is_a_usage_error_without_traceback(fake, make_recipe):
    server = fake()
    recipe = make_recipe(server.base_url)
    proc = recipe.run("--set", "stages.nosuchstage.params.max_tokens=7", quiet=False)
    assert proc.returncode == 2, proc.stderr
    no_traceback(proc)
    assert "--set" in proc.stderr
    assert server.chats == []
