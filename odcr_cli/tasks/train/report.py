"""``RUN/report.html``: curves of every loss term, the learning rate and the validation scores
read from ``log.jsonl``, the newest sample grids and the effective configuration. The training
loop rewrites it at every checkpoint; it reads only the run folder's files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from odcr_cli.tasks.html_page import esc, now, page, url, write_text

_NOT_CURVES = {"iter", "checkpoint", "world_size", "ranks_in_sync", "val"}


def read_log(path: Path) -> list[dict]:
    """The records of a ``log.jsonl``; a line cut by a crash or still being written is skipped."""
    records = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("iter"), (int, float)):
                    records.append(rec)
    except FileNotFoundError:
        pass
    return records


def write_training_report(run_dir: str | Path, n_samples: int = 3) -> Path:
    """Write ``RUN/report.html`` from the run folder's files (log, samples, config)."""
    run = Path(run_dir)
    records = read_log(run / "log.jsonl")
    try:
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    train_cfg = config.get("train", {}) if isinstance(config, dict) else {}
    losses = [r for r in records if "lr" in r]
    vals = [r for r in records if isinstance(r.get("val"), dict)]
    ckpts = [r for r in records if "checkpoint" in r]
    last = losses[-1] if losses else {}
    total = train_cfg.get("iters")
    it = int(last.get("iter", 0))
    status = [f"iteration {it:,}" + (f" of {int(total):,} ({100 * it / total:.0f} %)" if total else "")]
    if "sec_per_iter" in last:
        status.append(f"{last['sec_per_iter']:.3f} s/iter")
    if ckpts:
        status.append(f"last checkpoint {esc(ckpts[-1]['checkpoint'])} (iteration {int(ckpts[-1]['iter']):,})")
    status.append(f"updated {esc(now())}")
    body = [f"<h1>odcr train: {esc(run.resolve().name)}</h1>",
            f'<p class="meta">{" · ".join(status)}</p>',
            '<p class="note">Rewritten at every checkpoint; the page reloads itself every 2 minutes. '
            "Thin line: the logged values; thick line: their moving average.</p>"]

    if vals:
        keys = [k for k in vals[-1]["val"] if isinstance(vals[-1]["val"][k], (int, float)) and k != "n"]
        charts = [_chart(f"validation {k.upper()}", [r["iter"] for r in vals if k in r["val"]],
                         [r["val"][k] for r in vals if k in r["val"]], smooth=False) for k in keys]
        body += ["<h2>Validation</h2>", f'<div class="charts">{"".join(charts)}</div>']
    terms = [k for k in dict.fromkeys(k for r in losses for k in r)
             if k not in _NOT_CURVES and k not in ("lr", "sec_per_iter")]
    if terms:
        charts = [_chart(k, [r["iter"] for r in losses if k in r], [r[k] for r in losses if k in r]) for k in terms]
        body += ["<h2>Loss terms</h2>", f'<div class="charts">{"".join(charts)}</div>']
    if losses:
        charts = [_chart("learning rate", [r["iter"] for r in losses], [r["lr"] for r in losses], smooth=False),
                  _chart("seconds per iteration (mean since start)", [r["iter"] for r in losses if "sec_per_iter" in r],
                         [r["sec_per_iter"] for r in losses if "sec_per_iter" in r], smooth=False)]
        body += ["<h2>Schedule and speed</h2>", f'<div class="charts">{"".join(charts)}</div>']
    if not records:
        body.append('<p class="note">No log records yet: the first appear after --log-every iterations.</p>')

    samples = sorted((run / "samples").glob("iter_*.jpg"))[-n_samples:][::-1]
    if samples:
        figs = "".join(f'<figure><a href="{url("samples/" + p.name)}" target="_blank">'
                       f'<img src="{url("samples/" + p.name)}" alt="{esc(p.stem)}"></a>'
                       f"<figcaption>{esc(_sample_caption(p))}</figcaption></figure>" for p in samples)
        body += ["<h2>Samples (input | output, newest first)</h2>", f'<div class="samples">{figs}</div>']
    if config:
        body += ["<h2>Effective configuration</h2>", _config_tables(config)]
    return write_text(run / "report.html", page(f"odcr train: {run.name}", "\n".join(body),
                                                  '<meta http-equiv="refresh" content="120">'))


def _sample_caption(p: Path) -> str:
    digits = p.stem.split("_")[-1]
    return f"iteration {int(digits):,}" if digits.isdigit() else p.stem


