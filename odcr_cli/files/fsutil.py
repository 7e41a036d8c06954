"""Atomic file writes: write a temporary file beside the target, fsync, then rename.

An interrupted run therefore never leaves a half-written image or checkpoint behind, and
"the file exists" always means "the file is complete".
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; finished outputs get the permissions a plain open() would give
_FILE_MODE = 0o666 & ~_current_umask()


TEMP_MARK = "odcr-"  # in every temporary file's name, so that a later run knows its own
# what atomic_path names the temporary file of <stem><suffix>: .<stem>.odcr-<random>.tmp<suffix>
_TEMP_NAME = re.compile(rf"\.(?P<stem>.*)\.{TEMP_MARK}[^.]*\.tmp(?P<suffix>(\.[^.]*)?)")


def remove_stale_temps(paths: Iterable[str | os.PathLike]) -> int:
    """Delete the temporary files that :func:`atomic_path` left next to any of ``paths`` when a
    process writing it was killed (kill -9 runs no cleanup): one listing per folder, whatever the
    number of paths. Only for targets that no other process is writing (a dehaze run's outputs:
    shards never share one). Returns how many were removed."""
    by_folder: dict[Path, set[str]] = {}
    for path in paths:
        target = Path(path)
        by_folder.setdefault(target.parent, set()).add(target.name)
    removed = 0
    for folder, names in by_folder.items():
        for stale in folder.glob(f".*.{TEMP_MARK}*.tmp*"):
            match = _TEMP_NAME.fullmatch(stale.name)
            if match and match["stem"] + match["suffix"] in names:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
                    removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for libraries that insist on a file name
    (and pick the format from its suffix); it replaces ``path`` when the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.{TEMP_MARK}", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        yield fh


def writable_dir_problem(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created in ``folder`` (None: they can), found by creating and removing a
    temporary file there. A folder that does not exist yet is judged by its nearest existing
    ancestor, where it would be created; nothing is created for good."""
    probe = Path(folder)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".odcr-write-check.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return f"cannot create files in {probe}: {exc.strerror or exc}"
    return None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
