"""What a ``dehaze`` run will do, decided before any work starts: the inputs (files, folders,
globs, stdin, an input list), this machine's shard of them, every output path, and the checks
that refuse an unsafe plan or an output folder that cannot be written.

Everything here raises :class:`UsageError` (exit code 2): nothing has been processed yet.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odcr_cli.errors import UsageError
from odcr_cli.files.folders import (FOREIGN_IMAGE_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES, is_image_name,
                                   is_video_name, walk_folder)
from odcr_cli.files.fsutil import writable_dir_problem
from odcr_cli.files.imageio import EXT_FORMAT, WRITABLE, format_for_ext
from odcr_cli.tasks.dehaze.options import TRANSMISSION_KINDS, DehazeOptions, transmission_paths
from odcr_cli.tasks.dehaze.shards import in_shard, parse_shard, shard_items  # noqa: F401 - parse_shard: importers


STDIO = "-"
_BESIDE_SUFFIX = "_dehazed"  # what a run without -o adds to its outputs' names (default of --suffix)
_GLOB_CHARS = "*?["


@dataclass
class InputItem:
    source: str            # a path, or "-" for stdin
    rel: Path              # path used to mirror the tree under an -o folder


@dataclass
class InputSet:
    """What the inputs expanded to, and what was left out of them (for the summary)."""
    items: list[InputItem] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)   # (named input, why): per-file failures
    own_outputs: list[str] = field(default_factory=list)           # carry this run's output suffix
    subfolders: list[str] = field(default_factory=list)            # not read (no --recursive)
    not_images: list[str] = field(default_factory=list)            # in folders/globs, not image files
    same_file: list[str] = field(default_factory=list)             # another name (a symlink) of an input
    broken_links: list[str] = field(default_factory=list)          # symlinks to nothing, in folders
    loops: list[str] = field(default_factory=list)                 # symlinked folders walked already
    output_folder: list[str] = field(default_factory=list)         # the -o folder, met inside an input folder

    def left_out(self) -> dict[str, Any]:
        return {"own_outputs": len(self.own_outputs), "output_folder": self.output_folder,
                "subfolders_not_read": self.subfolders,
                "not_images": self.not_images, "same_file": self.same_file, "broken_links": self.broken_links,
                "symlink_loops": self.loops}


@dataclass
class Job:
    item: InputItem
    output: str            # a path, or "-" for stdout
    fmt: str | None        # output image format; None = decided from the input (ext auto), or a video

    @property
    def video(self) -> bool:
        """A video in, a video out (odcr_cli.tasks.dehaze.videos); else a photo."""
        return self.item.source != STDIO and is_video_name(self.item.source)


@dataclass
class Plan:
    """One run's work: the jobs in input order, and what needs no model (missing inputs, kept outputs)."""
    found: InputSet
    missing: list[tuple[str, str]]     # this shard's named inputs that do not exist: failed files
    jobs: list[Job]
    kept: set[str] = field(default_factory=set)   # outputs that exist and --skip-existing keeps

    def runs(self, job: Job) -> bool:
        return job.output not in self.kept

    @property
    def todo(self) -> list[Job]:
        return [job for job in self.jobs if self.runs(job)]

    @property
    def total(self) -> int:
        return len(self.missing) + len(self.jobs)

    def input_order(self) -> dict[str, int]:
        """Position of each input in the report: missing ones first, then the jobs."""
        order = {raw: i for i, (raw, _) in enumerate(self.missing)}
        order.update({job.item.source: len(self.missing) + k for k, job in enumerate(self.jobs)})
        return order


# -- input expansion --------------------------------------------------------------------------------

def _is_glob(text: str) -> bool:
    return any(ch in text for ch in _GLOB_CHARS)


