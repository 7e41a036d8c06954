"""How ``odcr dehaze`` reports progress and results (rich on a terminal, plain lines otherwise)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from odcr_cli.files.folders import is_video_name

FRAME_LINE_SECONDS = 5.0
if TYPE_CHECKING:  # annotations only: the task module is imported inside the command
    from odcr_cli.tasks.dehaze.dehazing import BatchReport, FileResult


class DehazeReporter:
    """How ``dehaze`` reports, each file exactly once. On a terminal: a rich progress bar on stderr
    for a batch (files done, ETA) and a status line for a single photo, failures printed above
    them; otherwise one plain line per file, counted in order. ``-q``: only failures, one line
    each. ``--dry-run``: the plan on stdout instead."""

    def __init__(self, quiet: bool, plan_to_stdout: bool = False, verbose: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self.plan_to_stdout = plan_to_stdout
        self.live = not quiet and self.console.is_terminal
        self.bar = self.task = self.status = None
        self.frames_task = None      # a video's frames, on the batch bar or on a bar of its own
        self.own_frames_bar = False
        self.next_frames_line = 0.0  # plain output: a line about every FRAME_LINE_SECONDS
        self.first_processed = 1   # results before this one needed no model (missing, skipped)
        self.todo = self.total = 0

    def say(self, text: str, style: str | None = None) -> None:
        # markup off: paths may hold [brackets]
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def start(self, engine: dict, total: int, todo: int) -> None:
        self.first_processed, self.todo, self.total = total - todo + 1, todo, total
        if self.quiet:
            return
        self.say(f"odcr dehaze: {total} file(s), method {engine['method']}, backend {engine['backend']} on {engine['device']}"
                 + (f", strength {engine['strength']:g}" if engine.get("strength", 1.0) != 1.0 else ""))
        # short lines (80 columns): a bundled model by its name, its file by name alone
        params = engine.get("parameters")
        if engine.get("model"):
            self.say(f"model {engine['model']} ({engine.get('output')}" + (f", {params:,} parameters)" if params else ")"))
        sha = (engine.get("weights_sha256") or "")[:12]
        if sha:
            self.say(f"weights {_short_path(engine.get('weights'), bundled=bool(engine.get('model')))}, sha256 {sha}…"
                     + (f", {params:,} parameters" if params and not engine.get("model") else ""))
        if engine["method"] == "odcr" and engine["device"] in ("cpu", "CPUExecutionProvider"):  # torch's and ORT's names
            side = engine.get("max_side")
            full = ("the network runs at full resolution, as far as a 4 GB memory estimate allows (slow)"
                    if engine.get("output") == "scattering" else "the network runs at full resolution (slow)")
            self.say("note: running on the CPU; " + (f"the network sees a copy of at most {side} px" if side else full))
        if self.live and todo > 1:
            self.bar = self._progress("{task.fields[name]}")
            self.task = self.bar.add_task("dehazing", total=todo, name="")

    def begin(self, res: FileResult) -> None:
        """A file's network pass starts."""
        if is_video_name(res.input):
            self._begin_video(res)
        elif self.bar is not None:
            self.bar.update(self.task, name=Path(res.input).name)
        elif self.live and self.todo == 1:
            # the name only: a long path would wrap the one-line status
            self.status = self.console.status(f"dehazing {Path(res.input).name} ({res.width}x{res.height})…")
            self.status.start()

    def _begin_video(self, res: FileResult) -> None:
        self.next_frames_line = time.monotonic() + FRAME_LINE_SECONDS
        if not self.live:
            return
        if self.bar is not None:
            self.bar.update(self.task, name=Path(res.input).name)
        else:
            self.bar, self.own_frames_bar = self._progress("{task.fields[name]}"), True
        self.frames_task = self.bar.add_task("frames", total=None, name=f"{Path(res.input).name} frames")

    def frames(self, res: FileResult, done: int, total: int | None) -> None:
        """A video's frames: the bar on a terminal, a plain line now and then otherwise."""
        if self.frames_task is not None:
            self.bar.update(self.frames_task, completed=done, total=total)
            return
        if self.quiet or self.live or time.monotonic() < self.next_frames_line:
            return
        self.next_frames_line = time.monotonic() + FRAME_LINE_SECONDS
        self.say(f"{res.input}: frame {done}" + (f"/{total}" if total else ""))

    def _end_video(self) -> None:
        if self.frames_task is None:
            return
        if self.own_frames_bar:
            self.bar.stop()
            self.bar = None
        else:
            self.bar.remove_task(self.frames_task)
        self.frames_task, self.own_frames_bar = None, False

    def _progress(self, name_column: str):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        bar = Progress(TextColumn("dehazing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("eta"), TimeRemainingColumn(), TextColumn(name_column), console=self.console)
        bar.start()
        return bar

    def file(self, res: FileResult, done: int, total: int) -> None:
        self._end_video()
        if self.status is not None:
            self.status.stop()
            self.status = None
        if self.bar is not None and done >= self.first_processed:
            self.bar.advance(self.task)
        if self.plan_to_stdout:
            typer.echo(_plan_line(res))
            return
        failed = res.status in ("failed", "interrupted")
        if self.verbose and res.status == "ok":
            self.say(f"{res.input}: {_details(res)}")
        if self.quiet or (self.live and not failed):
            if failed:
                self.say(f"{res.status}: {res.input}: {res.error}", "red")
            return
        line = f"[{done}/{total}] {res.status}: {res.input}"
        if failed:
            line += f": {res.error}"
        else:
            line += f" -> {res.output}" + (f" ({res.reason})" if res.reason else "")
            line += f" (and {', '.join(res.also_written)})" if res.also_written else ""
            if res.frames is not None and res.seconds:
                line += f" ({res.frames} frames, {res.frames / res.seconds:.1f} fps)"
        for note in res.warnings if res.status == "ok" and res.frames is not None else []:
            line += f"\n  note: {note}"
        self.say(line, "red" if failed else None)

    def close(self, interrupted: bool = False) -> None:
        """Stop the live bar or status line. ``interrupted``: erase it instead of drawing it once
        more: the terminal's ^C echo may have wrapped it onto a new line, where a last draw would
        show the bar twice; the summary that follows gives the counts."""
        for live in (self.status, self.bar):
            if live is not None:
                if interrupted:
                    (live.live if live is self.bar else live._live).transient = True
                live.stop()
        self.status = self.bar = None

    def summary(self, report: BatchReport) -> None:
        if self.quiet:
            return
        if report.dry_run:
            self.say(f"dry run: {report.planned} to dehaze, {report.skipped} skipped, {report.failed} failed; "
                     "no model loaded, nothing written")
        else:
            self.say(f"done: {report.ok} ok, {report.failed} failed, {report.skipped} skipped "
                     f"in {report.seconds:.1f} s (network {report.net_seconds:.1f} s)")
        found = report.inputs
        if found.output_folder:
            self.say(f"note: left out the output folder {', '.join(found.output_folder)} (inside an input folder: "
                     "its files are this command's outputs, not inputs)")
        if found.own_outputs:
            self.say(f"note: left out {len(found.own_outputs)} file(s) that carry the output suffix "
                     "(outputs of an earlier run, not inputs)")
        if found.subfolders:
            self.say(f"note: {len(found.subfolders)} subfolder(s) not read (add --recursive): {_some(found.subfolders)}")
        if found.not_images:
            self.say(f"note: {len(found.not_images)} file(s) are neither images nor videos and were not read: {_some(found.not_images)}")
        if found.same_file:
            self.say(f"note: {len(found.same_file)} file(s) left out as other names (symlinks) of an input: "
                     f"{_some(found.same_file)}")
        if found.broken_links:
            self.say(f"note: {len(found.broken_links)} symlink(s) point to nothing: {_some(found.broken_links)}")
        if found.loops:
            self.say(f"note: {len(found.loops)} symlinked folder(s) lead back to a folder already read, "
                     f"not read again: {_some(found.loops)}")

    def interrupted(self, report: BatchReport) -> None:
        of = f" of {self.total}" if self.total else ""
        cut = report.count("interrupted")
        self.say(f"interrupted: {len(report.files) - cut}{of} file(s) finished ({report.ok} written, {report.skipped} "
                 f"skipped, {report.failed} failed)" + (f", {cut} video cut short (nothing written)" if cut else "")
                 + "; every output written is complete. Resume with the same command and --skip-existing", "red")


def _details(res: FileResult) -> str:
    """-v: how one file was processed, on one line."""
    parts = [f"{res.width}x{res.height}", f"mode {res.mode}"]
    d = res.details
    if d.get("network_size"):
        parts.append("network at {}x{}".format(*reversed(d["network_size"])))
    if d.get("stage_seconds"):
        parts.append(", ".join(f"{k} {v:.2f} s" for k, v in d["stage_seconds"].items()))
    if "network_runs" in d:
        parts.append(f"{res.frames} frames at {d['speed_fps']} fps, network on {d['network_runs']}, "
                     f"{d['scene_cuts']} scene cut(s)")
    parts += [f"note: {w}" for w in res.warnings]
    return "; ".join(parts)


def _short_path(path: str | None, bundled: bool) -> str:
    """A bundled file by its name; the user's own weights relative to here when that is shorter."""
    if not path or bundled:
        return Path(path or "").name
    rel = os.path.relpath(path)
    return rel if len(rel) < len(path) else path


def _some(paths: list[str], n: int = 5) -> str:
    """The first few names, and how many more."""
    shown = ", ".join(Path(p).name for p in paths[:n])
    return shown + (f" and {len(paths) - n} more" if len(paths) > n else "")


def _plan_line(res: FileResult) -> str:
    if res.status == "planned":
        return f"{res.input} -> {res.output}"
    if res.status == "skipped":
        return f"{res.input} -> {res.output} (skipped: {res.reason})"
    return f"{res.input}: failed: {res.error}"


