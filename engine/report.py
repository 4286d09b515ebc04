"""`aidsafe report RUN_DIR ...`: one self-contained HTML page (inline CSS, SVG plots, a tiny
inline script) and a terminal/JSON summary over finished run folders. Traces are streamed;
only aggregates and the first ITEM_CAP items of each run are kept."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import Loc, Problem, RecipeError, RunError
from .jsonio import loads

ITEM_CAP = 200
OUTCOMES = ("win", "tie", "loss")


@dataclass
class Run:
    name: str
    path: Path
    manifest: dict[str, Any]
    done: int = 0
    failed: int = 0
    failure_kinds: Counter = field(default_factory=Counter)
    sums: dict[str, list[float]] = field(default_factory=dict)      # score -> per-item values
    pairwise: dict[str, Counter] = field(default_factory=dict)      # judge or "overall" -> outcomes
    turns: Counter = field(default_factory=Counter)
    stops: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    items: list[dict[str, Any]] = field(default_factory=list)


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    """Stream a JSONL file; a torn or blank line (an interrupted run) is skipped."""
    if not path.is_file():
        return
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    yield row


def is_judge(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("scores"), dict)
            and isinstance(value.get("judges"), dict) and "outcome" not in value)


def is_pairwise(value: Any) -> bool:
    return (isinstance(value, dict) and value.get("outcome") in OUTCOMES
            and isinstance(value.get("judges"), dict)
            and all(isinstance(j, dict) and j.get("outcome") in OUTCOMES
                    for j in value["judges"].values()))


def _final(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("thoughts"), list)
            and "response" in value)


def _prompt(row: dict[str, Any]) -> str:
    data = row.get("input")
    if isinstance(data, dict) and isinstance(data.get("prompt"), str):
        return data["prompt"]
    return json.dumps(data, ensure_ascii=False)


def _numeric_scores(value: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in value["scores"].items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _reason(text: Any) -> str:
    head = str(text).split(":", 1)[0].strip()
    return head[:40] + ("…" if len(head) > 40 else "")


def load_run(path: Path, name: str) -> Run:
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise RecipeError([Problem(Loc(str(path)), "not a run folder: no manifest.json",
                                   "give folders written by aidsafe-run (manifest.json, "
                                   "trace.jsonl)")])
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {manifest_path}: {exc}") from exc
    run = Run(name, path, manifest if isinstance(manifest, dict) else {})
    kinds = {s.get("id"): s.get("kind") for s in run.manifest.get("stages") or []
             if isinstance(s, dict)}
    for row in _rows(path / "trace.jsonl"):
        run.done += 1
        item = _scan(run, row, kinds) if len(run.items) < ITEM_CAP else None
        if item is None:
            _scan(run, row, kinds, keep=False)
        else:
            run.items.append(item)
    for row in _rows(path / "failures.jsonl"):
        run.failed += 1
        run.failure_kinds[str(row.get("kind", "?"))] += 1
    return run


def _scan(run: Run, row: dict[str, Any], kinds: dict, keep: bool = True) -> dict[str, Any] | None:
    """Add one trace row to the run's aggregates; return its item view when `keep`."""
    item: dict[str, Any] = {"id": row.get("id"), "prompt": _prompt(row), "generated": [],
                            "transcripts": [], "dropped": [], "final": None, "grades": {},
                            "pairwise": None}
    stages = row.get("stages") if isinstance(row.get("stages"), dict) else {}
    data = row.get("input")
    if isinstance(data, dict) and _final(data):
        item["final"] = {"thoughts": data["thoughts"], "response": data["response"]}
    for sid, record in stages.items():
        if not isinstance(record, dict) or record.get("skipped"):
            continue
        value = record.get("value")
        if is_judge(value):
            scores = _numeric_scores(value)
            for name, score in scores.items():
                run.sums.setdefault(name, []).append(score)
            item["grades"][run.name] = scores
        elif is_pairwise(value):
            run.pairwise.setdefault("overall", Counter())[value["outcome"]] += 1
            for judge, verdict in value["judges"].items():
                run.pairwise.setdefault(str(judge), Counter())[verdict["outcome"]] += 1
            item["pairwise"] = value
        stopped = record.get("stopped_by")
        if stopped is None and isinstance(value, dict):
            stopped = value.get("stopped_by")
        if isinstance(value, dict) and isinstance(value.get("turns"), int) and stopped:
            run.turns[str(value["turns"])] += 1
            run.stops[str(stopped.get("rule", "?")) if isinstance(stopped, dict) else "?"] += 1
        if isinstance(value, dict) and isinstance(value.get("dropped"), list):
            for drop in value["dropped"]:
                if isinstance(drop, dict):
                    run.dropped[f"{drop.get('filter', '?')}: {_reason(drop.get('reason'))}"] += 1
            item["dropped"] += [d for d in value["dropped"] if isinstance(d, dict)]
        if not keep:
            continue
        if isinstance(record.get("transcript"), list):
            item["transcripts"].append({"stage": sid, "turns": record["transcript"],
                                        "stopped_by": record.get("stopped_by")})
        if kinds.get(sid) == "generate":
            item["generated"].append((sid, json.dumps(value, ensure_ascii=False)))
        if _final(value) and (item["final"] or {}).get("kind") != "refine":
            item["final"] = {"stage": sid, "kind": kinds.get(sid), "thoughts": value["thoughts"],
                             "response": value["response"]}
    return item if keep else None


