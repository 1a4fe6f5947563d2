"""The bwrap command line of one exec, as a pure function of the sandbox's settings."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from isobench.drivers.capabilities import VOLUME_MOUNT
from isobench.oci import DOCKER_DEFAULT_CAPABILITIES

__all__ = ["CAPABILITIES", "WORKDIR", "BwrapSettings", "bwrap_argv", "parse_version"]

#: Writable directory inside every bwrap sandbox, on the overlay (the sandbox's root storage).
WORKDIR = "/work"
ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: The same capability set the runc driver gives (Docker's default), so that privileges are not a
#: difference between the two reference drivers; bwrap run as root would otherwise keep them all.
CAPABILITIES: tuple[str, ...] = DOCKER_DEFAULT_CAPABILITIES


@dataclass(frozen=True)
class BwrapSettings:
    """Everything about a sandbox that shapes its bwrap invocations."""

    binary: str
    root: Path
    hostname: str
    share_net: bool
    volume: Path | None = None
    #: CPUs to pin to with ``taskset`` (bwrap has no cgroups, affinity is what it can honour).
    cpuset: tuple[int, ...] | None = None
    taskset: str | None = None


def bwrap_argv(
    s: BwrapSettings,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> list[str]:
    cmd: list[str] = []
    if s.cpuset and s.taskset:
        cmd += [s.taskset, "--cpu-list", ",".join(str(c) for c in sorted(s.cpuset))]
    cmd += [
        s.binary,
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    if not s.share_net:
        cmd.append("--unshare-net")
    cmd += ["--hostname", s.hostname]
    cmd += ["--bind", str(s.root), "/", "--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys"]
    if s.volume is not None:
        cmd += ["--bind", str(s.volume), VOLUME_MOUNT]
    cmd += ["--cap-drop", "ALL"]
    for cap in CAPABILITIES:
        cmd += ["--cap-add", cap]
    cmd += ["--chdir", WORKDIR, "--clearenv", "--setenv", "PATH", ENV_PATH, "--setenv", "HOME", "/root"]
    for key, value in (env or {}).items():
        cmd += ["--setenv", key, value]
    cmd += ["--", *argv]
    return cmd


_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``bubblewrap 0.8.0`` -> (0, 8, 0)."""
    m = _VERSION.search(text)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
