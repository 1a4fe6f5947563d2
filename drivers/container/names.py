"""How every resource of a container is named, so that gc() can find it again by name alone.

cgroups and directories are ``isobench-<run>-ctr-<sandbox>-<seq>``; veth names are limited to 15
characters, so they carry a 6-hex digest of the run id instead: ``isob<digest><seq36><h|c>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from isobench.drivers.base import RESOURCE_PREFIX
from isobench.hostsys.links import MAX_IFNAME, run_tag

__all__ = ["VETH_PREFIX", "ContainerNames", "names_for", "run_prefix", "sanitize", "veth_run_prefix"]

#: Every veth this driver creates starts with this (the brief asks for "isob" in the name).
VETH_PREFIX = "isob"
_KIND = "ctr"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def sanitize(text: str, limit: int = 64) -> str:
    """A name safe as a cgroup directory, a file name and (truncated) a hostname."""
    cleaned = _UNSAFE.sub("_", text).strip("._-") or "x"
    return cleaned[:limit]


def run_prefix(run_id: str | None) -> str:
    """Prefix of every cgroup/dir name of ``run_id``'s containers (all runs' when None)."""
    if run_id is None:
        return f"{RESOURCE_PREFIX}-"
    return f"{RESOURCE_PREFIX}-{sanitize(run_id)}-{_KIND}-"


def matches(name: str, run_id: str | None) -> bool:
    """Whether ``name`` is one of this driver's resources (of ``run_id``, or of any run)."""
    if run_id is not None:
        return name.startswith(run_prefix(run_id))
    return name.startswith(f"{RESOURCE_PREFIX}-") and f"-{_KIND}-" in name


def run_digest(run_id: str) -> str:
    return run_tag(run_id)


def veth_run_prefix(run_id: str | None) -> str:
    return VETH_PREFIX if run_id is None else VETH_PREFIX + run_digest(run_id)


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@dataclass(frozen=True)
class ContainerNames:
    """Names of one container's resources."""

    ident: str
    hostname: str
    veth_host: str
    veth_peer: str


def names_for(run_id: str, sandbox: str, seq: int) -> ContainerNames:
    ident = f"{run_prefix(run_id)}{sanitize(sandbox, 80)}-{seq}"
    tag = _base36(seq % 36**4)
    veth = f"{veth_run_prefix(run_id)}{tag}"
    host, peer = f"{veth}h", f"{veth}c"
    assert len(host) <= MAX_IFNAME, host
    return ContainerNames(ident=ident, hostname=sanitize(sandbox, 63), veth_host=host, veth_peer=peer)
