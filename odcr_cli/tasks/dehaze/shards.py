"""``--shard i/N``: a deterministic slice of a run's inputs, by a hash of each relative path, so
that the same file always lands in the same shard whatever the machine and the folder's other files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from odcr_cli.errors import UsageError

if TYPE_CHECKING:
    from odcr_cli.tasks.dehaze.plan import InputItem


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    try:
        i, n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise UsageError(f"--shard expects i/N (e.g. 0/4), got {shard!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {shard}: need N >= 1 and 0 <= i < N (i counts from 0)")
    return i, n


def in_shard(rel: Path, shard: tuple[int, int]) -> bool:
    i, n = shard
    return int(hashlib.sha1(rel.as_posix().encode()).hexdigest(), 16) % n == i


def shard_items(items: list[InputItem], shard: tuple[int, int] | None) -> list[InputItem]:
    """Deterministic slice by a hash of the relative path: the same file always lands in the same
    shard, whatever the machine and whatever else is in the folder."""
    if shard is None:
        return items
    return [it for it in items if in_shard(it.rel, shard)]
