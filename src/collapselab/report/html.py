"""``collapselab report RUN [RUN...] --html``: one self-contained HTML page a person can read.

Everything is inside the file (charts as inline SVG, image grids as PNG data URIs, no script, no
font or style sheet fetched), so it opens offline, attaches to an e-mail and archives as is. For
each run: what was run, the article's table per policy, a ranking of the policies at the last
generation, every metric against generation with its unit and which way is better, samples from
generation 0 and the last generation side by side, and the model lineage from the run's ledger.
Several runs are laid side by side. Every number comes from the run folders.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from collapselab.report.metric_info import info

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1500px;padding:1.5em;color:#222;background:#fff}
h1{font-size:1.6em;margin:.2em 0} h2{font-size:1.25em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1.05em;margin:1.2em 0 .3em} .meta{color:#555} .runs{display:grid;gap:2em}
table{border-collapse:collapse;margin:.4em 0 1em} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left} .charts{display:flex;flex-wrap:wrap;gap:.6em}
.charts figure{margin:0;width:380px} .charts svg{width:100%;height:auto} figcaption{font-size:.85em;color:#555}
.samples{display:grid;grid-template-columns:1fr 1fr;gap:1em} .samples ol{margin:0;padding-left:1.4em;font-size:.9em}
.samples img{max-width:100%;image-rendering:pixelated} ul.tree{font-size:.9em} .good{color:#176b2c} .bad{color:#a1261c}
"""


def render(runs: list, title: str | None = None) -> str:
    """The whole page for ``runs`` (:class:`collapselab.api.Run` objects) as one HTML string."""
    cols = f"grid-template-columns:repeat({len(runs)},minmax(0,1fr))" if len(runs) > 1 else ""
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{_e(title or 'Collapse Lab report')}</title><style>{STYLE}</style></head><body>",
             f"<h1>{_e(title or 'Collapse Lab report')}</h1>",
             f"<p class='meta'>{len(runs)} run{'s' if len(runs) > 1 else ''}: "
             + ", ".join(f"<code>{_e(str(r.path))}</code>" for r in runs) + "</p>"]
    if len(runs) > 1:
        parts.append(_comparison(runs))
    parts.append(f"<div class='runs' style='{cols}'>")
    for r in runs:
        parts.append(f"<section>{_run(r)}</section>")
    parts.append("</div></body></html>")
    return "\n".join(parts)


def write(runs: list, path: str | Path, title: str | None = None) -> Path:
    from collapselab.atomic import atomic_write_text

    atomic_write_text(path, render(runs, title))
    return Path(path)


# ------------------------------------------------------------------------------------- parts
def _e(x) -> str:
    return html.escape(str(x))


def _run(r) -> str:
    c = r.config
    m = r.metrics
    out = [f"<h2>{_e(r.title())}</h2>",
           f"<p class='meta'>run <code>{_e(str(r.path))}</code>; policies {', '.join(_e(p) for p in c.policies)}; "
           f"{'complete' if r.complete else 'unfinished: showing the generations it finished'}; "
           f"{_e(r.summary.get('seconds', '?'))} s.</p>"]
    out.append(_ranking(r))
    out.append("<h3>The article's table</h3>")
    if c.tree:
        out.append("<p class='meta'>A derivative tree: see the lineage below.</p>")
    else:
        for block in r.table():
            rows = "".join(f"<tr><td>{g}</td><td>{d:.0%}{f' ± {s:.0%}' if s > 0 else ''}</td><td class='l'>{_e(t)}</td></tr>"
                           for g, d, s, t in block.rows)
            out.append(f"<table><caption class='l'><b>{_e(block.policy)}</b></caption><tr><th>generation</th>"
                       f"<th>output diversity (relative)</th><th class='l'>degradation observed</th></tr>{rows}</table>")
    out.append(f"<p class='meta'>{_e(r.caption())}</p>")
    if c.preset == "defences":
        out.append(_defences(r))
    out.append("<h3>Metrics by generation</h3><div class='charts'>" + "".join(_charts(r, m)) + "</div>")
    out.append(_samples(r))
    out.append(_lineage(r))
    return "\n".join(out)


def ranked_policies(r) -> pd.DataFrame:
    """Policies at the last generation each reached, ranked by their mean rank over the metrics that
    have a better direction (mean over seeds); rank 1 is best."""
    m = r.metrics
    keyed = [k for k in m.columns if k not in ("seed", "generation") and info(k).better != 0
             and pd.api.types.is_numeric_dtype(m[k]) and m[k].notna().any()]
    last = m[m["generation"] == m.groupby("policy")["generation"].transform("max")]
    last = last[last["generation"] > 0]
    if last.empty or not keyed:
        return pd.DataFrame()
    mean = last.groupby("policy")[keyed].mean()
    ranks = pd.DataFrame({k: mean[k].rank(ascending=info(k).better < 0) for k in keyed})
    mean["mean rank"] = ranks.mean(axis=1)
    mean["generation"] = last.groupby("policy")["generation"].max()
    return mean.sort_values("mean rank")


