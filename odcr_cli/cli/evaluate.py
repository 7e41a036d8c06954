"""``odcr evaluate``: options -> :func:`odcr_cli.tasks.evaluate.evaluation.evaluate`, and the score table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from odcr_cli.cli.common import fail

if TYPE_CHECKING:  # annotations only: rich and the task are imported inside the command
    from rich.console import Console
    from rich.table import Table

    from odcr_cli.tasks.evaluate.evaluation import EvaluationReport


def evaluate_command(
    hazy: Optional[list[Path]] = typer.Option(None, "--hazy", help="Folder of hazy images (with --gt); alone: real photos without ground truth, scored by FADE, where --hazy is repeatable and may name files."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="Folder of ground-truth images (with --hazy)."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Folder holding hazy/ and gt/."),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m",
                                               help="Repeatable: odcr (the default model or --weights), a bundled model's name (odcr models), dcp, dcp@N (t estimated at N px), input, onnx:FILE, or a weights/checkpoint path, optionally as LABEL=METHOD (default: odcr)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Weights for --method odcr (default: the bundled model)."),
    backend: str = typer.Option("auto", "--backend", help="How bundled models run: auto (as odcr dehaze runs them: ONNX Runtime, the int8 graph on the CPU; no torch needed), onnx, or torch (the PyTorch fp32 weights)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps; a requested GPU that is unusable is an error."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write all scores as JSON to FILE."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write per-image scores and means as CSV to FILE."),
    save_outputs: Optional[Path] = typer.Option(None, "--save-outputs", help="Save each method's outputs as PNG under DIR/METHOD/."),
    latency_size: str = typer.Option("256x256", "--latency-size", help="HxW of the latency measurement of learned methods."),
    latency_repeats: int = typer.Option(5, "--latency-repeats", min=0, help="Timed runs after one warm-up (0 = skip)."),
    max_side: Optional[int] = typer.Option(None, "--max-side", min=0,
                                 help="Network side of learned methods (0 = full resolution; default: as odcr dehaze runs each model)."),
    fade: bool = typer.Option(True, "--fade/--no-fade", help="Score FADE, the referenceless fog density (lower = less fog)."),
    report_dir: Optional[Path] = typer.Option(None, "--report", help="Write an HTML page (DIR/index.html) with every output and its scores."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only the table."),
) -> None:
    """Score methods side by side: PSNR, SSIM and FADE against ground truth, or FADE alone on real photos
    without it (full resolution, RGB uint8)."""
    from rich.console import Console

    from odcr_cli.engine.options import BackendChoice, Device, parse_choice
    from odcr_cli.tasks.evaluate.evaluation import evaluate
    from odcr_cli.tasks.export.export import parse_hw

    if pairs is None and not hazy:
        fail("give --pairs DIR, --hazy DIR --gt DIR, or --hazy DIR alone (real photos, FADE)")
    if pairs is not None and (hazy or gt is not None):
        fail("--pairs and --hazy/--gt are alternatives; give one")
    lat_hw = parse_hw(latency_size)
    err = Console(stderr=True)

    def progress(done: int, total: int, stem: str) -> None:
        if not quiet and err.is_terminal and stem:
            err.print(f"[{done + 1}/{total}] {stem}", end="\r", highlight=False)

    report = evaluate(hazy_dir=hazy or None, gt_dir=gt, pairs_dir=pairs, methods=method or ["odcr"], weights=weights,
                      device=Device.parse(device), save_outputs=save_outputs, latency_size=lat_hw,
                      latency_repeats=latency_repeats, max_side=max_side, fade=fade, report_dir=report_dir,
                      progress=progress, backend=parse_choice(BackendChoice, backend, "--backend").value)
    _print_notes(err, report, quiet)
    out = Console()
    if out.is_terminal:
        out.print(score_table(report, lat_hw))
    else:  # piped or logged: a plain layout, every cell whole (rich would wrap it at 80 columns)
        typer.echo(plain_table(report, lat_hw))
    if json_out:
        report.write_json(json_out)
    if csv_out:
        report.write_csv(csv_out)
    raise typer.Exit(1 if report.failures else 0)


def _print_notes(err: "Console", report: "EvaluationReport", quiet: bool) -> None:
    """What was evaluated, and everything that was not scored or was changed (pairs left out, cropped GTs, failures)."""
    p = report.pairing
    if not quiet:
        err.print(f"{len(p.pairs)} {'pairs' if report.paired else 'photos'} evaluated in {report.seconds:.1f} s")
        for name, m in report.methods.items():  # which path each learned method ran (backend, graph, device)
            if m.kind in ("onnx", "torch"):
                err.print(f"{name}: {m.description}", highlight=False, soft_wrap=True)
        if report.report_path is not None:
            err.print(f"report: {report.report_path}", highlight=False)
    for label, items in (("hazy images without GT", p.unmatched_hazy), ("GT images without a hazy image", p.unmatched_gt)):
        if items:
            err.print(f"[yellow]warning:[/] {len(items)} {label} (not scored): " + ", ".join(items[:10])
                      + (" …" if len(items) > 10 else ""), highlight=False)
    if report.gt_cropped:
        borders = sorted(set(report.gt_cropped.values()))
        err.print(f"note: {len(report.gt_cropped)} GT image(s) centre-cropped to the hazy size "
                  f"(border {', '.join(map(str, borders))} px)")
    for f in report.failures:
        err.print(f"[red]failed:[/] {f['stem']} ({f['method'] or 'reading'}): {f['error']}", highlight=False)


def _num(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def score_rows(report: "EvaluationReport", lat_hw: tuple[int, int]) -> tuple[str, list[str], list[list[str]]]:
    """The score table as (title, column headers, rows): one row per method (and the ground
    truths' FADE), means over all images and per subset."""
    subsets = sorted({s for m in report.methods.values() for s in m.subsets})
    if report.paired:
        title = "PSNR (dB) / SSIM" + (" / FADE (lower = less fog)" if report.fade else "") + ", means"
    else:
        title = "FADE (lower = less fog): mean / median, no ground truth"
    headers = ["method", "all", *subsets, "params", f"latency {lat_hw[0]}x{lat_hw[1]}"]

    def cell(agg: dict) -> str:
        if not agg or not agg.get("n"):
            return "–"
        if not report.paired:
            return f"{_num(agg.get('fade'), '.3f')} / {_num((agg.get('median') or {}).get('fade'), '.3f')} (n={agg['n']})"
        text = f"{_num(agg['psnr'], '.2f')} / {_num(agg['ssim'], '.3f')}"
        return text + (f" / {_num(agg.get('fade'), '.3f')}" if report.fade else "") + f" (n={agg['n']})"

    rows = []
    for name, m in report.methods.items():
        lat = m.latency
        rows.append([name, cell({**m.mean, "median": m.median}), *[cell(m.subsets.get(s, {})) for s in subsets],
                     f"{m.parameters:,}" if m.parameters else "–",
                     f"{lat['median_ms']:.0f} ms ({lat['backend']}, {lat['device']})" if lat else "–"])
    gt_fade = report.gt_fade_summary()
    if gt_fade:
        stems = {q.stem: q.subset for q in report.pairing.pairs}

        def gt_cell(sub: str | None) -> str:
            vals = [v for s, v in gt_fade["images"].items() if v is not None and (sub is None or stems.get(s) == sub)]
            return f"– / – / {sum(vals) / len(vals):.3f} (n={len(vals)})" if vals else "–"

        rows.append(["ground truth (FADE)", gt_cell(None), *[gt_cell(s) for s in subsets], "", ""])
    return title + ", full resolution, RGB uint8", headers, rows


def score_table(report: "EvaluationReport", lat_hw: tuple[int, int]) -> "Table":
    """The score table for a terminal (rich, fitted to its width)."""
    from rich.table import Table

    title, headers, rows = score_rows(report, lat_hw)
    table = Table(title=title)
    for k, h in enumerate(headers):
        table.add_column(h, justify="left" if k == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def plain_table(report: "EvaluationReport", lat_hw: tuple[int, int]) -> str:
    """The score table for a pipe or a log: every cell whole on one line, columns aligned with
    spaces (no width limit: a script reads it as it is)."""
    title, headers, rows = score_rows(report, lat_hw)
    widths = [max(len(r[k]) for r in [headers, *rows]) for k in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([title, line(headers), *map(line, rows)])
