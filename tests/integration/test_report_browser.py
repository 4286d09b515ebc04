"""The report opens in headless Chromium: it renders, its inline script runs without console
errors, and every section is in the DOM. Skipped without Chromium, except in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from engine import api, report
from engine.runner import RunOptions

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ("summary", "grades", "pairwise", "plots", "items", "manifests")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]

pytestmark = pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"),
                                reason="chromium is not installed (apt-get install chromium)")


def mock_run(tmp_path, name, out, input_path=None):
    path = ROOT / "workflows" / f"{name}.yaml"
    sets = tuple(f"models.{m}.provider=mock" for m in api.load_workflow(path).models)
    wf = api.load_workflow(path, sets, input_path=input_path, cache_dir=str(tmp_path / "cache"))
    state = api.run(wf, RunOptions(run_dir=tmp_path / out, limit=3))
    assert state.done == 3
    return str(tmp_path / out)


def chromium(tmp_path, profile, *args):
    assert CHROMIUM, "chromium is required in CI (apt-get install chromium)"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / profile}", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def page_errors(stderr: str, page: Path) -> list[str]:
    """Console errors of the page. A clean run still logs `:ERROR:` lines about D-Bus and the
    like, which never mention the page; JavaScript errors appear as `INFO:CONSOLE(...)]
    "Uncaught ...", source: file:///...report.html`."""
    return [line for line in stderr.splitlines()
            if ("CONSOLE" in line and ("Uncaught" in line or "rror" in line))
            or (":ERROR:" in line and page.name in line)]


def test_report_renders_in_headless_chromium(tmp_path):
    aidsafe = mock_run(tmp_path, "aidsafe", "aidsafe")
    zero = mock_run(tmp_path, "zero-shot-cot", "zero-shot-cot")
    grade_a = mock_run(tmp_path, "grade", "grade-aidsafe", f"{aidsafe}/dataset.jsonl")
    grade_z = mock_run(tmp_path, "grade", "grade-zero-shot-cot", f"{zero}/dataset.jsonl")
    page = tmp_path / "report.html"
    report.build([grade_a, grade_z, aidsafe, zero], str(page))
    url = page.as_uri()

    shot = tmp_path / "report.png"
    proc = chromium(tmp_path, "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000",
                    url)
    assert shot.is_file() and shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page_errors(proc.stderr, page) == []

    proc = chromium(tmp_path, "profile-dom", "--dump-dom", url)
    dom = proc.stdout
    assert 'data-ready="1"' in dom, "the inline script did not finish"
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom
    assert dom.count("<svg") >= 4 and "agent_a" in dom and "graded in" in dom
    assert page_errors(proc.stderr, page) == []


def test_the_error_check_sees_a_script_error(tmp_path):
    """The console check is meaningful: a page whose script throws is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFn();"
                    'document.body.dataset.ready = "1";</script></body></html>')
    proc = chromium(tmp_path, "profile-broken", "--dump-dom", page.as_uri())
    assert 'data-ready="1"' not in proc.stdout
    assert any("undefinedFn" in line for line in page_errors(proc.stderr, page))
