"""The page of ``odcr evaluate --report DIR``: ``DIR/index.html``, a summary table (overall and
per subset, the best PSNR and SSIM of every column marked; FADE is shown, not ranked), then one row per photo: the input, every
method's output and the ground truth where there is one, each a small JPEG thumbnail
(``thumbs/``) that opens the full-size JPEG (``full/``), with its scores under it. Rows sort by
any score (the select above the table, or a click on a score)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from odcr_cli.errors import EvaluationError
from odcr_cli.tasks.evaluate.report import EvaluationReport
from odcr_cli.tasks.html_page import esc, now, page, url, write_text

if TYPE_CHECKING:
    from PIL import Image

THUMB_SIDE = 240       # px, longer side of a thumbnail
THUMB_QUALITY = 80
FULL_QUALITY = 92
_LABELS = {"psnr": "PSNR", "ssim": "SSIM", "fade": "FADE"}
_FORMATS = {"psnr": ".2f", "ssim": ".3f", "fade": ".3f"}

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


def _fmt(v: float | None, metric: str) -> str:
    return "–" if v is None else format(v, _FORMATS[metric])


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

    def write(self, report: EvaluationReport) -> Path:
        return write_text(self.root / "index.html", self.render(report))

    # The page is built from the report, so its numbers are the JSON's and the table's.
    def render(self, report: EvaluationReport) -> str:
        metrics = [m for m in ("psnr", "ssim") if report.paired] + (["fade"] if report.fade else [])
        input_method = next((n for n, k in self.methods if k == "input"), None)
        shown = [n for n, k in self.methods if k != "input"]
        n_photos = len(self.photos)
        mode = "paired with ground truth" if report.paired else "no ground truth: FADE only"
        body = [f"<h1>odcr evaluate: {len(report.methods)} method(s) on {n_photos} photo(s)</h1>",
                f'<p class="meta">{esc(mode)} · {report.seconds:.1f} s · written {esc(now())}</p>',
                '<p class="note">' + " · ".join(
                    ["PSNR (dB) and SSIM against the ground truth: higher is better"] * report.paired
                    + [FADE_NOTE + (", e.g. the ground truth's" if report.paired else "")] * report.fade)
                + (". The best PSNR and SSIM of each column are marked" if report.paired else "")
                + "; click an image for the full-size picture.</p>",
                "<h2>Summary</h2>", self._summary(report, metrics)]
        body += self._problems(report)
        body += ["<h2>Photos</h2>", self._photo_table(report, metrics, input_method, shown),
                 f"<script>{_SORT_JS}</script>"]
        return page("odcr evaluate", "\n".join(body))

    def _summary(self, report: EvaluationReport, metrics: list[str]) -> str:
        groups: list[tuple[str, dict[str, dict]]] = [("all", {n: {**m.mean, "median": m.median}
                                                               for n, m in report.methods.items()})]
        subsets = sorted({s for m in report.methods.values() for s in m.subsets})
        for sub in subsets:
            groups.append((sub, {n: m.subsets.get(sub, {"n": 0}) for n, m in report.methods.items()}))
        cols = [(m, "mean") for m in metrics] + ([("fade", "median")] if "fade" in metrics else [])
        head1 = "".join(f'<th colspan="{len(cols)}">{esc(g)} (n={max(v.get("n", 0) for v in d.values())})</th>'
                        for g, d in groups)
        head2 = "".join(f'<th>{_LABELS[m]}{" median" if how == "median" else ""}'
                        f'{" ↑" if m != "fade" else " (fog)"}</th>' for m, how in cols) * len(groups)
        rows = []
        best: dict[tuple[int, int], float] = {}
        for gi, (_, d) in enumerate(groups):
            for ci, (m, how) in enumerate(cols):
                vals = [_value(v, m, how) for v in d.values()]
                vals = [v for v in vals if v is not None]
                if vals and m != "fade":  # FADE is a reading, not a ranking (FADE_NOTE)
                    best[(gi, ci)] = max(vals)
        for name in report.methods:
            cells = []
            for gi, (_, d) in enumerate(groups):
                for ci, (m, how) in enumerate(cols):
                    v = _value(d.get(name, {}), m, how)
                    mark = ' class="best"' if v is not None and best.get((gi, ci)) == v else ""
                    cells.append(f"<td{mark}>{_fmt(v, m)}</td>")
            rows.append(f'<tr><td class="name">{esc(name)}</td>{"".join(cells)}</tr>')
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

    def _problems(self, report: EvaluationReport) -> list[str]:
        out = []
        p = report.pairing
        for label, items in (("hazy images without GT (not scored)", p.unmatched_hazy),
                             ("GT images without a hazy image", p.unmatched_gt)):
            if items:
                out.append(f'<p class="fail">{len(items)} {label}: {esc(", ".join(items[:20]))}'
                           f'{" …" if len(items) > 20 else ""}</p>')
        if report.failures:
            lis = "".join(f"<li>{esc(f['stem'])} ({esc(f['method'] or 'reading')}): {esc(f['error'])}</li>"
                          for f in report.failures[:50])
            out.append(f'<p class="fail">{len(report.failures)} failure(s):</p><ul class="fail">{lis}</ul>')
        return out

    def _photo_table(self, report: EvaluationReport, metrics: list[str], input_method: str | None,
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
        options = "".join(f'<option value="{k}" data-asc="{int(asc)}">{esc(label)}</option>'
                          for k, label, _, asc in keys)
        has_gt = any(info["gt"] for info in self.photos.values())
        head = "".join(f"<th>{esc(title)}</th>" for title, _ in columns) + ("<th>ground truth</th>" if has_gt else "")
        rows = []
        for stem, info in self.photos.items():
            data = [f'data-stem="{esc(stem)}"']
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
            label = (f'<td class="stem">{esc(stem)}<br><span class="sub">{w}×{h}'
                     f'{" · " + esc(sub) if sub else ""}</span></td>')
            rows.append(f'<tr class="photo" {" ".join(data)}>{label}{"".join(cells)}</tr>')
        return (f'<div class="controls">Sort rows by <select id="sortkey">{options}</select> '
                f'<button id="sortdir" type="button">ascending ↑</button> '
                f'<span class="note">{len(rows)} photo(s); click a score to sort by it</span></div>'
                f'<table class="photos" id="photos"><thead><tr><th>photo</th>{head}</tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table>')

    def _img(self, folder: str, stem: str, alt: str) -> str:
        wh = self.thumb_sizes.get((folder, stem))
        size = f' width="{wh[0]}" height="{wh[1]}"' if wh else ""
        rel = url(f"{folder}/{stem}.jpg")
        return (f'<a href="full/{rel}" target="_blank"><img src="thumbs/{rel}"{size} '
                f'alt="{esc(alt)}: {esc(stem)}"></a>')

    @staticmethod
    def _score_span(metric: str, v: float | None, key: str | None, is_best: bool) -> str:
        cls = ' class="rb"' if is_best else ""
        sort = f' data-sort="{key}" title="sort by this score"' if key else ""
        return f"<span{cls}{sort}>{_LABELS[metric]} {_fmt(v, metric)}</span> "


# FADE measures how foggy an image looks; noise and over-stretched contrast lower it too, so the
# lowest FADE is not the best dehazing (the dark channel prior has the lowest almost everywhere):
# no FADE is marked best, and the page says what the figure means beside it.
FADE_NOTE = ("FADE: perceptual fog density (Choi, You &amp; Bovik 2015): lower means less fog as FADE sees it, "
             "which noise and over-stretched contrast also lower, so the lowest FADE is not marked best; "
             "read it beside a haze-free reference")


def _value(d: dict, metric: str, how: str) -> float | None:
    return (d.get("median") or {}).get(metric) if how == "median" else d.get(metric)


def _row_best(scores: dict, methods: list[str], stem: str, metrics: list[str]) -> dict[str, float]:
    """The best value of each metric among the methods on one photo (marked in its row)."""
    out = {}
    for m in metrics:
        if m == "fade":  # a reading, not a ranking (FADE_NOTE)
            continue
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


