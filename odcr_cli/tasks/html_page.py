"""The shared look of odcr's HTML pages (``evaluate --report`` and ``RUN/report.html``): one
self-contained file each (inline CSS, JavaScript and SVG; nothing from the network), written
atomically next to the images it links by relative paths."""

from __future__ import annotations

import datetime as _dt
import html
from pathlib import Path
from urllib.parse import quote

from odcr_cli.files.fsutil import atomic_output

CSS = """
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


def esc(v: object) -> str:
    return html.escape(str(v), quote=True)


def url(path: str) -> str:
    return "/".join(quote(part) for part in path.split("/"))


def page(title: str, body: str, head_extra: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{head_extra}'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_text(path: Path, text: str) -> Path:
    with atomic_output(path, "w") as fh:
        fh.write(text)
    return path


def now() -> str:
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
