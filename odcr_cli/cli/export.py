"""``odcr export`` and ``odcr models``: the bundled models listed, a generator exported to ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from odcr_cli.cli.common import fail


def models_command(
    json_out: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List the bundled models (the default first): name, kind, size, side, dev-pair scores."""
    import json as _json

    from odcr_cli.errors import BundledModelError
    from odcr_cli.files.bundled import bundled_dir, bundled_models

    try:
        models = bundled_models()
    except BundledModelError as exc:
        fail(str(exc), code=1)
    if json_out:
        typer.echo(_json.dumps([{"name": m.name, "default": m.default, "kind": m.kind, "parameters": m.parameters,
                                 "installed": m.installed(), "bytes": m.size_bytes(), "onnx": m.onnx is not None,
                                 "side": m.side, "t_prior": m.t_prior, "summary": m.summary,
                                 "dev_pairs": None if m.metrics is None else {
                                     **{name: {"psnr": s.psnr, "ssim": s.ssim} for name, s in m.metrics.scores},
                                     "path": m.metrics.path, "command": m.metrics.command,
                                     "machine": m.metrics.machine},
                                 "recipe": list(m.recipe)} for m in models], indent=2))
        return
    if not models:
        fail("no bundled model is installed", code=1)
    for m in models:  # one block per model: readable in any terminal width and in a pipe
        size = (f"{m.size_bytes() / 2**20:.1f} MiB" if m.installed() else
                f"not installed: the base wheel leaves it out; copy weights/{m.weights} from the odcr repository "
                f"into {bundled_dir()}")
        runs_at = f", network at {m.side} px" if m.side else ""
        typer.echo(f"{m.name}{'  (default)' if m.default else ''}\n    {m.kind}, {m.parameters / 1e6:.2f} M parameters, "
                   f"{size}{', ONNX export' if m.onnx else ''}{runs_at}\n    {m.summary}")
        if m.metrics is not None:
            typer.echo(f"    dev pairs, PSNR / SSIM ({m.metrics.path}): {m.metrics.line()}")


def export_command(
    onnx_flag: bool = typer.Option(False, "--onnx", help="Export to ONNX (the only format so far)."),
    model: Optional[str] = typer.Option(None, "--model", help="A bundled model by name (default: the default model)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Generator .safetensors, odcr checkpoint .pt or CUT net_G.pth (default: the bundled model)."),
    output: Path = typer.Option(Path("model.onnx"), "-o", "--output", help="Output .onnx file (written only if the parity check passes)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    fp16: bool = typer.Option(False, "--fp16", help="fp16 weights/activations; InstanceNorm and reductions stay fp32; I/O stays float32."),
    int8: bool = typer.Option(False, "--int8", help="int8 convolutions (ONNX Runtime static quantization) for the CPU; needs --calibrate."),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate", help="Folder of real photos to calibrate --int8 on (a few dozen of the kind you will dehaze)."),
    static: Optional[str] = typer.Option(None, "--static", help="Fix height and width, e.g. 512x512 (multiples of 4) (default: dynamic)."),
    check_image: Optional[list[Path]] = typer.Option(None, "--check-image", help="Repeatable: real photos added to the parity check."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the PyTorch-vs-ONNX parity check (not recommended)."),
    training_data: Optional[str] = typer.Option(None, "--training-data", help="Training data recorded in the metadata (default: from the weights)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Export the generator to ONNX (dynamic batch/height/width) and check it against PyTorch."""
    from rich.console import Console
    from rich.table import Table

    from odcr_cli.errors import ExportCheckError
    from odcr_cli.files.bundled import bundled_model
    from odcr_cli.tasks.export.export import export_onnx, parse_hw

    if not onnx_flag:
        fail("choose a format: --onnx")
    if output.is_dir():
        fail(f"-o {output} is a folder; name the .onnx file to write")
    if output.suffix.lower() != ".onnx":
        fail(f"-o {output}: name the .onnx file to write (an ONNX model in a file named otherwise is lost to tools)")
    if output.exists() and not overwrite:
        fail(f"{output} already exists; pass --overwrite to replace it")
    static_hw = parse_hw(static) if static else None
    if int8 != (calibrate is not None):
        fail("--int8 and --calibrate DIR go together")
    photos = []
    if calibrate is not None:
        from odcr_cli.files.folders import list_images

        if not calibrate.is_dir():
            fail(f"--calibrate {calibrate}: not a folder")
        photos = list_images(calibrate)
        if not photos:
            fail(f"--calibrate {calibrate}: no photos in it")
    con = Console(stderr=True)
    if model is not None and weights is not None:
        fail("--model picks a bundled model; --weights picks a file: give one of them")
    try:
        if model is not None:
            weights = str(bundled_model(model).weights_file().path)
        with con.status("exporting and checking…"):
            report = export_onnx(weights, output, opset=opset, fp16=fp16, static_hw=static_hw,
                                 check=not no_check, check_images=check_image or (), training_data=training_data,
                                 int8_calibration=photos)
    except ExportCheckError as exc:
        for c in exc.report.checks:
            con.print(f"  {'ok ' if c.passed else '[red]BAD[/]'} {c.name}: max diff {c.max_abs_diff}, PSNR {c.psnr:.1f} dB",
                      highlight=False)
        raise
    bound = 'int8: PSNR >= 35 dB' if int8 else 'fp16: PSNR >= 40 dB' if fp16 else 'fp32: diff <= 1 level, PSNR >= 50 dB'
    table = Table(title=f"parity vs PyTorch fp32 ({bound})")
    for col in ("image", "HxW", "max diff (levels)", "PSNR (dB)", "ok"):
        table.add_column(col)
    for c in report.checks:
        table.add_row(c.name, f"{c.height}x{c.width}", str(c.max_abs_diff),
                      "inf" if c.psnr == float("inf") else f"{c.psnr:.1f}", "yes" if c.passed else "NO")
    if report.checks:
        con.print(table)
    shape = f"{static_hw[0]}x{static_hw[1]}" if static_hw else "dynamic HxW"
    con.print(f"wrote {report.output} ({report.bytes / 1e6:.1f} MB, opset {report.opset}, "
              f"{'int8' if int8 else 'fp16' if fp16 else 'fp32'}, {shape}, {report.parameters:,} parameters, "
              f"weights sha256 {report.weights_sha256[:12]}…) in {report.seconds:.1f} s", highlight=False)


