"""HTML pages a person reads at a glance: ``odcr evaluate --report DIR`` and ``RUN/report.html``.

Both pages are one self-contained HTML file (inline CSS, inline JavaScript, inline SVG charts, no
fonts or scripts from the network) next to the images they show, linked by relative paths, so the
folder opens from disk in any browser and can be copied or zipped as it is.

``DIR/index.html`` (evaluation): a summary table (overall and per subset, the best value of every
column marked), then one row per photo: the input, every method's output and the ground truth
where there is one, each a small JPEG thumbnail (``thumbs/``) that opens the full-size JPEG
(``full/``), with its scores under it. Rows sort by any score (the select above the table, or a
click on a score).

``RUN/report.html`` (training): curves of every loss term, the learning rate and the validation
scores read from ``log.jsonl``, the newest sample grids and the effective configuration; the
training loop rewrites it at every checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence
from urllib.parse import quote

import numpy as np

from odcr_cli.errors import EvaluationError

if TYPE_CHECKING:
    from PIL import Image

    from odcr_cli.tasks.evaluation import EvaluationReport

THUMB_SIDE = 240       # px, longer side of a thumbnail
THUMB_QUALITY = 80
FULL_QUALITY = 92
_LABELS = {"psnr": "PSNR", "ssim": "SSIM", "fade": "FADE"}
_FORMATS = {"psnr": ".2f", "ssim": ".3f", "fade": ".3f"}

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .5em}
.meta{color:#555;margin:.2em 0}.note{color:#666;font-size:.9em}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
th{background:#f0f0f3;font-weight:600}
.summary td{text-align:right;font-variant-numeric:tabular-nums}.summary td.name{text-align:left}
.summary td.best{background:#dff3e0;font-weight:700}.summary tr.ref td{color:#666;font-style:italic}
.photos td{text-align:center}.photos td.stem{text-align:left;max-width:14em;word-break:break-all}
.photos img{display:block;margin:0 auto;background:#eee;border:1px solid #ccc}
.sc{font-size:12px;font-variant-numeric:tabular-nums;margin-top:2px;white-space:nowrap}
.sc span{cursor:pointer;padding:0 2px;border-radius:3px}.sc span:hover{background:#e4e8ff}
.sc span.rb{font-weight:700;color:#0a7a20}
.controls{margin:.4em 0 .6em}.controls select,.controls button{font:inherit;padding:2px 6px}
.sub{color:#777;font-size:12px}.fail{color:#b00020}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid #ddd}
.chart text{font:11px system-ui,sans-serif;fill:#444}
.samples{display:flex;flex-wrap:wrap;gap:12px}.samples figure{margin:0}
.samples img{max-width:100%;border:1px solid #ccc;display:block;margin-bottom:.3em}
.cfg td:first-child{font-family:ui-monospace,monospace;color:#333}
"""

_SORT_JS = """
(function () {
  var tbody = document.querySelector('#photos tbody');
  var sel = document.getElementById('sortkey');
  var dirButton = document.getElementById('sortdir');
  var asc = true;
  function value(tr, key) {
    if (key === 'stem') { return tr.getAttribute('data-stem'); }
    var v = tr.getAttribute('data-' + key);
    return (v === null || v === '') ? null : parseFloat(v);
  }
  function sortRows() {
    var key = sel.value;
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = value(a, key), y = value(b, key);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }   // rows without the score go last either way
      if (y === null) { return -1; }
      var c = (typeof x === 'string') ? x.localeCompare(y) : x - y;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
    dirButton.textContent = asc ? 'ascending \\u2191' : 'descending \\u2193';
    document.body.setAttribute('data-sorted-by', key + (asc ? ':asc' : ':desc'));
  }
  function bestFirst() { asc = sel.options[sel.selectedIndex].getAttribute('data-asc') === '1'; }
  sel.addEventListener('change', function () { bestFirst(); sortRows(); });
  dirButton.addEventListener('click', function () { asc = !asc; sortRows(); });
  Array.prototype.forEach.call(document.querySelectorAll('[data-sort]'), function (el) {
    el.addEventListener('click', function () {
      var key = el.getAttribute('data-sort');
      if (sel.value === key) { asc = !asc; } else { sel.value = key; bestFirst(); }
      sortRows();
    });
  });
})();
"""


