"""The README's comparison sheet: six real hazy photos (no ground truth), input | dcp | odcr,
and a last row at 2x zoom: the flattest 120-px square of the dense-fog JPEG (its sky), where a
dehazer's gain shows a JPEG's blocks.

    python scripts/make_sheet.py [--model NAME] [--out docs/images/real_hazy_sheet.jpg]

Each photo is dehazed at its full resolution exactly as `odcr dehaze` does (the default model, or
--model), then the three versions are shrunk to one row of the sheet. Also rewrites the README
sample (docs/images/sample_dehazed.jpg) from docs/images/sample_hazy.jpg with the same model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from odcr_cli.files.fsutil import atomic_output
from odcr_cli.engine.dehazer import Dehazer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # the data roots, said once (benchmarks/_paths.py)
from _paths import REAL_HAZY  # noqa: E402
PHOTOS = ("ridcp_cityscape.png", "ridcp_train.png", "utk_foggy_morning_bills.jpg", "ridcp_BJ_Baidu_544.jpeg",
          "utk_meadows_foggy_smokey_sunbeams.jpg", "ridcp_GSGL_Google_474.jpeg")
CELL_W = 240
ZOOMED = "ridcp_BJ_Baidu_544.jpeg"  # dense fog over a flat JPEG sky
ZOOM_SIDE = 120


def _row(cells: list[Image.Image]) -> Image.Image:
    row = Image.new("RGB", (3 * CELL_W + 8, cells[0].height), "white")
    for k, c in enumerate(cells):
        row.paste(c, (k * (CELL_W + 4), 0))
    return row


def _flattest_square(rgb: np.ndarray, side: int) -> tuple[int, int]:
    """(y, x) of the side x side square with the least luma variation, on a half-side grid."""
    grey = rgb.astype(np.float32).mean(axis=2)
    h, w = grey.shape
    best = min(((float(grey[y:y + side, x:x + side].std()), y, x)
                for y in range(0, h - side + 1, side // 2) for x in range(0, w - side + 1, side // 2)))
    return best[1], best[2]


def _cell(arr: np.ndarray, label: str) -> Image.Image:
    im = Image.fromarray(arr)
    small = im.width <= CELL_W // 2  # a zoomed crop: pixels, not a resampled blur
    im = im.resize((CELL_W, max(1, round(im.height * CELL_W / im.width))), Image.NEAREST if small else Image.LANCZOS)
    ImageDraw.Draw(im).text((6, 4), label, fill=(255, 255, 0))
    return im


def _save_jpeg(im: Image.Image, path: Path, quality: int = 85) -> None:
    with atomic_output(path) as fh:
        im.save(fh, format="JPEG", quality=quality, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--data", type=Path, default=REAL_HAZY)
    ap.add_argument("--out", type=Path, default=ROOT / "docs/images/real_hazy_sheet.jpg")
    args = ap.parse_args()
    odcr = Dehazer(model=args.model, device="cpu")
    dcp = Dehazer(method="dcp")
    rows = []
    for name in PHOTOS:
        hazy = np.asarray(Image.open(args.data / name).convert("RGB"))
        outs = [hazy, dcp.dehaze(hazy), odcr.dehaze(hazy)]
        labels = ["input", "dcp", f"odcr ({odcr.model_name})"]
        rows.append(_row([_cell(a, label) for a, label in zip(outs, labels)]))
        if name == ZOOMED:
            y, x = _flattest_square(hazy, ZOOM_SIDE)
            rows.append(_row([_cell(a[y:y + ZOOM_SIDE, x:x + ZOOM_SIDE], f"{label}, 2x") for a, label in zip(outs, labels)]))
    sheet = Image.new("RGB", (rows[0].width, sum(r.height + 4 for r in rows)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + 4
    _save_jpeg(sheet, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    sample = np.asarray(Image.open(ROOT / "docs/images/sample_hazy.jpg").convert("RGB"))
    _save_jpeg(Image.fromarray(odcr.dehaze(sample)), ROOT / "docs/images/sample_dehazed.jpg", quality=90)
    print("wrote docs/images/sample_dehazed.jpg")


if __name__ == "__main__":
    main()
