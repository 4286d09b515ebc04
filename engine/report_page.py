"""The report's HTML page: one Jinja template (autoescaped; only the SVG figures, which
matplotlib made, are marked safe), inline CSS and a tiny inline script. No external files."""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>aidsafe report: {{ data.runs | map(attribute="name") | join(", ") }}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;
padding:1rem 2rem;color:#1d1d1f;background:#fff}
h1{font-size:1.6rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
nav a{margin-right:1rem}table{border-collapse:collapse;margin:.6rem 0}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#0a7a2f}.down{color:#b3261e}.muted{color:#777}.nodata{color:#777;font-style:italic}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}
details{margin:.3rem 0}summary{cursor:pointer}details.item{border:1px solid #e3e3e8;
border-radius:6px;padding:.3rem .7rem}details.item[open]{background:#fafafc}
.turn{border-left:3px solid #8aa4d6;padding-left:.6rem;margin:.4rem 0}
.agent{font-weight:600}pre{white-space:pre-wrap;word-break:break-word;background:#f6f6f8;
padding:.5rem;border-radius:4px;font-size:12px}ol,ul{margin:.2rem 0}
button{margin:.2rem .4rem .2rem 0}
</style></head>
<body>
<h1>aidsafe report</h1>
<nav>{% for s in ["summary","grades","pairwise","plots","items","manifests"] %}<a href="#{{ s }}">{{ s|capitalize }}</a>{% endfor %}</nav>

<section id="summary"><h2>Summary</h2>
{% if data.runs %}<table><tr><th>run</th><th>workflow</th><th>status</th><th>items done</th>
<th>failed</th><th>calls</th><th>cache hits</th><th>tokens in</th><th>tokens out</th></tr>
{% for r in data.runs %}<tr><td>{{ r.name }}</td><td>{{ r.workflow }}</td><td>{{ r.status }}</td>
<td class="num">{{ r.done }}</td><td class="num">{{ r.failed }}{% if r.failures_by_kind %}
<span class="muted">({% for k, n in r.failures_by_kind.items() %}{{ k }} {{ n }}{{ ", " if not loop.last }}{% endfor %})</span>{% endif %}</td>
<td class="num">{{ r.calls }}</td><td class="num">{{ r.cache_hits }}</td>
<td class="num">{{ r.prompt_tokens }}</td><td class="num">{{ r.completion_tokens }}</td></tr>{% endfor %}
</table><p class="muted">Items are counted from trace.jsonl and failures.jsonl; calls, cache hits
and tokens are those of each run's latest invocation (manifest.json).</p>
{% else %}<p class="nodata">no data</p>{% endif %}</section>

<section id="grades"><h2>Grades</h2>
{% set g = data.grades %}{% if g.runs %}
<p>Mean score per item of each <code>judge</code> stage; Δ is the relative change against the
first graded run, <b>{{ g.base }}</b>.</p>
<table><tr><th>score</th>{% for r in g.runs %}<th>{{ r }}<br><span class="muted">{{ g["items"][r] }} items</span></th>{% endfor %}
{% for r in g.runs[1:] %}<th>Δ% {{ r }}</th>{% endfor %}</tr>
{% for name, means in g.means.items() %}<tr><td>{{ name }}</td>
{% for r in g.runs %}<td class="num">{{ "%.2f"|format(means[r]) if r in means else "–" }}</td>{% endfor %}
{% for r in g.runs[1:] %}{% set d = g.delta_pct[name][r] %}<td class="num {{ 'up' if d and d > 0 else 'down' if d and d < 0 }}">{{ "%+.2f%%"|format(d) if d is not none else "–" }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% else %}<p class="nodata">no data: no run has a judge stage (grade runs with workflows/grade.yaml)</p>{% endif %}
</section>

<section id="pairwise"><h2>Pairwise</h2>
{% if data.pairwise %}{% for run, info in data.pairwise.items() %}
<h3>{{ run }} <span class="muted">({{ info["items"] }} items; win = sample A, the first run, won)</span></h3>
<table><tr><th>judge</th><th>win</th><th>tie</th><th>loss</th></tr>
{% for judge, rates in info.rates.items() %}<tr><td>{{ judge }}</td>{% for o in ["win","tie","loss"] %}
<td class="num">{{ "%.1f%%"|format(rates[o] * 100) }}</td>{% endfor %}</tr>{% endfor %}</table>
{% endfor %}{% else %}<p class="nodata">no data: no run has a pairwise stage (pairwise comparison, see workflows/compare.yaml)</p>{% endif %}
</section>

<section id="plots"><h2>Plots</h2>
{% for key, title in [("turns","Deliberation turns per item"),("stops","Stop reasons"),
  ("dropped","Thoughts dropped per refiner filter and reason"),("scores","Score distributions"),
  ("stages","Tokens and cache hits per stage")] %}
<figure id="plot-{{ key }}"><figcaption><b>{{ title }}</b></figcaption>
{% if figures[key] %}{{ figures[key] }}{% else %}<p class="nodata">no data</p>{% endif %}</figure>
{% endfor %}</section>

<section id="items"><h2>Items</h2>
<p class="muted">At most the first {{ data.item_cap }} items of each run are shown.</p>
<button type="button" id="expand-all">expand all</button><button type="button" id="collapse-all">collapse all</button>
{% for run in runs %}<details class="run" open><summary><b>{{ run.name }}</b> — {{ run["items"]|length }} of {{ run.done }} items shown</summary>
{% for it in run["items"] %}<details class="item"><summary><code>{{ it.id }}</code> {{ it.prompt|truncate(140) }}</summary>
<p><b>Prompt</b></p><pre>{{ it.prompt }}</pre>
{% for sid, text in it.generated %}<p><b>{{ sid }}</b> <span class="muted">(generate)</span></p><pre>{{ text }}</pre>{% endfor %}
{% for t in it.transcripts %}<p><b>Deliberation: {{ t.stage }}</b>{% if t.stopped_by %} <span class="muted">— stopped by {{ t.stopped_by.rule }}: {{ t.stopped_by.reason }}</span>{% endif %}</p>
{% for turn in t.turns %}<div class="turn"><span class="agent">{{ turn.agent }}</span> <span class="muted">turn {{ turn.turn }}</span>
<ol>{% for th in turn.thoughts or [] %}<li>{{ th }}</li>{% endfor %}</ol><div>→ {{ turn.response }}</div></div>{% endfor %}{% endfor %}
{% if it.dropped %}<p><b>Dropped thoughts</b></p><ul>{% for d in it.dropped %}<li>{{ d.thought }} <span class="muted">— {{ d.filter }}: {{ d.reason }}</span></li>{% endfor %}</ul>{% endif %}
{% if it.final %}<p><b>Final CoT</b>{% if it.final.stage %} <span class="muted">({{ it.final.stage }})</span>{% else %} <span class="muted">(graded input)</span>{% endif %}</p>
<ol>{% for th in it.final.thoughts %}<li>{{ th }}</li>{% endfor %}</ol><p><b>Response</b></p><pre>{{ it.final.response }}</pre>{% endif %}
{% if it.grades %}<p><b>Grades</b></p><table><tr><th>graded in</th>{% for n in it.grades.values()|first %}<th>{{ n }}</th>{% endfor %}</tr>
{% for gr, scores in it.grades.items() %}<tr><td>{{ gr }}</td>{% for n, v in scores.items() %}<td class="num">{{ "%.2f"|format(v) }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if it.pairwise %}<p><b>Pairwise</b>: {{ it.pairwise.outcome }}</p><pre>{{ it.pairwise_json }}</pre>{% endif %}
</details>{% endfor %}{% if not run["items"] %}<p class="nodata">no data</p>{% endif %}</details>
{% else %}<p class="nodata">no data</p>{% endfor %}</section>

<section id="manifests"><h2>Manifests</h2>
{% for run in runs %}{% set m = run.manifest %}<h3>{{ run.name }} <span class="muted">{{ run.path }}</span></h3>
<table><tr><th>workflow</th><td>{{ m.workflow }} ({{ m.recipe }})</td></tr>
<tr><th>engine</th><td>{{ m.engine.version if m.engine is mapping else m.engine }}</td></tr>
<tr><th>status</th><td>{{ m.status }}</td></tr><tr><th>fingerprint</th><td><code>{{ m.fingerprint }}</code></td></tr>
<tr><th>models</th><td>{% for name, md in (m.models or {}).items() %}<div><b>{{ name }}</b>: {{ md.provider }} / {{ md.model }}{% if md.base_url %} at {{ md.base_url }}{% endif %}</div>{% endfor %}</td></tr>
<tr><th>counts</th><td><code>{{ m.counts | tojson }}</code></td></tr>
<tr><th>hashes</th><td>{% for p, h in ((m.hashes or {}).sha256 or {}).items() %}<div><code>{{ h[:16] }}…</code> {{ p }}</div>{% endfor %}</td></tr></table>
<details><summary>full manifest.json</summary><pre>{{ manifest_json[loop.index0] }}</pre></details>
{% else %}<p class="nodata">no data</p>{% endfor %}</section>

<script>
(function () {
  function setAll(open) {
    document.querySelectorAll("#items details").forEach(function (d) { d.open = open; });
  }
  document.getElementById("expand-all").addEventListener("click", function () { setAll(true); });
  document.getElementById("collapse-all").addEventListener("click", function () { setAll(false); });
  document.body.dataset.ready = "1";
})();
</script>
</body></html>
"""


def render(data: dict[str, Any], runs: list[Any], figures: dict[str, str | None]) -> str:
    env = Environment(autoescape=True, trim_blocks=False)
    for run in runs:
        for item in run.items:
            if item.get("pairwise"):
                item["pairwise_json"] = json.dumps(item["pairwise"], ensure_ascii=False, indent=1)
    return env.from_string(PAGE).render(
        data=data, runs=runs,
        figures={k: Markup(v) if v else None for k, v in figures.items()},
        manifest_json=[json.dumps(r.manifest, ensure_ascii=False, indent=2) for r in runs])
