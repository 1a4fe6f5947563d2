"""Building the battery's probe (``probe.c``): static, compiled on the host on first use.

Cached as ``<state_dir>/bin/isobench-escape-<hash>`` by :mod:`isobench.hostsys.cbuild`, as the
container helper is (keyed by the source and flags, so an edited source never runs a stale binary).
Static, because the same file runs in every sandbox: a container's image, a guest, the host.
"""

from __future__ import annotations

from pathlib import Path

from isobench.errors import WorkloadError
from isobench.hostsys.cbuild import CProgram, ensure_built

__all__ = ["PROBE", "SOURCE", "ensure_probe"]

SOURCE = Path(__file__).with_name("probe.c")
PROBE = CProgram(
    name="isobench-escape",
    source=SOURCE,
    cflags=("-O2", "-Wall"),
    what="the escape probe",
    error=WorkloadError,
)


def ensure_probe(state_dir: Path) -> Path:
    """Path of a built probe for the current source, compiling it if needed."""
    return ensure_built(PROBE, state_dir)
