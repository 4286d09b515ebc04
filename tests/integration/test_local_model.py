"""The real embedded model: SmolLM2-135M-Instruct on xllamacpp's llama.cpp server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.llm.local_server import missing_packages

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.local_model
if missing_packages() and not os.environ.get("CI"):
    pytestmark = [pytestmark, pytest.mark.skip(reason="embedded model not installed "
                                                       "(make venv installs it)")]


def run_cli(*args, cwd=ROOT):
    return subprocess.run([str(BIN / "aidsafe-run"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_intents_recipe_runs_on_the_real_local_server(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["workflows/intents.yaml", "--limit", "2", "--output-dir", str(out),
            "--cache-dir", str(cache), "--quiet"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    traces = [json.loads(x) for x in (out / "trace.jsonl").read_text().splitlines()]
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert sorted([t["id"] for t in traces] + [f["id"] for f in failures]) == ["p01", "p02"]
    for trace in traces:
        call = trace["stages"]["intents"]["calls"][-1]
        assert call["raw"] and call["cache_hit"] is False and call["completion_tokens"] > 0
    for failure in failures:
        assert failure["stage"] == "intents" and failure["error"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["writer"]["provider"] == "local"
    assert "llama" in (out / "local-server.log").read_text(errors="replace").lower()

    # A fresh rerun is served from the cache: the server is never started again.
    (out / "local-server.log").unlink()
    again = run_cli(*args, "--fresh")
    assert again.returncode == 0, again.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["calls"]["calls"] == manifest["calls"]["cache_hits"] > 0
    assert not (out / "local-server.log").exists()


def test_local_server_process_starts_and_answers(tmp_path):
    import urllib.request
    proc = subprocess.Popen([sys.executable, "-m", "engine.llm.local_server", "--parallel", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        base = proc.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:") and base.endswith("/v1")
        body = json.dumps({"model": "x", "max_tokens": 8,
                           "messages": [{"role": "user", "content": "Say hi"}]}).encode()
        request = urllib.request.Request(base + "/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(request, timeout=120).read())
        assert reply["choices"][0]["message"]["content"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_aidsafe_recipe_runs_two_items_on_the_real_local_server(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("workflows/aidsafe.yaml", "--limit", "2", "--output-dir", str(out),
                   "--cache-dir", str(tmp_path / "cache"), "--quiet")
    traces = [json.loads(x) for x in (out / "trace.jsonl").read_text().splitlines()]
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert proc.returncode == (1 if not traces else 0), proc.stderr
    assert sorted([t["id"] for t in traces] + [f["id"] for f in failures]) == ["p01", "p02"]
    dataset = [json.loads(x) for x in (out / "dataset.jsonl").read_text().splitlines()]
    assert len(dataset) == len(traces)
    for trace, record in zip(traces, dataset):
        d = trace["stages"]["deliberation"]
        assert 1 <= d["value"]["turns"] <= 4 and d["stopped_by"]["rule"] in (
            "agreement", "phrase", "max_turns", "max_tokens")
        assert [c["turn"] for c in d["calls"] if c["attempt"] == 1] == list(
            range(1, d["value"]["turns"] + 1))
        assert list(record) == ["prompt", "thoughts", "response"]
        assert record["thoughts"] == trace["stages"]["refine"]["value"]["thoughts"]
    for failure in failures:
        assert failure["stage"] in ("intents", "seed", "deliberation", "refine")
        assert failure["error"]


def test_dpo_recipe_runs_two_items_on_the_real_local_server(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("workflows/aidsafe-dpo.yaml", "--limit", "2", "--output-dir", str(out),
                   "--cache-dir", str(tmp_path / "cache"), "--quiet",
                   "--set", "stages.whisper.stop=[{score: {step: verdict, field: violation, "
                   "at_least: 4}}, {max_turns: 2}]",
                   "--set", "models.target.params.max_tokens=160")
    traces = [json.loads(x) for x in (out / "trace.jsonl").read_text().splitlines()]
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert proc.returncode == (1 if not traces else 0), proc.stderr
    assert len(traces) + len(failures) == 2
    pairs = [json.loads(x) for x in (out / "dpo.jsonl").read_text().splitlines()]
    kept = [t for t in traces if t["stages"]["pair"]["value"]["kept"]]
    assert len(pairs) == len(kept)
    for trace in traces:
        whisper = trace["stages"]["whisper"]
        assert whisper["stopped_by"]["rule"] in ("score", "max_turns")
        if not trace["stages"]["pair"]["value"]["kept"]:
            assert trace["stages"]["pair"]["value"]["reasons"]
    for pair in pairs:
        assert list(pair) == ["prompt", "chosen", "rejected"]
