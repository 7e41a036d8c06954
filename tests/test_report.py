"""HTML reports: `odcr evaluate --report DIR` and RUN/report.html, checked in headless Chromium.

The browser tests load each page from disk (file://), let its JavaScript run, and read what was
rendered: rows, images with a non-zero natural size, the first row before and after sorting
through the page's own controls; they also take a screenshot. They are skipped only when no
Chromium is installed (.ci/run installs Debian's `chromium` package when it is missing).
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odcr_cli.tasks.evaluate.evaluation import evaluate
from odcr_cli.tasks.train.report import write_training_report

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium on this machine (.ci/run installs Debian's 'chromium' package)")


def _chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
           "--virtual-time-budget=10000", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


_PROBE = """
<script>
window.addEventListener('load', function () {
  function stems() {
    return Array.prototype.map.call(document.querySelectorAll('#photos tbody tr.photo'),
                                    function (r) { return r.getAttribute('data-stem'); });
  }
  var imgs = Array.prototype.slice.call(document.querySelectorAll('img'));
  var out = {rows: stems().length, order_before: stems(), images: imgs.length,
             loaded: imgs.filter(function (i) {
               return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; }).length,
             charts: document.querySelectorAll('svg.chart polyline').length,
             best_cells: document.querySelectorAll('.summary td.best').length};
  var sel = document.getElementById('sortkey');
  if (sel) {
    sel.value = SORT_KEY;
    sel.dispatchEvent(new Event('change'));
    out.order_sorted = stems();
    out.sorted_by = document.body.getAttribute('data-sorted-by');
    document.getElementById('sortdir').click();             // the direction button reverses it
    out.order_reversed = stems();
    var span = document.querySelector('#photos .sc span[data-sort]');
    span.click();                                             // a click on a score sorts by that score
    out.clicked_key = span.getAttribute('data-sort');
    out.sorted_by_click = document.body.getAttribute('data-sorted-by');
  }
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _probe(page: Path, tmp: Path, sort_key: str = "") -> dict:
    """Render ``page`` (a copy beside it, with the probe script appended) and return what it saw."""
    probe = page.with_name("probe_" + page.name)
    probe.write_text(page.read_text().replace("</body>", _PROBE.replace("SORT_KEY", json.dumps(sort_key)) + "</body>"))
    res = _chromium(probe, tmp, "--dump-dom")
    probe.unlink()
    m = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S)
    assert m, f"the page's script did not run (rc {res.returncode}): {res.stderr[-2000:]}"
    return json.loads(html.unescape(m.group(1)))


def _screenshot(page: Path, tmp: Path, out: Path) -> np.ndarray:
    res = _chromium(page, tmp, "--window-size=1280,900", f"--screenshot={out}")
    assert out.is_file(), res.stderr[-2000:]
    shot = np.asarray(Image.open(out).convert("RGB"))
    assert shot.shape == (900, 1280, 3) and shot.std() > 5   # something was drawn (a blank page has 0)
    return shot


def _haze(clear: np.ndarray, beta: float) -> np.ndarray:
    d = np.linspace(1.0, 0.2, clear.shape[0])[:, None, None]
    t = np.exp(-beta * d)
    return np.clip(np.rint((clear / 255.0 * t + 0.9 * (1 - t)) * 255), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_pairs(tmp_path_factory) -> Path:
    """Four hazy/GT pairs made from the bundled sample photo: the haze grows with the alphabet
    reversed, so sorting by FADE puts another photo first than sorting by name."""
    root = tmp_path_factory.mktemp("pairs")
    clear = np.asarray(Image.open(DOCS / "sample_dehazed.jpg").convert("RGB").resize((208, 154)))
    for name, beta in (("a-heavy", 3.0), ("b-mid", 1.5), ("c-light", 0.6), ("d-thin", 0.2)):
        for sub, img in (("hazy", _haze(clear.astype(np.float64), beta)), ("gt", clear)):
            (root / sub).mkdir(exist_ok=True)
            Image.fromarray(img).save(root / sub / f"{name}.png")
    return root


def test_evaluation_page_in_a_browser(photo_pairs, tmp_path):
    report = evaluate(pairs_dir=photo_pairs, methods=["input", "dcp"], report_dir=tmp_path / "rep", latency_repeats=0)
    page = tmp_path / "rep" / "index.html"
    assert report.report_path == page and not report.failures
    text = page.read_text()
    assert "http://" not in text and "https://" not in text   # nothing to fetch: it opens from disk
    # the FADE of the input, ascending (best first), as the page's select offers it
    key = re.search(r'<option value="(k\d+)" data-asc="1">input: FADE</option>', text).group(1)
    seen = _probe(page, tmp_path, key)
    assert seen["rows"] == 4 and seen["order_before"] == ["a-heavy", "b-mid", "c-light", "d-thin"]
    assert seen["images"] == 4 * 3 and seen["loaded"] == seen["images"]    # input | dcp | GT per row
    assert seen["order_sorted"] == ["d-thin", "c-light", "b-mid", "a-heavy"] and seen["sorted_by"] == f"{key}:asc"
    assert seen["order_reversed"] == seen["order_before"]
    assert seen["sorted_by_click"].startswith(seen["clicked_key"])
    assert seen["best_cells"] == 2   # PSNR and SSIM of "all"; FADE is a reading, never crowned
    # every thumbnail opens its full-size picture, at the photo's own size
    for href in re.findall(r'<a href="(full/[^"]+)"', text):
        assert Image.open(tmp_path / "rep" / href).size == (208, 154)
    _screenshot(page, tmp_path, tmp_path / "eval.png")


def test_the_evaluation_page_marks_no_fade_best_and_says_what_it_means(photo_pairs, tmp_path):
    # dcp has the lowest FADE here (it stretches contrast), yet only PSNR and SSIM are ranked
    report = evaluate(pairs_dir=photo_pairs, methods=["input", "dcp"], report_dir=tmp_path / "rep", latency_repeats=0)
    assert report.methods["dcp"].mean["fade"] < report.methods["input"].mean["fade"]
    text = (tmp_path / "rep" / "index.html").read_text()
    summary = text[text.index('<table class="summary">'):text.index("</table>")]
    assert summary.count('class="best"') == 2   # PSNR and SSIM of "all" (no subsets here)
    assert "lowest FADE is not marked best" in text and 'class="rb">FADE' not in text


def test_training_page_in_a_browser(tmp_path):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(run / "log.jsonl", "w") as fh:
        for it in range(10, 310, 10):
            fh.write(json.dumps({"iter": it, "lr": 2e-4 * min(1.0, (300 - it) / 150), "sec_per_iter": 0.5,
                                 "G_total": 3 - it / 200 + rng.normal(0, 0.1), "D": 0.5 + rng.normal(0, 0.05),
                                 "G_nce": 2 - it / 400}) + "\n")
            if it % 100 == 0:
                fh.write(json.dumps({"iter": it, "checkpoint": f"ckpt_{it:08d}.pt"}) + "\n")
                val = {"psnr": 14 + it / 100, "ssim": 0.6 + it / 2000, "n": 3}
                fh.write(json.dumps({"iter": it, "val": val}) + "\n")
        fh.write('{"iter": 310, "G_to')                       # a line cut by a crash is skipped
    for it in (100, 200, 300):
        Image.fromarray(rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)).save(run / "samples" / f"iter_{it:08d}.jpg")
    (run / "config.json").write_text(json.dumps({"train": {"iters": 600, "crop": 256}, "method": {"name": "odcr"}}))
    page = write_training_report(run)
    text = page.read_text()
    assert "iteration 300 of 600 (50 %)" in text and "ckpt_00000300.pt" in text and "<td>crop</td><td>256</td>" in text
    assert "http://" not in text and "https://" not in text
    seen = _probe(page, tmp_path)
    # G_total, D, G_nce (two lines each: values and moving average), validation PSNR and SSIM,
    # learning rate and speed (one line each)
    assert seen["charts"] == 3 * 2 + 2 + 2
    assert seen["images"] == 3 and seen["loaded"] == 3
    _screenshot(page, tmp_path, tmp_path / "train.png")


def test_no_reference_evaluation_from_the_cli(photo_pairs, tmp_path):
    from typer.testing import CliRunner

    from odcr_cli.cli.app import app

    res = CliRunner().invoke(app, ["evaluate", "--hazy", str(photo_pairs / "hazy"), "-m", "input", "-m", "dcp",
                                   "--report", str(tmp_path / "rep"), "--json", str(tmp_path / "r.json"),
                                   "--csv", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    assert "FADE (lower = less fog)" in res.output and "4 photos evaluated" in res.output
    j = json.loads((tmp_path / "r.json").read_text())
    assert j["reference"] == "none" and j["gt_fade"] is None
    for name in ("input", "dcp"):
        m = j["methods"][name]
        assert m["mean"]["psnr"] is None and m["mean"]["n"] == 4 and m["median"]["fade"] > 0
        assert all(i["fade"] > 0 and i["psnr"] is None for i in m["images"])
    fades = {i["stem"]: i["fade"] for i in j["methods"]["input"]["images"]}
    assert fades["a-heavy"] > fades["b-mid"] > fades["c-light"] > fades["d-thin"]
    assert j["methods"]["dcp"]["mean"]["fade"] < j["methods"]["input"]["mean"]["fade"]
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == 2 * (4 + 2) and rows[0]["psnr"] == "" and float(rows[0]["fade"]) > 0
    text = (tmp_path / "rep" / "index.html").read_text()
    assert text.count('<tr class="photo"') == 4 and "ground truth</th>" not in text and "PSNR" not in text
    assert len(list((tmp_path / "rep" / "thumbs" / "dcp").glob("*.jpg"))) == 4
    assert max(Image.open(p).size[0] for p in (tmp_path / "rep" / "thumbs" / "input").glob("*.jpg")) <= 240


def test_report_folder_that_is_a_file_is_a_one_line_error(photo_pairs, tmp_path):
    from typer.testing import CliRunner

    from odcr_cli.cli.app import app

    (tmp_path / "f").write_text("x")
    res = CliRunner().invoke(app, ["evaluate", "--pairs", str(photo_pairs), "-m", "input",
                                   "--report", str(tmp_path / "f")])
    assert res.exit_code == 2 and "is not a folder" in res.output


@pytest.mark.parametrize("low, high", [(1.375, 1.385), (0.69310, 0.69318), (12000.0, 12000.5), (0.0, 3.0)])
def test_chart_axis_labels_are_distinct_for_any_range(low, high):
    # a G_ce curve between 1.375 and 1.385 was labelled 1.39 / 1.38 / 1.38
    from odcr_cli.tasks.train.report import _chart

    svg = _chart("G_ce", list(range(200)), [low + (high - low) * (k % 50) / 49 for k in range(200)])
    labels = re.findall(r'text-anchor="end">([^<]*)</text>', svg)[:3]
    assert len(labels) == 3 and len(set(labels)) == 3, labels
    assert abs(float(labels[0]) - low) <= 0.2 * (high - low) and abs(float(labels[2]) - high) <= 0.2 * (high - low)