def _config_tables(config: dict) -> str:
    parts = []
    for section, values in config.items():
        if isinstance(values, dict):
            rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(json.dumps(v))}</td></tr>" for k, v in values.items())
            parts.append(f"<h3>{esc(section)}</h3><table class=\"cfg\">{rows}</table>")
        else:
            parts.append(f'<p><code>{esc(section)}</code>: {esc(json.dumps(values))}</p>')
    return "\n".join(parts)


def _bin(xs: Sequence[float], ys: Sequence[float], n: int) -> tuple[list[float], list[float]]:
    """At most n points: the mean of consecutive runs (a long run draws as fast as a short one)."""
    if len(xs) <= n:
        return list(xs), list(ys)
    edges = np.linspace(0, len(xs), n + 1).astype(int)
    xa, ya = np.asarray(xs, float), np.asarray(ys, float)
    return ([float(xa[a:b].mean()) for a, b in zip(edges[:-1], edges[1:]) if b > a],
            [float(ya[a:b].mean()) for a, b in zip(edges[:-1], edges[1:]) if b > a])


def _ema(ys: Sequence[float], span: int) -> list[float]:
    alpha, out, m = 2.0 / (span + 1.0), [], None
    for y in ys:
        m = y if m is None else alpha * y + (1 - alpha) * m
        out.append(m)
    return out


def _nice(v: float, digits: int = 3) -> str:
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    return f"{v:.{digits}g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.{digits - 1}e}"


def _tick_labels(values: Sequence[float]) -> list[str]:
    """The axis labels of ``values`` with as many significant digits as it takes to tell them apart
    (1.385 / 1.38 / 1.375, not 1.39 / 1.38 / 1.38), at least 3."""
    for digits in range(3, 12):
        labels = [_nice(v, digits) for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def _chart(title: str, xs: Sequence[float], ys: Sequence[float], smooth: bool = True,
           width: int = 340, height: int = 190) -> str:
    """One line chart as inline SVG: the values, and (``smooth``) their moving average."""
    pts = [(float(x), float(y)) for x, y in zip(xs, ys) if isinstance(y, (int, float)) and math.isfinite(y)]
    left, right, top, bottom = 52, 10, 22, 26
    svg = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
           f'<text x="{left}" y="15" font-weight="600">{esc(title)}</text>']
    if not pts:
        svg.append(f'<text x="{left}" y="{height // 2}">no values</text></svg>')
        return "".join(svg)
    bx, by = _bin([p[0] for p in pts], [p[1] for p in pts], 600)
    x0, x1 = min(bx), max(bx)
    y0, y1 = min(by), max(by)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    pw, ph = width - left - right, height - top - bottom

    def path(yv: Iterable[float]) -> str:
        return " ".join(f"{left + (x - x0) / (x1 - x0) * pw:.1f},{top + (1 - (y - y0) / (y1 - y0)) * ph:.1f}"
                        for x, y in zip(bx, yv))

    svg.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
    fracs = (0.0, 0.5, 1.0)
    for frac, label in zip(fracs, _tick_labels([y0 + f * (y1 - y0) for f in fracs])):
        y = top + (1 - frac) * ph
        svg.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    svg.append(f'<text x="{left}" y="{height - 8}">{int(x0):,}</text>'
               f'<text x="{left + pw}" y="{height - 8}" text-anchor="end">{int(x1):,} it</text>')
    if smooth and len(by) > 20:
        svg.append(f'<polyline fill="none" stroke="#9bb7e0" stroke-width="1" points="{path(by)}"/>')
        svg.append(f'<polyline fill="none" stroke="#1f4e9c" stroke-width="2" '
                   f'points="{path(_ema(by, max(5, len(by) // 20)))}"/>')
    else:
        svg.append(f'<polyline fill="none" stroke="#1f4e9c" stroke-width="2" points="{path(by)}"/>')
        if len(by) <= 40:
            svg += [f'<circle cx="{left + (x - x0) / (x1 - x0) * pw:.1f}" '
                    f'cy="{top + (1 - (y - y0) / (y1 - y0)) * ph:.1f}" r="2.5" fill="#1f4e9c"/>' for x, y in zip(bx, by)]
    svg.append(f'<text x="{width - right}" y="15" text-anchor="end">last {_nice(pts[-1][1])}</text></svg>')
    return "".join(svg)