def _glob_root(pattern: str) -> Path:
    root: list[str] = []
    for part in Path(pattern).parts:
        if _is_glob(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def _is_output_suffix(suffix: str) -> bool:
    """What odcr writes: an image format, or a video container."""
    return suffix.lower().lstrip(".") in EXT_FORMAT or suffix.lower() in VIDEO_SUFFIXES


def _carries_suffix(p: Path, suffix: str) -> bool:
    """An earlier run's output: the suffix, or the suffix and a --save-transmission kind, at the end of the stem."""
    ends = (suffix, *(f"{suffix}_{kind}" for kind in TRANSMISSION_KINDS))
    return bool(suffix) and p.stem.endswith(ends) and _is_output_suffix(p.suffix)


def _add_found(found: InputSet, f: Path, rel: Path, own_suffix: str) -> None:
    """A file met in a folder or a glob: an input, an earlier run's output or not an image."""
    if not (is_image_name(f) or is_video_name(f)):
        found.not_images.append(str(f))
    elif _carries_suffix(f, own_suffix):
        found.own_outputs.append(str(f))
    else:
        found.items.append(InputItem(str(f), rel))


def _add_named(found: InputSet, raw: str, recursive: bool, own_suffix: str, out_dir: str | None = None) -> None:
    """One input as given: stdin, a folder, a file, a glob, or a missing name. Inside a folder or
    a glob, the output folder ``out_dir`` is left out: a rerun must not read its outputs as inputs."""
    p = Path(raw)
    skip = frozenset({os.path.realpath(out_dir)}) if out_dir is not None else frozenset()
    if raw == STDIO:
        found.items.append(InputItem(STDIO, Path("stdin.png")))
    elif p.is_dir():
        listing = walk_folder(p, recursive, skip)
        for f in listing.images + listing.videos + listing.not_images:
            _add_found(found, f, f.relative_to(p), own_suffix)
        found.output_folder += [str(f) for f in listing.left_out if str(f) not in found.output_folder]
        found.subfolders += [str(f) for f in listing.subfolders]
        found.broken_links += [str(f) for f in listing.broken_links]
        found.loops += [str(f) for f in listing.loops]
    elif p.is_file():  # named one by one: always an input, whatever its suffix
        found.items.append(InputItem(str(p), Path(p.name)))
    elif _is_glob(raw):
        root = _glob_root(raw)
        matches = sorted(m for m in glob.glob(raw, recursive=True) if Path(m).is_file())
        if not matches:
            found.missing.append((raw, "no files match"))
        inside = [m for m in matches if skip and _under(m, next(iter(skip)))]
        found.output_folder += [out_dir] if inside and out_dir not in found.output_folder else []
        for m in matches:
            if m not in inside:
                _add_found(found, Path(m), Path(os.path.relpath(m, root)), own_suffix)
    else:
        found.missing.append((raw, "not found"))


def _under(path: str, folder: str) -> bool:
    return os.path.realpath(path).startswith(folder.rstrip(os.sep) + os.sep)


def _list_items(input_list: str) -> list[InputItem]:
    """The lines of an --input-list (comments and blank lines dropped), each mirrored by its own
    path: see :func:`list_entry_rel`."""
    try:
        text = sys.stdin.read() if input_list == STDIO else Path(input_list).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read --input-list {input_list}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--input-list {input_list} is not a text file of paths") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [InputItem(ln, list_entry_rel(ln)) for ln in lines]


def list_entry_rel(entry: str) -> Path:
    """Where a list entry's output goes under -o: its path as written when it is relative and
    stays below the working folder (``a/b.jpg`` -> ``OUT/a/b.jpg``), else its absolute path
    without the root (``/data/a/b.jpg`` -> ``OUT/data/a/b.jpg``). A function of the entry alone,
    so adding a line never moves the other outputs and a --skip-existing resume finds them."""
    rel = Path(os.path.normpath(entry))
    if rel.is_absolute() or rel.parts[0] == os.pardir:
        absolute = Path(os.path.abspath(entry))
        rel = absolute.relative_to(absolute.anchor)
    return rel


def _unique(items: list[InputItem], same_file: list[str]) -> list[InputItem]:
    """First occurrence of each file (by real path), in order; a second name of a file already
    listed goes to ``same_file``. Between a symlink and the file it points to, the file's own name
    is kept (``real.png`` gives ``real_dehazed.png``, not ``link_dehazed.png``)."""
    position: dict[str, int] = {}
    names: set[str] = set()
    unique: list[InputItem] = []
    for it in items:
        key = it.source if it.source == STDIO else os.path.realpath(it.source)
        if key not in position:
            position[key] = len(unique)
            unique.append(it)
        elif it.source not in names:  # the same name twice is no news
            kept = unique[position[key]]
            if Path(kept.source).is_symlink() and not Path(it.source).is_symlink():
                unique[position[key]], it = it, kept
            same_file.append(it.source)
        names.add(it.source)
    return unique


def gather_inputs(inputs: list[str], recursive: bool = False, input_list: str | None = None,
                  own_suffix: str = "", out_dir: str | None = None) -> InputSet:
    """Files, folders, globs, "-" and the lines of an input list -> sorted unique items, plus what
    was left out. Files found in folders and globs whose name carries ``own_suffix`` (the run's
    output suffix, e.g. "_dehazed") are outputs of an earlier run, not inputs: leaving them out is
    what makes a beside-the-input run rerunnable. A file named one by one is an input, unless it
    is the output of another named input (``a_dehazed.png`` beside ``a.png``: what the shell's
    ``*.png`` gives on a rerun). The -o folder ``out_dir`` is not walked (see _add_named)."""
    found = InputSet()
    for raw in inputs:
        _add_named(found, raw, recursive, own_suffix, out_dir)
    if input_list is not None:
        for it in _list_items(input_list):
            if os.path.exists(it.source):
                found.items.append(it)
            else:  # the same verdict for a dry run and a real one
                found.missing.append((it.source, "not found"))
    found.items = _unique(found.items, found.same_file)
    _leave_out_outputs_of_named_inputs(found, own_suffix)
    return found


def _leave_out_outputs_of_named_inputs(found: InputSet, own_suffix: str) -> None:
    """Move to ``own_outputs`` every item ``<stem><own_suffix>.<ext>`` whose source ``<stem>.*``
    (same folder) is an input of this run too."""
    if not own_suffix:
        return
    stems = {(os.path.dirname(os.path.abspath(it.source)), Path(it.source).stem)
             for it in found.items if it.source != STDIO}
    keep = []
    for it in found.items:
        p = Path(it.source)
        if (it.source != STDIO and _carries_suffix(p, own_suffix)
                and (os.path.dirname(os.path.abspath(p)), p.stem[: -len(own_suffix)]) in stems):
            found.own_outputs.append(it.source)
        else:
            keep.append(it)
    found.items = keep


def no_input_message(found: InputSet) -> str:
    """Why a run found nothing to do: the first missing input, or what was left out."""
    if found.missing:
        raw, why = found.missing[0]
        more = f" (and {len(found.missing) - 1} more)" if len(found.missing) > 1 else ""
        return f"input {why}: {raw}{more}"
    notes = []
    if found.own_outputs:
        notes.append(f"{len(found.own_outputs)} file(s) carry the output suffix and were left out")
    if found.subfolders:
        notes.append(f"{len(found.subfolders)} subfolder(s) not read: add --recursive")
    if found.not_images:
        notes.append(f"{len(found.not_images)} file(s) are neither images nor videos")
    return "no input images or videos found" + (f" ({'; '.join(notes)})" if notes else "")


# -- output planning --------------------------------------------------------------------------------

def is_file_target(out: str) -> bool:
    """An -o that names one file: an image or video suffix, not an existing folder, no trailing '/'."""
    return not Path(out).is_dir() and not out.endswith(("/", os.sep)) and _is_output_suffix(Path(out).suffix)


def earlier_output_suffix(opts: DehazeOptions) -> str:
    """The suffix that marks an earlier run's outputs among the inputs: this run's own, or, when
    this run writes into an -o folder without a suffix, the one a beside-the-input run adds by
    default (``_dehazed``), so that ``-o out/`` over a tree that holds such a run does
    not dehaze its outputs again."""
    return output_suffix(opts) or (_BESIDE_SUFFIX if opts.output not in (None, STDIO) and not is_file_target(opts.output)
                                   else "")


def output_suffix(opts: DehazeOptions) -> str:
    """The suffix this run adds to output names ("" when it writes one file or stdout)."""
    if opts.output == STDIO or (opts.output is not None and is_file_target(opts.output)):
        return ""
    if opts.output is None:
        return opts.suffix if opts.suffix is not None else _BESIDE_SUFFIX
    return opts.suffix or ""


def _requested_ext(opts: DehazeOptions) -> str:
    ext = (opts.ext or "auto").lower().lstrip(".")
    if ext != "auto" and ext not in EXT_FORMAT:
        raise UsageError(f"--ext {opts.ext}: use auto, {WRITABLE}")
    if opts.overwrite and opts.skip_existing:
        raise UsageError("--overwrite and --skip-existing exclude each other")
    return ext


def _stdio_job(items: list[InputItem], opts: DehazeOptions, ext: str) -> Job | None:
    """The one job of a stdin/stdout run, or None for a run on files."""
    has_stdin = any(it.source == STDIO for it in items)
    if opts.output == STDIO and any(it.source != STDIO and is_video_name(it.source) for it in items):
        raise UsageError("-o - (stdout) takes photos only; write a video to a file: -o out.mp4")
    if has_stdin and len(items) > 1:
        raise UsageError("'-' (stdin) cannot be combined with other inputs")
    if opts.output != STDIO and not (opts.output is None and has_stdin):
        return None
    if opts.engine.keep_transmission:
        raise UsageError("--save-transmission writes files beside the output: give -o FILE, not stdout")
    if len(items) != 1:
        raise UsageError("-o - (stdout) takes exactly one input")
    return Job(items[0], STDIO, None if ext == "auto" else EXT_FORMAT[ext])


def _writes_a_folder(out: str, opts: DehazeOptions, n_given: int) -> bool:
    """Whether -o is a folder (False: one file). One rule, whatever the number of inputs (so that a
    script behaves the same when its list holds one file): a path with an image suffix names a
    file, anything else a folder. An image suffix the writer cannot write is an error."""
    suffix = Path(out).suffix.lower()
    if suffix in IMAGE_SUFFIXES | FOREIGN_IMAGE_SUFFIXES and not is_file_target(out) and not Path(out).is_dir() \
            and not out.endswith(("/", os.sep)):
        raise UsageError(f"-o {out}: odcr cannot write {suffix} images; use {WRITABLE} "
                         f"(e.g. -o {Path(out).with_suffix('.png')}), or a name without a suffix for a folder")
    if not is_file_target(out):
        return True
    if n_given > 1:
        raise UsageError(f"-o {out} names one file but {n_given} inputs were given; "
                         f"write several into a folder: -o {Path(out).with_suffix('')}/")
    return False


def _auto_ext(src: Path) -> str:
    """The output suffix of ``--ext auto``: a photo keeps its format (else PNG); a video keeps its
    container where H.264, the default codec, fits in it (mp4, mov, mkv, m4v), else MP4."""
    s = src.suffix.lower().lstrip(".")
    if is_video_name(src):
        return src.suffix.lstrip(".") if s in ("mp4", "mov", "mkv", "m4v") else "mp4"
    return src.suffix.lstrip(".") if s in EXT_FORMAT else "png"


def _named_job(it: InputItem, out: str | None, ext: str, suffix: str) -> Job:
    """An output beside the input (no -o) or mirrored under an -o folder."""
    src = Path(it.source)
    if it.source != STDIO and is_video_name(src):  # --ext names a photo format: videos keep theirs
        ext = "auto"
    name = f"{it.rel.stem}{suffix}.{ext if ext != 'auto' else _auto_ext(src)}"
    target = (Path(out) / it.rel.parent / name) if out is not None else src.with_name(name)
    return Job(it, str(target), None if ext == "auto" else EXT_FORMAT[ext])


def _file_job(it: InputItem, target: Path) -> Job:
    """The job of ``-o FILE``: a photo into an image file, a video into a video file."""
    video_in = it.source != STDIO and is_video_name(it.source)
    video_out = target.suffix.lower() in VIDEO_SUFFIXES
    if video_in != video_out:
        what = "a video" if video_in else "a photo"
        raise UsageError(f"-o {target} cannot hold {what} ({it.source}); give -o a "
                         f"{'video suffix such as .mp4' if video_in else 'photo suffix such as .png'}")
    return Job(it, str(target), None if video_out else format_for_ext(target.suffix))


def plan_outputs(items: list[InputItem], opts: DehazeOptions, n_given: int | None = None) -> list[Job]:
    """Decide every output path; refuse unsafe plans before any work starts. ``n_given``: the
    inputs named before sharding, missing ones included (default: ``len(items)``)."""
    ext = _requested_ext(opts)
    stdio = _stdio_job(items, opts, ext)
    if stdio is not None:
        return [stdio]
    out = opts.output
    n_given = max(len(items), n_given or 0)
    if out is not None and not _writes_a_folder(out, opts, n_given):
        target = Path(out)
        jobs = [_file_job(it, target) for it in items]
    else:
        suffix = output_suffix(opts)
        jobs = [_named_job(it, out, ext, suffix) for it in items]
    check_safety(jobs, opts)
    return jobs


def check_safety(jobs: list[Job], opts: DehazeOptions) -> None:
    """No output replaces an input or another output; existing outputs need --overwrite or --skip-existing."""
    inputs = {os.path.realpath(j.item.source): j.item.source for j in jobs}
    seen: dict[str, str] = {}
    for j in jobs:
        for output in job_outputs(j, opts):
            real = os.path.realpath(output)
            if real in inputs:
                raise UsageError(f"refusing to overwrite the input {inputs[real]} (output {output}); "
                                 "choose another -o, --suffix or --ext")
            if real in seen:
                raise UsageError(f"{seen[real]} and {j.item.source} would both be written to {output}; "
                                 "nothing was processed")
            seen[real] = j.item.source
    if not opts.overwrite and not opts.skip_existing:
        existing = [o for j in jobs for o in job_outputs(j, opts) if os.path.exists(o)]
        if existing:
            raise UsageError(f"{len(existing)} output(s) already exist (first: {existing[0]}); "
                             "pass --overwrite to replace them or --skip-existing to keep them")


def job_outputs(job: Job, opts: DehazeOptions) -> list[str]:
    """Every file a job writes: its output, and with --save-transmission (photos) t and -ln t."""
    extra = transmission_paths(job.output) if opts.engine.keep_transmission and not job.video and job.output != STDIO else []
    return [job.output, *extra]


def check_writable(jobs: list[Job], opts: DehazeOptions) -> None:
    """Every folder that will receive a file can be written: found now, not after the work."""
    folders = {str(Path(j.output).parent) for j in jobs if j.output != STDIO}
    if opts.json_report not in (None, STDIO):
        if Path(opts.json_report).is_dir():
            raise UsageError(f"--json {opts.json_report} is a folder; name the report file to write")
        folders.add(str(Path(opts.json_report).parent))
    for folder in sorted(folders):
        problem = writable_dir_problem(folder)
        if problem:
            raise UsageError(f"output folder {folder} cannot be written ({problem}); nothing was processed")


def plan_run(opts: DehazeOptions, shard: tuple[int, int] | None) -> Plan:
    """Inputs -> this shard's jobs, every check done; raises :class:`UsageError` when nothing can start."""
    out_dir = opts.output if opts.output not in (None, STDIO) and not is_file_target(opts.output) else None
    found = gather_inputs(opts.inputs, opts.recursive, opts.input_list, earlier_output_suffix(opts), out_dir)
    if not found.items:
        raise UsageError(no_input_message(found))
    items = shard_items(found.items, shard)
    # a missing input has no relative path: its name decides its shard
    missing = [(raw, why) for raw, why in found.missing
               if shard is None or in_shard(Path(Path(raw).name), shard)]
    jobs = plan_outputs(items, opts, len(found.items) + len(found.missing)) if items else []
    kept = {j.output for j in jobs if opts.skip_existing and j.output != STDIO and os.path.exists(j.output)}
    plan = Plan(found, missing, jobs, kept)
    check_writable(plan.todo, opts)
    return plan