def _ranking(r) -> str:
    t = ranked_policies(r)
    if t.empty:
        return ""
    show = [k for k in (r.config.diversity_metric, "tail_retention", "ppl_holdout", "fid", "recall", "w2") if k in t.columns]
    head = "".join(f"<th>{_e(info(k).title)}<br><small>{_e(info(k).direction)}</small></th>" for k in show)
    rows = "".join(f"<tr><td>{i}</td><td class='l'>{_e(p)}</td><td>{int(row['generation'])}</td>"
                   + "".join(f"<td>{_fmt(row[k])}</td>" for k in show) + f"<td>{row['mean rank']:.2f}</td></tr>"
                   for i, (p, row) in enumerate(t.iterrows(), 1))
    n = sum(1 for k in t.columns if k not in ("mean rank", "generation"))
    return ("<h3>Ranking of the policies</h3><table><tr><th>rank</th><th class='l'>policy</th><th>generation</th>"
            f"{head}<th>mean rank</th></tr>{rows}</table><p class='meta'>Ranked by the mean of each policy's rank on "
            f"{n} metrics that have a better direction, at the last generation (mean over seeds).</p>")


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _defences(r) -> str:
    from collapselab.presets import format_matrix, mitigation_matrix

    heads, rows = format_matrix(mitigation_matrix(r.metrics, r.config.policies, r.config.diversity_metric))
    body = "".join("<tr>" + "".join(f"<td{' class=l' if i == 1 else ''}>{_e(x)}</td>" for i, x in enumerate(row)) + "</tr>"
                   for row in rows)
    return ("<h3>Defences against the contaminated web</h3><table><tr>"
            + "".join(f"<th>{_e(h)}</th>" for h in heads) + f"</tr>{body}</table>")


def _charts(r, m: pd.DataFrame) -> list[str]:
    import matplotlib.pyplot as plt

    from collapselab.report.plots import METRICS, _draw, _label

    if r.config.tree:
        return []
    rank = {p: i for i, p in enumerate(r.config.policies)}
    m = m.sort_values("policy", key=lambda s: s.map(rank), kind="stable")
    figs = []
    for metric in [k for k in METRICS[r.config.kind] if k in m.columns and m[k].notna().any()]:
        fig, ax = plt.subplots(figsize=(4.6, 3.2))
        _draw(ax, m, metric)
        _label(ax, metric, "generation")
        ax.legend(fontsize=7)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
        plt.close(fig)
        svg = buf.getvalue()
        svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: inline SVG needs neither
        i = info(metric)
        figs.append(f"<figure>{svg}<figcaption>{_e(i.title)}: {_e(i.ylabel)}; {_e(i.direction)}. "
                    f"Mean over seeds, band min–max.</figcaption></figure>")
    return figs


def _samples(r) -> str:
    c = r.config
    m = r.metrics
    seed = c.seeds[0]
    out = ["<h3>Samples: generation 0 and the last generation</h3>"]
    for p in c.policies if not c.tree else []:
        reached = m.loc[(m["policy"] == p) & (m["seed"] == seed), "generation"]
        if reached.empty:
            continue
        G = int(reached.max())
        cells = []
        for g in (0, G):
            cells.append(f"<div><b>generation {g}</b>{_sample_cell(r, p, seed, g)}</div>")
        out.append(f"<p><b>{_e(p)}</b>, seed {seed}</p><div class='samples'>{''.join(cells)}</div>")
    return "\n".join(out) if len(out) > 1 else ""


def _sample_cell(r, policy: str, seed: int, g: int, k: int = 6) -> str:
    f = r.folder
    if r.config.is_image:
        png = f.grid_path(policy, seed, g)
        if not png.exists():
            return "<p class='meta'>(no image grid)</p>"
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        return f"<img alt='generation {g} samples' src='data:image/png;base64,{data}'>"
    if r.config.is_text:
        path = f.sample_path(policy, seed, g, True)
        if not path.exists():
            return "<p class='meta'>(no samples kept)</p>"
        texts = f.read_sample_column(policy, seed, g, "text")[:k]
        return "<ol>" + "".join(f"<li>{_e(t)}</li>" for t in texts) + "</ol>"
    path = f.sample_path(policy, seed, g, False)
    if not path.exists():
        return ""
    x = np.load(path)
    x = x.reshape(len(x), -1)
    return (f"<p>{len(x)} samples; mean {np.array2string(x.mean(0), precision=3)}, "
            f"variance {np.array2string(x.var(0), precision=3)}</p>")


def _lineage(r) -> str:
    from collapselab.errors import UserError
    from collapselab.report.lineage import children, lineage

    try:
        nodes = lineage(r.folder.ledger_path)
    except UserError:
        return ""
    kids = children(nodes)

    def grow(parent) -> str:
        items = [nodes[m] for m in kids.get(parent, [])]
        if not items:
            return ""
        return "<ul class='tree'>" + "".join(
            f"<li><code>{_e(n.model_id)}</code> <span class='meta'>synthetic depth {n.depth}"
            f"{' + human data' if n.human and n.data_parents else ''}</span>{grow(n.model_id)}</li>" for n in items) + "</ul>"

    return (f"<h3>Lineage (from the run's ledger)</h3><p class='meta'>Each model under the model whose output "
            f"it learned from; synthetic depth = the longest chain of model-made data behind it.</p>{grow(None)}")


def _comparison(runs: list) -> str:
    rows = []
    for r in runs:
        t = ranked_policies(r)
        for p, row in t.iterrows():
            d = r.config.diversity_metric
            rows.append(f"<tr><td class='l'>{_e(r.title())}</td><td class='l'>{_e(p)}</td><td>{int(row['generation'])}</td>"
                        f"<td>{_fmt(row.get(d))}</td><td>{_fmt(row.get('ppl_holdout', row.get('fid')))}</td></tr>")
    return ("<h2>Side by side</h2><table><tr><th class='l'>run</th><th class='l'>policy</th><th>generation</th>"
            "<th>diversity metric</th><th>held-out perplexity / FID<br><small>lower is better</small></th></tr>"
            + "".join(rows) + "</table>")
