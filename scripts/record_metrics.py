"""Record a bundled model's dev-pair scores in ``weights/models.json`` from an ``odcr evaluate`` report.

    odcr evaluate --pairs ../shared/data/dev/paired -m odcr -m MODEL ... --no-fade --json eval.json
    python scripts/record_metrics.py eval.json --model MODEL [--method odcr] \\
        --command "odcr evaluate --pairs ../shared/data/dev/paired -m odcr --no-fade" --machine "2-core AMD EPYC (AVX-512), 2026-12-07"

``--method`` is the method's name in the report (default: the model's name; ``odcr`` for the
default model). The report's mean over all pairs and its per-subset means, rounded as the README
prints them (PSNR to 0.01 dB, SSIM to 0.001), become the entry's ``metrics``, with the path the
report says ran (backend and graph), the command and the machine. ``odcr models`` prints them, and
tests/test_bundled.py checks the README's table against them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from odcr_cli.files.bundled import REGISTRY_NAME
from odcr_cli.files.fsutil import atomic_output

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", type=Path, help="odcr evaluate --json FILE")
    ap.add_argument("--model", required=True, help="the bundled model's name in models.json")
    ap.add_argument("--method", help="the method's name in the report (default: --model)")
    ap.add_argument("--command", required=True, help="the command that produced the report, as a reader re-runs it")
    ap.add_argument("--machine", required=True, help="where and when, e.g. '2-core AMD EPYC (AVX-512), 2026-12-07'")
    args = ap.parse_args()

    report = json.loads(args.report.read_text())
    wanted = args.method or args.model
    methods = report["methods"]
    if wanted not in methods:
        raise SystemExit(f"{args.report} has no method {wanted!r} (it has {', '.join(methods)})")
    method = methods[wanted]
    scores = {"all": [round(method["mean"]["psnr"], 2), round(method["mean"]["ssim"], 3)]}
    for name, sub in method.get("subsets", {}).items():
        scores[name] = [round(sub["psnr"], 2), round(sub["ssim"], 3)]

    path = ROOT / "weights" / REGISTRY_NAME
    registry = json.loads(path.read_text())
    entries = [m for m in registry["models"] if m["name"] == args.model]
    if not entries:
        raise SystemExit(f"{path} has no model {args.model!r}")
    ran = method.get("description", "").split(", ", 1)[-1]  # "bundled NAME, onnx int8 on ..." -> what ran
    entries[0]["metrics"] = {"dev_pairs": scores, "path": ran, "command": args.command,
                             "machine": args.machine}
    with atomic_output(path, "w") as fh:
        json.dump(registry, fh, indent=2)
        fh.write("\n")
    print(f"{args.model}: " + "; ".join(f"{k} {p:.2f} / {q:.3f}" for k, (p, q) in scores.items()))


if __name__ == "__main__":
    main()
