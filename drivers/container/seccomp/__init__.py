"""The ``container`` driver's seccomp profile: Docker's default allowlist kept as data
(``default.json``), resolved per capability set and compiled once to raw BPF for the helper."""

from __future__ import annotations

from isobench.drivers.container.seccomp.bpf import compile_filter, run
from isobench.drivers.container.seccomp.cache import filter_path
from isobench.drivers.container.seccomp.profile import Resolved, relaxation_names, resolve

__all__ = ["Resolved", "compile_filter", "filter_path", "relaxation_names", "resolve", "run"]
