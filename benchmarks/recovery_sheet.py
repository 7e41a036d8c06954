"""The sheet of docs/images/recovery_sheet.jpg: 1:1 crops (shown at 2x, nearest neighbour) of the
skies and fog of the dev photos where the plain luma inversion amplified the camera and the codec
most, and of the news clip's frame 300, as input | today (the chroma rule alone) | now (the
noise-aware recovery); then one photo whole at --strength 1, 1.5 and 2 and with --keep-exposure:

    python benchmarks/recovery_sheet.py [OUT.jpg]

The network runs once per photo (``benchmarks/clean_recovery.py``'s harness). Measuring only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clean_recovery import dehaze  # noqa: E402
from _paths import REAL_HAZY, VIDEO  # noqa: E402

from odcr_cli.engine.dehazer import Dehazer  # noqa: E402
from odcr_cli.files.imageio import decode_image  # noqa: E402
from odcr_cli.imaging.tone import keep_exposure  # noqa: E402

CLIP = VIDEO / "flameguardian_delhi_smog_news.mp4"
# (photo, x, y, width, height) of each crop, in the photo's pixels
CROPS = [("ridcp_BJ_Baidu_544.jpeg", 420, 20, 240, 120), ("utk_fishers.jpg", 0, 0, 240, 120),
         ("ridcp_cityscape.png", 100, 40, 200, 120), ("news frame 300", 380, 20, 320, 160)]
WHOLE = "ridcp_campus.jpg"
ZOOM, GAP = 2, 6


def _news_frame(index: int = 300) -> np.ndarray:
    import av

    with av.open(str(CLIP)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise SystemExit(f"{CLIP.name} has fewer than {index + 1} frames")


def _read(name: str) -> tuple[np.ndarray, dict | None]:
    if name.startswith("news"):
        return _news_frame(), None
    img = decode_image((REAL_HAZY / name).read_bytes(), name)
    return img.pixels, img.quantization


def _label(im: Image.Image, text: str) -> Image.Image:
    ImageDraw.Draw(im).text((4, 2), text, fill=(255, 0, 0))
    return im


def _row(tiles: list[Image.Image]) -> Image.Image:
    row = Image.new("RGB", (sum(t.width for t in tiles) + GAP * (len(tiles) - 1), max(t.height for t in tiles)), "white")
    x = 0
    for t in tiles:
        row.paste(t, (x, 0))
        x += t.width + GAP
    return row


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", type=Path, default=Path("docs/images/recovery_sheet.jpg"))
    out_path = ap.parse_args().out
    dz = Dehazer(device="cpu")
    cache: dict = {}
    rows = []
    for name, x, y, w, h in CROPS:
        rgb8, tables = _read(name)
        images = [rgb8] + [dehaze(dz, rgb8, tables, cache, name, arm) for arm in ("today", "new")]
        tiles = [Image.fromarray(a).crop((x, y, x + w, y + h)).resize((w * ZOOM, h * ZOOM), Image.NEAREST)
                 for a in images]
        rows.append(_row([_label(t, f"{name[:24]} {k}") for t, k in zip(tiles, ("input", "today", "now"))]))
    rgb8, tables = _read(WHOLE)
    whole = [rgb8] + [dehaze(dz, rgb8, tables, cache, WHOLE, "new", s) for s in (1.0, 1.5, 2.0)]
    kept = keep_exposure(whole[1].astype(np.float32) / 255.0, rgb8.astype(np.float32) / 255.0)
    whole.append(np.clip(np.rint(kept * 255), 0, 255).astype(np.uint8))
    width = (rows[0].width - GAP * 4) // 5
    tiles = []
    for a, k in zip(whole, ("input", "strength 1", "1.5", "2", "1, --keep-exposure")):
        im = Image.fromarray(a)
        tiles.append(_label(im.resize((width, round(im.height * width / im.width)), Image.LANCZOS), k))
    rows.append(_row(tiles))
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + GAP * (len(rows) - 1)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + GAP
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path, quality=88)
    print(f"{out_path}: {sheet.width}x{sheet.height}")


if __name__ == "__main__":
    main()
