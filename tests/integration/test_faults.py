"""Faults over HTTP, kills and a second, independent fake server (llmock from PyPI).

Every test drives the real CLI as a subprocess against a server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .test_cli_fake_server import body_key, manifest, no_traceback, read_jsonl

BIN = Path(sys.executable).parent
TWO_STAGES = {"id": "gen", "kind": "generate", "model": "writer",
              "prompt_text": "Answer briefly: {{ input.prompt }}"}


def prompts(count: int) -> list[str]:
    return [f"question number {i}" for i in range(count)]


def test_500_items_survive_5xx_429_and_resets_without_duplicates(fake, make_recipe):
    server = fake(error_rate=0.2, rate_limit_rate=0.1, retry_after=0.05, reset_rate=0.02,
                  seed=7)
    recipe = make_recipe(server.base_url, prompts=prompts(500),
                         model={"concurrency": 32, "retries": 12, "backoff": 0.02})
    proc = recipe.run(quiet=False)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    answers = read_jsonl(recipe.out / "answers.jsonl")
    assert [a["id"] for a in answers] == [f"p{i:02d}" for i in range(500)]
    assert read_jsonl(recipe.out / "failures.jsonl") == []
    faults = {r["fault"] for r in server.server.requests}
    assert {"error", "rate_limit", "reset"} <= faults, faults
    paid = [body_key(r) for r in server.chats if r["status"] == 200]
    assert len(paid) == len(set(paid)) == 500, "a call that landed was paid for twice"
    assert manifest(recipe.out)["calls"]["retries"] == len(server.chats) - 500


def test_malformed_and_truncated_bodies_are_retried(fake, make_recipe):
    server = fake(malformed_rate=0.3, seed=3)
    recipe = make_recipe(server.base_url, prompts=prompts(40),
                         model={"retries": 12, "backoff": 0.02})
    recipe.run(check=True)
    assert len(read_jsonl(recipe.out / "answers.jsonl")) == 40
    assert any(r["fault"] == "malformed" for r in server.chats)


def test_slow_responses_time_out_and_are_retried(fake, make_recipe):
    server = fake(latency=1.0)
    recipe = make_recipe(server.base_url, prompts=prompts(2),
                         model={"timeout": 0.2, "retries": 1})
    proc = recipe.run(quiet=False)
    assert proc.returncode == 1 and "no item succeeded" in proc.stderr
    failures = read_jsonl(recipe.out / "failures.jsonl")
    assert {f["kind"] for f in failures} == {"llm_error"}
    assert all("no reply within 0.2s" in f["error"] for f in failures)
    assert len(server.chats) == 4      # each call: the first try and one retry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_is_one_message(make_recipe):
    recipe = make_recipe(f"http://127.0.0.1:{free_port()}/v1", prompts=prompts(20))
    proc = recipe.run(quiet=False)
    no_traceback(proc)
    assert proc.returncode == 1
    assert proc.stderr.count("is the server running?") == 1
    assert "recipe.yaml:" in proc.stderr and "model 'writer'" in proc.stderr
    assert manifest(recipe.out)["status"] == "stopped"


def test_max_failures_stops_the_run_with_a_summary(fake, make_recipe):
    server = fake(rules=[("question number [0-9]$", "not json"),
                         ("question number", '{"ok": true}')])
    recipe = make_recipe(server.base_url, prompts=prompts(30),
                         stage={"parse": "json", "on_invalid": "fail"},
                         model={"concurrency": 1})
    proc = recipe.run("--max-failures", "2", quiet=False)
    assert proc.returncode == 1
    assert "3 items failed, more than --max-failures 2 (invalid_reply: 3)" in proc.stderr
    assert len(read_jsonl(recipe.out / "failures.jsonl")) == 3
    share = recipe.run("--max-failures", "20%", "--fresh", quiet=False)
    assert share.returncode == 1 and "10 of 30 items failed" in share.stderr
    assert recipe.run("--max-failures", "50%", "--fresh").returncode == 0


def _wait_lines(path: Path, count: int, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {count} lines")


def test_kill_9_at_several_points_then_resume_equals_a_clean_run(fake, make_recipe):
    stages = {"prompt_text": "Answer briefly: {{ input.prompt }}"}
    reference_server = fake()
    reference = make_recipe(reference_server.base_url, folder="reference", prompts=prompts(8))
    reference.run(check=True)
    expected = (reference.out / "answers.jsonl").read_bytes()

    server = fake(latency=0.15)
    recipe = make_recipe(server.base_url, folder="killed", prompts=prompts(8), stage=stages)
    paid: set[str] = set()
    for lines in (0, 3, 6):               # at the first call, mid-run, near the end
        proc = recipe.popen("--concurrency", "1")
        if lines:
            _wait_lines(recipe.out / "trace.jsonl", lines, proc, 60)
        else:
            time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        log = list(server.chats)
        resent = {body_key(r) for r in log} & paid
        assert not resent, "a call answered before an earlier kill was made again"
        paid |= {body_key(r) for r in log[:-1]}   # the last one may not have been received
        server.reset()
    recipe.run("--concurrency", "1", check=True)
    assert not {body_key(r) for r in server.chats} & paid
    assert (recipe.out / "answers.jsonl").read_bytes() == expected
    trace = read_jsonl(recipe.out / "trace.jsonl")
    assert [t["id"] for t in trace] == [f"p{i:02d}" for i in range(8)]


@pytest.fixture
def llmock():
    """The independent peer: llmock from PyPI, on a free port, with its own fault mix."""
    exe = shutil.which("llmock", path=str(BIN))
    if exe is None:
        pytest.skip("llmock is not installed (it is in the `test` extra)")
    port = free_port()
    proc = subprocess.Popen([exe, "serve", "--port", str(port), "--log-level", "warning",
                             "--error-rate", "429=0.2", "--error-rate", "500=0.1",
                             "--error-rate", "503=0.05", "--tool-mode", "off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def test_llmock_finds_no_resilience_bug(llmock, make_recipe):
    recipe = make_recipe(llmock + "/v1", prompts=prompts(60),
                         model={"concurrency": 8, "retries": 10, "backoff": 0.05})
    proc = recipe.run(quiet=False)
    assert proc.returncode == 0, proc.stderr
    assert len(read_jsonl(recipe.out / "answers.jsonl")) == 60
    verdict = json.loads(urllib.request.urlopen(llmock + "/_llmock/verdict").read())
    assert verdict["faults_injected"] > 0
    assert [f for f in verdict["findings"] if f["severity"] == "error"] == [], verdict


def test_llmock_a_401_is_never_retried(llmock, make_recipe):
    scenario = json.dumps({"behaviors": [{"type": "fail", "status": 401, "times": None}]})
    urllib.request.urlopen(urllib.request.Request(
        llmock + "/_llmock/scenario", data=scenario.encode(),
        headers={"Content-Type": "application/json"}))
    recipe = make_recipe(llmock + "/v1", prompts=prompts(10))
    proc = recipe.run(quiet=False)
    assert proc.returncode == 1 and proc.stderr.count("HTTP 401") == 1
    verdict = json.loads(urllib.request.urlopen(llmock + "/_llmock/verdict").read())
    assert "retried_non_retryable" not in {f["code"] for f in verdict["findings"]}


def test_a_planted_key_appears_nowhere_a_run_writes(fake, make_recipe, tmp_path):
    key = "sk-PLANTED-d41d8cd98f00b204"
    server = fake(api_key=key, error_rate=0.3, malformed_rate=0.1, seed=5)
    recipe = make_recipe(server.base_url, prompts=prompts(30),
                         model={"api_key_env": "AIDSAFE_TEST_API_KEY", "retries": 10,
                                "backoff": 0.01},
                         env={"AIDSAFE_TEST_API_KEY": key})
    runs = [recipe.run(quiet=False), recipe.run("--fresh", quiet=False),
            recipe.toolbox("cache", "stats", "--cache-dir", str(recipe.dir / "cache")),
            recipe.run("--set", "models.writer.model=missing", "--fresh", quiet=False)]
    assert runs[0].returncode == 0, runs[0].stderr
    for proc in runs:
        assert key not in proc.stdout + proc.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "recipe.yaml"]
    assert len(written) > 5
    for path in written:
        assert key.encode() not in path.read_bytes(), path
