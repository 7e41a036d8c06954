"""The README's comparison sheet: six real hazy photos (no ground truth), input | dcp | odcr.

    python scripts/make_sheet.py [--model NAME] [--out docs/images/real_hazy_sheet.jpg]

Each photo is dehazed at its full resolution exactly as `odcr dehaze` does (the default model, or
--model), then the three versions are shrunk to one row of the sheet. Also rewrites the README
sample (docs/images/sample_dehazed.jpg) from docs/images/sample_hazy.jpg with the same model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from odcr_cli.files.fsutil import atomic_output
from odcr_cli.engine.dehazer import Dehazer

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("ridcp_cityscape.png", "ridcp_train.png", "utk_foggy_morning_bills.jpg", "ridcp_swan.png",
          "utk_meadows_foggy_smokey_sunbeams.jpg", "ridcp_GSGL_Google_474.jpeg")
CELL_W = 240


def _cell(arr: np.ndarray, label: str) -> Image.Image:
    im = Image.fromarray(arr)
    im = im.resize((CELL_W, max(1, round(im.height * CELL_W / im.width))), Image.LANCZOS)
    ImageDraw.Draw(im).text((6, 4), label, fill=(255, 255, 0))
    return im


def _save_jpeg(im: Image.Image, path: Path, quality: int = 85) -> None:
    with atomic_output(path) as fh:
        im.save(fh, format="JPEG", quality=quality, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/dev/real_hazy")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/images/real_hazy_sheet.jpg")
    args = ap.parse_args()
    odcr = Dehazer(model=args.model, device="cpu")
    dcp = Dehazer(method="dcp")
    rows = []
    for name in PHOTOS:
        hazy = np.asarray(Image.open(args.data / name).convert("RGB"))
        cells = [_cell(hazy, "input"), _cell(dcp.dehaze(hazy), "dcp"), _cell(odcr.dehaze(hazy), f"odcr ({odcr.model_name})")]
        row = Image.new("RGB", (3 * CELL_W + 8, cells[0].height), "white")
        for k, c in enumerate(cells):
            row.paste(c, (k * (CELL_W + 4), 0))
        rows.append(row)
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
