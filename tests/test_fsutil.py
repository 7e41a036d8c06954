"""Atomic writes: complete files or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from odcr_cli.files.fsutil import atomic_output, atomic_path


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "out.jpg"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as fh:
            fh.write(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.jpg"]


def test_outputs_get_umask_permissions_not_mkstemp_0600(tmp_path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    with atomic_output(tmp_path / "a.bin") as fh:
        fh.write(b"x")
    with atomic_path(tmp_path / "b.png") as p:
        p.write_bytes(b"y")
    for name in ("a.bin", "b.png"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o666 & ~mask, oct(mode)


def test_writable_dir_problem_creates_nothing(tmp_path) -> None:
    from odcr_cli.files.fsutil import writable_dir_problem

    assert writable_dir_problem(tmp_path / "new" / "deeper") is None
    assert os.listdir(tmp_path) == []  # judged by the existing ancestor; no folder, no probe left
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in writable_dir_problem(tmp_path / "file" / "sub")
