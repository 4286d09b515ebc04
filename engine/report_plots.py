"""The report's figures: matplotlib (Agg) rendered to inline SVG strings. Only `report` uses
this module; importing it fails with ImportError when the `report` extra is not installed."""

from __future__ import annotations

import io
import re
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "aidsafe-report",
                     "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.tight_layout()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and doctype: inline in HTML
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)


def _grouped_bars(ax, categories: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(categories))]
        ax.bar(xs, values, width=width, label=name)
    ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 4 else 0,
                  ha="right" if len(categories) > 4 else "center")
    if len(series) > 1:
        ax.legend(fontsize=8, frameon=False)


def counts_chart(title: str, xlabel: str, per_run: dict[str, dict[str, int]]) -> str | None:
    """Grouped bars: one group per category (turns, stop rule, ...), one bar per run."""
    numeric = lambda c: c.lstrip("-").isdigit()  # noqa: E731 - turn counts sort as numbers
    categories = sorted({c for counts in per_run.values() for c in counts},
                        key=lambda c: (not numeric(c), int(c) if numeric(c) else 0, c))
    if not categories:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    _grouped_bars(ax, categories, {run: [counts.get(c, 0) for c in categories]
                                   for run, counts in per_run.items()})
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("items")
    return _svg(fig)


def dropped_chart(per_run: dict[str, dict[str, int]]) -> str | None:
    """Horizontal bars: thoughts dropped per `filter: reason`, one bar per run."""
    labels = sorted({k for counts in per_run.values() for k in counts})
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.35 * len(labels) * max(len(per_run), 1)))
    height = 0.8 / len(per_run)
    for i, (run, counts) in enumerate(per_run.items()):
        ys = [y + (i - (len(per_run) - 1) / 2) * height for y in range(len(labels))]
        ax.barh(ys, [counts.get(k, 0) for k in labels], height=height, label=run)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("thoughts dropped")
    ax.set_title("Thoughts dropped per refiner filter and reason")
    if len(per_run) > 1:
        ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


def score_chart(scores: dict[str, dict[str, list[float]]]) -> str | None:
    """One panel per score name: a histogram of the per-item scores of each graded run."""
    names = list(scores)
    if not names:
        return None
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        values = [v for vs in scores[name].values() for v in vs] or [0.0]
        low, high = min(values), max(values)
        bins = [low - 0.5 + i * 0.5 for i in range(int((high - low) / 0.5) + 3)]
        for run, vs in scores[name].items():
            ax.hist(vs, bins=bins, alpha=0.6, label=run)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("score")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    axes.flat[0].set_ylabel("items")
    if any(len(v) > 1 for v in scores.values()):
        axes.flat[0].legend(fontsize=7, frameon=False)
    return _svg(fig)


def stage_chart(per_stage: dict[str, dict[str, dict[str, Any]]]) -> str | None:
    """Tokens (prompt + completion) and cache hits per stage, from the manifests' per_stage."""
    labels = [f"{run}/{stage}" for run, stages in per_stage.items() for stage in stages]
    if not labels:
        return None
    rows = [s for stages in per_stage.values() for s in stages.values()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 1.2 + 0.3 * len(labels)))
    prompt = [s.get("prompt_tokens", 0) for s in rows]
    left.barh(labels, prompt, label="prompt")
    left.barh(labels, [s.get("completion_tokens", 0) for s in rows], left=prompt,
              label="completion")
    left.set_title("Tokens per stage")
    left.legend(fontsize=8, frameon=False)
    left.invert_yaxis()
    right.barh(labels, [s.get("calls", 0) for s in rows], label="calls", color="#bbb")
    right.barh(labels, [s.get("cache_hits", 0) for s in rows], label="cache hits", height=0.5)
    right.set_title("Calls and cache hits per stage")
    right.legend(fontsize=8, frameon=False)
    right.invert_yaxis()
    right.set_yticks(range(len(labels)), [""] * len(labels))
    return _svg(fig)
