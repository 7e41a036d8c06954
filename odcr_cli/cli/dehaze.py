"""``odcr dehaze``: options -> :func:`odcr_cli.tasks.dehaze.dehazing.run_dehaze`, reported per file."""

from __future__ import annotations

import signal
import sys
from typing import Optional

import typer

from odcr_cli.cli.common import fail
from odcr_cli.cli.dehaze_reporter import DehazeReporter
from odcr_cli.engine.options import CPU_AUTO_MAX_SIDE, DEFAULT_MEMORY_BUDGET_GB
from odcr_cli.haze.constants import MAX_STRENGTH, MODEL_SIDE, T_MIN


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def dehaze_command(
    inputs: list[str] = typer.Argument(None, metavar="INPUT...",
                                       help="Image or video files (mp4, mov, mkv, m4v, avi, webm), folders, globs, "
                                            "or '-' for a photo on stdin."),
    output: Optional[str] = typer.Option(None, "-o", "--output",
                                         help="Output file (one input), folder (mirrors the input tree), or '-' for stdout. "
                                              "Default: <stem>_dehazed.<ext> beside each input."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    input_list: Optional[str] = typer.Option(None, "--input-list", help="File with one input path per line ('-' = stdin)."),
    suffix: Optional[str] = typer.Option(None, "--suffix", help="Added to output names (default: '_dehazed' beside the input, '' in an -o folder)."),
    ext: str = typer.Option("auto", "--ext", help="Photo output format: auto (as the input), png, jpg, webp or tif. "
                                                  "Videos keep mp4/mov/mkv/m4v; avi and webm become mp4."),
    quality: Optional[int] = typer.Option(None, "--quality", min=1, max=100, help="JPEG/WebP quality (default 95)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (never the inputs)."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Keep existing outputs and process the rest (resume)."),
    json_report: Optional[str] = typer.Option(None, "--json", help="Write a JSON report to FILE ('-' = stdout)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Process slice i of N (i/N, i from 0), e.g. one per machine."),
    model: Optional[str] = typer.Option(None, "--model", help="A bundled model by name (`odcr models` lists them; default: the default model)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Generator .safetensors, odcr checkpoint .pt or CUT net_G.pth (default: the bundled model)."),
    method: str = typer.Option("odcr", "--method", help="odcr (the network) or dcp (dark channel prior, no weights)."),
    device: str = typer.Option("auto", "--device",
                               help="auto, cpu, cuda, cuda:N, mps or tensorrt (ONNX); a requested GPU that is unusable is an error."),
    half: bool = typer.Option(False, "--half", help="fp16 on CUDA (non-finite outputs are redone in fp32)."),
    backend: str = typer.Option("auto", "--backend",
                                          help="auto (ONNX Runtime for the bundled model on CPU, else torch), torch or onnx."),
    onnx: Optional[str] = typer.Option(None, "--onnx", help="Exported ONNX model for --backend onnx."),
    tile: Optional[int] = typer.Option(None, "--tile", help=f"Force tiling with N-px tiles (default: automatic above a {DEFAULT_MEMORY_BUDGET_GB:g} GB memory estimate); InstanceNorm statistics stay whole-image."),
    max_side: Optional[str] = typer.Option("auto", "--max-side",
                                           help="Run the network on a copy whose longer side is at most N px and carry the result to full "
                                                "resolution. auto: a scattering model (the default) at the side its weights "
                                                f"record (a distilled student's), else {MODEL_SIDE} px; direct models at full "
                                                f"resolution on GPU, {CPU_AUTO_MAX_SIDE} px on CPU. 0 = the network at full "
                                                "resolution (a scattering model as large as a "
                                                f"{DEFAULT_MEMORY_BUDGET_GB:g} GB memory estimate allows, noted)."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Decompression-bomb limit in pixels (default: Pillow's, ~179 MP); 0 = no limit."),
    strip_metadata: bool = typer.Option(False, "--strip-metadata", help="Do not copy ICC profile and EXIF to the outputs."),
    strength: float = typer.Option(1.0, "--strength",
                                   help=f"How much haze to remove: 0 = the input, 1 = full dehazing, up to {MAX_STRENGTH:g} = "
                                        "more. Scattering models and dcp remove that fraction of the haze (t -> 1 - s (1 - t)) "
                                        "and above 1 read it as s times as thick (t -> t^s); direct models blend with the "
                                        "input (above 1: beyond their output)."),
    codec: Optional[str] = typer.Option(None, "--codec", help="Videos: h264 (default; vp9 into .webm), hevc, vp9 or av1 "
                                                                 "(ffmpeg's names work too: libx264...)."),
    crf: Optional[int] = typer.Option(None, "--crf", help="Videos: constant rate factor, lower = better and bigger "
                                                          "(default near visually lossless: h264 18, hevc 20, vp9 24, av1 28)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Videos: encoder speed preset (h264/hevc: ultrafast … "
                                                                "veryslow, default veryfast; av1: 0-13, default 10; "
                                                                "vp9: cpu-used 0-8, default 4)."),
    save_transmission: bool = typer.Option(False, "--save-transmission",
                                           help="Photos: also write the haze map t (<stem>_transmission.png, 0-65535 = 0-1) "
                                                f"and the relative depth -ln t (<stem>_depth.png, 65535 at t = {T_MIN:g}) as "
                                                "16-bit PNGs beside each output. Scattering models and dcp."),
    keep_exposure: bool = typer.Option(False, "--keep-exposure",
                                       help="Photos: give the output the input's mean brightness (a power curve per photo "
                                            "that clips nothing; removing a bright veil otherwise darkens a photo)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for the network and the image "
                                                                     "maths (default: all cores); videos also encode with this many."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (input -> output, what would be skipped) on stdout; "
                                                          "load no model and write no image."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress and no summary (errors still go to stderr)."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="One more line per file: how it was processed (mode, "
                                                                  "the network's size, seconds by stage; for videos the "
                                                                  "network passes and scene cuts) and its notes."),
) -> None:
    """Dehaze photos and videos: files, folders, globs or stdin (photos).

    Exit code 0 all done, 1 some failed, 2 usage error or no input, 130 interrupted (rerun with --skip-existing to resume)."""
    from odcr_cli.engine.options import EngineOptions, Method, parse_choice
    from odcr_cli.tasks.dehaze.dehazing import Interrupted, run_dehaze, write_report
    from odcr_cli.tasks.dehaze.options import DehazeOptions

    if not inputs and not input_list:
        fail("no input given: pass files, folders, globs, '-' or --input-list FILE")
    if output == "-" and json_report == "-":
        fail("-o - and --json - both want stdout; write the report to a file")
    network_only = {"--weights": weights, "--model": model, "--onnx": onnx, "--tile": tile, "--half": half or None}
    given = [flag for flag, value in network_only.items() if value is not None]
    chosen_method = parse_choice(Method, method, "--method")
    if given and chosen_method is Method.DCP:
        fail(f"--method dcp runs no network, so {', '.join(given)} would do nothing; drop them or use --method odcr")
    if max_pixels is not None and max_pixels < 0:
        fail(f"--max-pixels {max_pixels}: give a number of pixels, or 0 for no limit")
    if (output == "-" or (output is None and inputs == ["-"])) and sys.stdout.isatty() and not dry_run:
        fail("refusing to write image bytes to a terminal; redirect stdout or pass -o FILE")
    engine = EngineOptions(method=chosen_method, model=model, weights=weights, onnx_path=onnx, backend=backend,
                           device=device, half=half, tile=tile, max_side=max_side, strength=strength, threads=threads,
                           keep_transmission=save_transmission, keep_exposure=keep_exposure)
    opts = DehazeOptions(inputs=list(inputs or []), output=output, recursive=recursive, input_list=input_list,
                         suffix=suffix, ext=ext, quality=quality, overwrite=overwrite, skip_existing=skip_existing,
                         shard=shard, engine=engine, max_pixels=max_pixels, strip_metadata=strip_metadata,
                         dry_run=dry_run, json_report=json_report, codec=codec, crf=crf, preset=preset)
    rep = DehazeReporter(quiet, plan_to_stdout=dry_run and json_report != "-", verbose=verbose)
    # SIGTERM (what batch schedulers and `kill` send) ends a run as Ctrl-C does: the file being
    # written is discarded, and the summary and --json report still come out
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        report = run_dehaze(opts, progress=rep.file, on_start=rep.start, on_begin=rep.begin, on_frames=rep.frames)
    except Interrupted as exc:
        rep.close(interrupted=True)
        if json_report:
            write_report(exc.report, json_report)
        rep.interrupted(exc.report)
        raise typer.Exit(130)
    except KeyboardInterrupt:
        rep.close(interrupted=True)
        rep.say("interrupted before any file was processed", "red")
        raise typer.Exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
        rep.close()  # before any error line: a live progress bar would overwrite it
    if json_report:
        write_report(report, json_report)
    rep.summary(report)
    raise typer.Exit(report.exit_code)