def _attach_grades(runs: list[Run]) -> None:
    """Give ungraded runs' shown items the grades of graded runs' items with the same prompt
    (and the same response, when both have one): a second streaming pass over graded runs."""
    wanted: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if not run.sums:
            for item in run.items:
                wanted.setdefault(item["prompt"], []).append(item)
    for run in (r for r in runs if r.sums and wanted):
        for row in _rows(run.path / "trace.jsonl"):
            items = wanted.get(_prompt(row))
            if not items:
                continue
            response = (row.get("input") or {}).get("response") if isinstance(
                row.get("input"), dict) else None
            values = [r.get("value") for r in (row.get("stages") or {}).values()
                      if isinstance(r, dict)]
            scores = next((_numeric_scores(v) for v in values if is_judge(v)), None)
            for item in items:
                final = item["final"]
                if scores and (response is None or not final or final["response"] == response):
                    item["grades"].setdefault(run.name, scores)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(runs: list[Run]) -> dict[str, Any]:
    """Everything the terminal, --json and the page show, as plain data."""
    graded = [r for r in runs if r.sums]
    names: list[str] = []
    for run in graded:
        names += [n for n in run.sums if n not in names]
    table = {n: {r.name: round(_mean(r.sums[n]), 4) for r in graded if n in r.sums} for n in names}
    delta: dict[str, dict[str, float | None]] = {}
    if graded:
        base = graded[0]
        for n in names:
            first = _mean(base.sums[n]) if n in base.sums else None
            delta[n] = {r.name: (round((_mean(r.sums[n]) - first) / first * 100, 2)
                                 if first and n in r.sums else None) for r in graded[1:]}
    pairwise = {}
    for run in (r for r in runs if r.pairwise):
        total = sum(run.pairwise["overall"].values())
        pairwise[run.name] = {"items": total, "rates": {
            judge: {o: round(c[o] / max(sum(c.values()), 1), 4) for o in OUTCOMES}
            for judge, c in run.pairwise.items()}}
    return {
        "runs": [{"name": r.name, "path": str(r.path), "workflow": r.manifest.get("workflow"),
                  "status": r.manifest.get("status"), "done": r.done, "failed": r.failed,
                  "failures_by_kind": dict(r.failure_kinds),
                  **{k: (r.manifest.get("calls") or {}).get(k, 0) for k in
                     ("calls", "cache_hits", "prompt_tokens", "completion_tokens")}}
                 for r in runs],
        "grades": {"runs": [r.name for r in graded], "base": graded[0].name if graded else None,
                   "items": {r.name: len(next(iter(r.sums.values()))) for r in graded},
                   "means": table, "delta_pct": delta},
        "pairwise": pairwise,
        "turns": {r.name: dict(r.turns) for r in runs if r.turns},
        "stopped_by": {r.name: dict(r.stops) for r in runs if r.stops},
        "dropped": {r.name: dict(r.dropped) for r in runs if r.dropped},
        "item_cap": ITEM_CAP,
    }


def load_runs(paths: list[str]) -> list[Run]:
    runs, seen = [], Counter()
    for text in paths:
        path = Path(text)
        name = path.resolve().name or str(path)
        seen[name] += 1
        runs.append(load_run(path, name if seen[name] == 1 else f"{name} ({seen[name]})"))
    _attach_grades(runs)
    return runs


def summary_text(data: dict[str, Any]) -> str:
    lines = []
    for r in data["runs"]:
        lines.append(f"{r['name']} ({r['workflow']}, {r['status']}): {r['done']} done, "
                     f"{r['failed']} failed, {r['calls']} calls ({r['cache_hits']} cached), "
                     f"tokens {r['prompt_tokens']} in / {r['completion_tokens']} out")
    grades = data["grades"]
    if grades["runs"]:
        later = grades["runs"][1:]
        head = ["score"] + grades["runs"] + [f"Δ% {n}" for n in later]
        rows = [[name] + [f"{means[r]:.2f}" if r in means else "-" for r in grades["runs"]]
                + [_pct(grades["delta_pct"][name].get(r)) for r in later]
                for name, means in grades["means"].items()]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        lines.append(f"\ngrades (Δ% against {grades['base']}):")
        lines += [("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths))).rstrip()
                  for row in [head] + rows]
    for run, info in data["pairwise"].items():
        lines.append(f"\npairwise {run} ({info['items']} items; A = first run):")
        for judge, rates in info["rates"].items():
            lines.append(f"  {judge}: " + ", ".join(f"{o} {rates[o] * 100:.1f}%" for o in OUTCOMES))
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}%"


def build(paths: list[str], output: str) -> tuple[dict[str, Any], Path]:
    """Read the run folders, write the HTML page; return the summary data and the page path."""
    runs = load_runs(paths)
    try:
        from . import report_plots as plots
    except ImportError as exc:
        raise RunError(f"the report needs matplotlib ({exc})",
                       "install the report extra: pip install -e '.[report]'") from exc
    from .report_page import render
    data = summarize(runs)
    figures = {
        "turns": plots.counts_chart("Deliberation turns per item", "turns", data["turns"]),
        "stops": plots.counts_chart("Why deliberation stopped", "stop rule", data["stopped_by"]),
        "dropped": plots.dropped_chart(data["dropped"]),
        "scores": plots.score_chart({n: {r.name: r.sums[n] for r in runs if n in r.sums}
                                     for n in data["grades"]["means"]}),
        "stages": plots.stage_chart({r.name: r.manifest.get("per_stage") or {} for r in runs
                                     if r.manifest.get("per_stage")}),
    }
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data, runs, figures), encoding="utf-8")
    return data, out