def _esc(v: object) -> str:
    return html.escape(str(v), quote=True)


def _url(path: str) -> str:
    return "/".join(quote(part) for part in path.split("/"))


def _fmt(v: float | None, metric: str) -> str:
    return "–" if v is None else format(v, _FORMATS[metric])


def _page(title: str, body: str, head_extra: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{head_extra}'
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _write_text(path: Path, text: str) -> Path:
    from odcr_cli.files.fsutil import atomic_output

    with atomic_output(path, "w") as fh:
        fh.write(text)
    return path


def _now() -> str:
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


# --- evaluation page ---------------------------------------------------------------------------

class EvaluationPage:
    """Collects the images of an ``odcr evaluate`` run as it goes and writes ``index.html``.

    Images are written as they arrive (nothing is held in memory): ``full/<column>/<stem>.jpg``
    and ``thumbs/<column>/<stem>.jpg``, where a column is ``input``, ``gt`` or a method."""

    def __init__(self, root: str | Path, methods: Sequence[tuple[str, str]]) -> None:
        self.root = Path(root)
        self.methods = list(methods)               # (name, kind) in the order given
        self.folders: dict[str, str] = {"(input)": "input", "(gt)": "gt"}
        for name, kind in self.methods:
            if kind == "input":
                continue
            base = _folder_name(name)
            folder, k = base, 2
            while folder in self.folders.values():   # two weights files may share a stem
                folder, k = f"{base}_{k}", k + 1
            self.folders[name] = folder
        self.photos: dict[str, dict] = {}          # stem -> {"size": (w, h), "gt": bool}
        self.thumb_sizes: dict[tuple[str, str], tuple[int, int]] = {}   # (folder, stem) -> (w, h)

    def _save(self, column: str, stem: str, img: np.ndarray) -> None:
        from PIL import Image

        from odcr_cli.files.fsutil import atomic_path

        folder = self.folders[column]
        im = Image.fromarray(img)
        thumb = _thumbnail(im)
        self.thumb_sizes[(folder, stem)] = thumb.size
        try:
            for sub, picture, quality in (("full", im, FULL_QUALITY), ("thumbs", thumb, THUMB_QUALITY)):
                with atomic_path(self.root / sub / folder / f"{stem}.jpg") as tmp:
                    picture.save(tmp, format="JPEG", quality=quality)
        except OSError as exc:
            raise EvaluationError(f"cannot write the report in {self.root}: {exc}") from None

    def add_photo(self, stem: str, hazy: np.ndarray, gt: np.ndarray | None) -> None:
        self.photos[stem] = {"size": (hazy.shape[1], hazy.shape[0]), "gt": gt is not None}
        self._save("(input)", stem, hazy)
        if gt is not None:
            self._save("(gt)", stem, gt)

    def add_output(self, stem: str, method: str, out: np.ndarray) -> None:
        self._save(method, stem, out)

    def write(self, report: "EvaluationReport") -> Path:
        return _write_text(self.root / "index.html", self.render(report))

    # The page is built from the report, so its numbers are the JSON's and the table's.
    def render(self, report: "EvaluationReport") -> str:
        metrics = [m for m in ("psnr", "ssim") if report.paired] + (["fade"] if report.fade else [])
        input_method = next((n for n, k in self.methods if k == "input"), None)
        shown = [n for n, k in self.methods if k != "input"]
        n_photos = len(self.photos)
        mode = "paired with ground truth" if report.paired else "no ground truth: FADE only"
        body = [f"<h1>odcr evaluate: {len(report.methods)} method(s) on {n_photos} photo(s)</h1>",
                f'<p class="meta">{_esc(mode)} · {report.seconds:.1f} s · written {_esc(_now())}</p>',
                '<p class="note">' + " · ".join(
                    ["PSNR (dB) and SSIM against the ground truth: higher is better"] * report.paired
                    + ["FADE: perceptual fog density (Choi, You &amp; Bovik 2015), lower is less fog"] * report.fade)
                + ". The best value of each column is marked; click an image for the full-size picture.</p>",
                "<h2>Summary</h2>", self._summary(report, metrics)]
        body += self._problems(report)
        body += ["<h2>Photos</h2>", self._photo_table(report, metrics, input_method, shown),
                 f"<script>{_SORT_JS}</script>"]
        return _page("odcr evaluate", "\n".join(body))

    def _summary(self, report: "EvaluationReport", metrics: list[str]) -> str:
        groups: list[tuple[str, dict[str, dict]]] = [("all", {n: {**m.mean, "median": m.median}
                                                               for n, m in report.methods.items()})]
        subsets = sorted({s for m in report.methods.values() for s in m.subsets})
        for sub in subsets:
            groups.append((sub, {n: m.subsets.get(sub, {"n": 0}) for n, m in report.methods.items()}))
        cols = [(m, "mean") for m in metrics] + ([("fade", "median")] if "fade" in metrics else [])
        head1 = "".join(f'<th colspan="{len(cols)}">{_esc(g)} (n={max(v.get("n", 0) for v in d.values())})</th>'
                        for g, d in groups)
        head2 = "".join(f'<th>{_LABELS[m]}{" median" if how == "median" else ""} '
                        f'{"↑" if m != "fade" else "↓"}</th>' for m, how in cols) * len(groups)
        rows = []
        best: dict[tuple[int, int], float] = {}
        for gi, (_, d) in enumerate(groups):
            for ci, (m, how) in enumerate(cols):
                vals = [_value(v, m, how) for v in d.values()]
                vals = [v for v in vals if v is not None]
                if vals:
                    best[(gi, ci)] = min(vals) if m == "fade" else max(vals)
        for name in report.methods:
            cells = []
            for gi, (_, d) in enumerate(groups):
                for ci, (m, how) in enumerate(cols):
                    v = _value(d.get(name, {}), m, how)
                    mark = ' class="best"' if v is not None and best.get((gi, ci)) == v else ""
                    cells.append(f"<td{mark}>{_fmt(v, m)}</td>")
            rows.append(f'<tr><td class="name">{_esc(name)}</td>{"".join(cells)}</tr>')
        gt = report.gt_fade_summary()
        if gt and "fade" in metrics:
            cells = []
            stems = {p.stem: p.subset for p in report.pairing.pairs}
            for g, _ in groups:
                vals = [v for s, v in gt["images"].items() if v is not None and (g == "all" or stems.get(s) == g)]
                for m, how in cols:
                    v = None if m != "fade" or not vals else float(np.mean(vals) if how == "mean" else np.median(vals))
                    cells.append(f"<td>{_fmt(v, 'fade') if m == 'fade' else ''}</td>")
            rows.append(f'<tr class="ref"><td class="name">ground truth</td>{"".join(cells)}</tr>')
        return (f'<table class="summary"><thead><tr><th rowspan="2">method</th>{head1}</tr><tr>{head2}</tr>'
                f'</thead><tbody>{"".join(rows)}</tbody></table>')

    def _problems(self, report: "EvaluationReport") -> list[str]:
        out = []
        p = report.pairing
        for label, items in (("hazy images without GT (not scored)", p.unmatched_hazy),
                             ("GT images without a hazy image", p.unmatched_gt)):
            if items:
                out.append(f'<p class="fail">{len(items)} {label}: {_esc(", ".join(items[:20]))}'
                           f'{" …" if len(items) > 20 else ""}</p>')
        if report.failures:
            lis = "".join(f"<li>{_esc(f['stem'])} ({_esc(f['method'] or 'reading')}): {_esc(f['error'])}</li>"
                          for f in report.failures[:50])
            out.append(f'<p class="fail">{len(report.failures)} failure(s):</p><ul class="fail">{lis}</ul>')
        return out

    def _photo_table(self, report: "EvaluationReport", metrics: list[str], input_method: str | None,
                     shown: list[str]) -> str:
        scores = {n: {s.stem: s for s in m.images} for n, m in report.methods.items()}
        columns = [("input", input_method)] + [(n, n) for n in shown]
        keys: list[tuple[str, str, str, bool]] = [("stem", "photo name", "", True)]   # (key, label, method, asc)
        key_of: dict[tuple[str, str], str] = {}
        for _, method in columns:
            if method is None:
                continue
            for m in metrics:
                key_of[(method, m)] = k = f"k{len(key_of)}"
                keys.append((k, f"{method}: {_LABELS[m]}", method, m == "fade"))
        if report.gt_fade:
            key_of[("(gt)", "fade")] = k = f"k{len(key_of)}"
            keys.append((k, f"ground truth: {_LABELS['fade']}", "(gt)", True))
        options = "".join(f'<option value="{k}" data-asc="{int(asc)}">{_esc(label)}</option>'
                          for k, label, _, asc in keys)
        has_gt = any(info["gt"] for info in self.photos.values())
        head = "".join(f"<th>{_esc(title)}</th>" for title, _ in columns) + ("<th>ground truth</th>" if has_gt else "")
        rows = []
        for stem, info in self.photos.items():
            data = [f'data-stem="{_esc(stem)}"']
            for (method, m), k in key_of.items():
                v = (report.gt_fade.get(stem) if method == "(gt)"
                     else getattr(scores.get(method, {}).get(stem), m, None))
                data.append(f'data-{k}="{"" if v is None else repr(float(v))}"')
            best = _row_best(scores, [m for _, m in columns if m is not None], stem, metrics)
            cells = []
            for title, method in columns:
                folder = "input" if title == "input" else self.folders[method]
                s = scores.get(method, {}).get(stem) if method else None
                if title != "input" and s is None:
                    cells.append('<td class="fail">failed</td>')
                    continue
                spans = "".join(self._score_span(m, getattr(s, m), key_of.get((method, m)),
                                                 getattr(s, m) is not None and best.get(m) == getattr(s, m))
                                for m in metrics) if s is not None else ""
                cells.append(f"<td>{self._img(folder, stem, title)}<div class=\"sc\">{spans}</div></td>")
            if has_gt:
                if info["gt"]:
                    g = report.gt_fade.get(stem)
                    spans = self._score_span("fade", g, key_of.get(("(gt)", "fade")), False) if report.fade else ""
                    cells.append(f'<td>{self._img("gt", stem, "ground truth")}<div class="sc">{spans}</div></td>')
                else:
                    cells.append("<td></td>")
            sub = next((p.subset for p in report.pairing.pairs if p.stem == stem), None)
            w, h = info["size"]
            label = (f'<td class="stem">{_esc(stem)}<br><span class="sub">{w}×{h}'
                     f'{" · " + _esc(sub) if sub else ""}</span></td>')
            rows.append(f'<tr class="photo" {" ".join(data)}>{label}{"".join(cells)}</tr>')
        return (f'<div class="controls">Sort rows by <select id="sortkey">{options}</select> '
                f'<button id="sortdir" type="button">ascending ↑</button> '
                f'<span class="note">{len(rows)} photo(s); click a score to sort by it</span></div>'
                f'<table class="photos" id="photos"><thead><tr><th>photo</th>{head}</tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table>')

    def _img(self, folder: str, stem: str, alt: str) -> str:
        wh = self.thumb_sizes.get((folder, stem))
        size = f' width="{wh[0]}" height="{wh[1]}"' if wh else ""
        rel = _url(f"{folder}/{stem}.jpg")
        return (f'<a href="full/{rel}" target="_blank"><img src="thumbs/{rel}"{size} '
                f'alt="{_esc(alt)}: {_esc(stem)}"></a>')

    @staticmethod
    def _score_span(metric: str, v: float | None, key: str | None, is_best: bool) -> str:
        cls = ' class="rb"' if is_best else ""
        sort = f' data-sort="{key}" title="sort by this score"' if key else ""
        return f"<span{cls}{sort}>{_LABELS[metric]} {_fmt(v, metric)}</span> "


def _value(d: dict, metric: str, how: str) -> float | None:
    return (d.get("median") or {}).get(metric) if how == "median" else d.get(metric)


def _row_best(scores: dict, methods: list[str], stem: str, metrics: list[str]) -> dict[str, float]:
    """The best value of each metric among the methods on one photo (marked in its row)."""
    out = {}
    for m in metrics:
        vals = [getattr(scores[n].get(stem), m, None) for n in methods if scores.get(n, {}).get(stem)]
        vals = [v for v in vals if v is not None]
        if len(vals) > 1:
            out[m] = min(vals) if m == "fade" else max(vals)
    return out


def _folder_name(name: str) -> str:
    import re

    if name.startswith("onnx:"):
        name = "onnx_" + Path(name[5:]).stem
    elif "/" in name or "\\" in name or name.endswith((".safetensors", ".pt", ".pth")):
        name = Path(name).stem
    name = re.sub(r"[^A-Za-z0-9._@-]+", "_", name).strip(".") or "method"
    return "m_" + name if name in ("input", "gt") else name


def _thumbnail(im: "Image.Image") -> "Image.Image":
    from PIL import Image

    t = im.copy()
    t.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return t


# --- training page -----------------------------------------------------------------------------

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
        status.append(f"last checkpoint {_esc(ckpts[-1]['checkpoint'])} (iteration {int(ckpts[-1]['iter']):,})")
    status.append(f"updated {_esc(_now())}")
    body = [f"<h1>odcr train: {_esc(run.resolve().name)}</h1>",
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
        figs = "".join(f'<figure><a href="{_url("samples/" + p.name)}" target="_blank">'
                       f'<img src="{_url("samples/" + p.name)}" alt="{_esc(p.stem)}"></a>'
                       f"<figcaption>{_esc(_sample_caption(p))}</figcaption></figure>" for p in samples)
        body += ["<h2>Samples (input | output, newest first)</h2>", f'<div class="samples">{figs}</div>']
    if config:
        body += ["<h2>Effective configuration</h2>", _config_tables(config)]
    return _write_text(run / "report.html", _page(f"odcr train: {run.name}", "\n".join(body),
                                                  '<meta http-equiv="refresh" content="120">'))


def _sample_caption(p: Path) -> str:
    digits = p.stem.split("_")[-1]
    return f"iteration {int(digits):,}" if digits.isdigit() else p.stem


def _config_tables(config: dict) -> str:
    parts = []
    for section, values in config.items():
        if isinstance(values, dict):
            rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(json.dumps(v))}</td></tr>" for k, v in values.items())
            parts.append(f"<h3>{_esc(section)}</h3><table class=\"cfg\">{rows}</table>")
        else:
            parts.append(f'<p><code>{_esc(section)}</code>: {_esc(json.dumps(values))}</p>')
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


def _nice(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.2e}"


def _chart(title: str, xs: Sequence[float], ys: Sequence[float], smooth: bool = True,
           width: int = 340, height: int = 190) -> str:
    """One line chart as inline SVG: the values, and (``smooth``) their moving average."""
    pts = [(float(x), float(y)) for x, y in zip(xs, ys) if isinstance(y, (int, float)) and math.isfinite(y)]
    left, right, top, bottom = 52, 10, 22, 26
    svg = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
           f'<text x="{left}" y="15" font-weight="600">{_esc(title)}</text>']
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
    for frac in (0.0, 0.5, 1.0):
        y = top + (1 - frac) * ph
        svg.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_nice(y0 + frac * (y1 - y0))}</text>')
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
