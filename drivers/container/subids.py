"""Subordinate id ranges for user-namespace containers whose root is not the host's root.

``subids`` is ``START:COUNT`` (uids and gids alike) or the name of a user with ranges in
``/etc/subuid`` and ``/etc/subgid`` (the first range of each, as newuidmap would take it).
Container ids 0..COUNT-1 become host ids START..START+COUNT-1: the container's root is an
unprivileged host uid that owns nothing outside the container.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from isobench.errors import UsageError

__all__ = ["SubIds", "parse_subids"]

_MAX_ID = 2**32 - 2  # (uid_t)-1 is "no id"


@dataclass(frozen=True)
class SubIds:
    uid_start: int
    gid_start: int
    count: int

    @property
    def uid_map(self) -> str:
        return f"0 {self.uid_start} {self.count}"

    @property
    def gid_map(self) -> str:
        return f"0 {self.gid_start} {self.count}"

    def __str__(self) -> str:
        if self.uid_start == self.gid_start:
            return f"{self.uid_start}:{self.count}"
        return f"uids {self.uid_start}:{self.count}, gids {self.gid_start}:{self.count}"


def _range(start: int, count: int, where: str) -> tuple[int, int]:
    if start <= 0 or count <= 0 or start + count - 1 > _MAX_ID:
        raise UsageError(f"{where}: subids must start above 0 with a positive count within 32-bit ids")
    return start, count


def _lookup(user: str, table: Path, where: str) -> tuple[int, int]:
    try:
        lines = table.read_text().splitlines()
    except OSError as err:
        raise UsageError(f"{where}: cannot read {table} for subids user {user!r}: {err.strerror}") from err
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] == user and parts[1].isdigit() and parts[2].isdigit():
            return _range(int(parts[1]), int(parts[2]), where)
    raise UsageError(f"{where}: user {user!r} has no range in {table}; add one (usermod --add-subuids)")


def parse_subids(value: str, where: str, etc: Path = Path("/etc")) -> SubIds:
    start, sep, count = value.partition(":")
    if sep:
        if not (start.isdigit() and count.isdigit()):
            raise UsageError(f"{where}: subids {value!r} must be START:COUNT (e.g. 100000:65536) or a user")
        s, c = _range(int(start), int(count), where)
        return SubIds(s, s, c)
    if not value:
        raise UsageError(f"{where}: subids must be START:COUNT (e.g. 100000:65536) or a user name")
    uid_start, uid_count = _lookup(value, etc / "subuid", where)
    gid_start, gid_count = _lookup(value, etc / "subgid", where)
    return SubIds(uid_start, gid_start, min(uid_count, gid_count))
