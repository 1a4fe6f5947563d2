"""How a driver names the host resources it makes, so ``isobench gc`` can find a dead run's.

``<prefix><run>-<name>`` (``isobench-runc-<run>-<name>``), with anything a path, a cgroup or a
hostname cannot hold folded to ``-``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ResourceNames", "hostname", "safe", "safe_chars"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe(text: str) -> str:
    return _UNSAFE.sub("-", text)


_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_.-]")


def safe_chars(text: str) -> str:
    """``text`` with each character a path or a guest's name cannot hold made ``_``, one for one
    (not folded as :func:`safe` does): how the guest drivers, vm and qemu, have always named their
    guests, so gc still matches the names older runs made."""
    return _UNSAFE_CHAR.sub("_", text)


def hostname(name: str) -> str:
    """A sandbox's hostname: its name made safe, at most 63 characters (one DNS label)."""
    return safe(name)[:63] or "sandbox"


@dataclass(frozen=True)
class ResourceNames:
    """The names of one driver's resources, all starting with ``prefix`` (``isobench-runc-``)."""

    prefix: str

    def of(self, run_id: str, name: str) -> str:
        """``<prefix><run>-<name>``: the name of sandbox ``name``'s resources in run ``run_id``."""
        return f"{self.prefix}{safe(run_id)}-{safe(name)}"

    def owned(self, name: str, run_id: str | None) -> bool:
        """Whether a resource name belongs to this driver (and to ``run_id`` when given)."""
        if run_id is None:
            return name.startswith(self.prefix)
        return name.startswith(f"{self.prefix}{safe(run_id)}-")
