"""Many sandboxes at once, and the host-side readings the density and limits workloads share.

Private to the workload package. A :class:`Fleet` starts sandboxes through the runner's factory
(``WorkloadContext.sandbox``), one after another or from a thread pool, and owns every one it
started until :meth:`Fleet.close`, which runs on every path: a create that fails midway, a cell
deadline, Ctrl-C. The runner still destroys whatever a workload left open when the cell ends, so a
sandbox is never lost even if this module has a bug.

Thread safety of ``driver.create``: each driver claims its names and directories atomically
(mkdir) or from the sandbox's unique name, and the lazy per-driver probes (accelerator, machine
type, libvirt connection, container helper) run on the first, sequential, create. The runner's
factory is safe to call from threads when every call passes its own ``name`` (its counter only
makes names unique). Drivers listed in :data:`SERIAL_CREATE` are started one at a time even in the
concurrent mode, and the samples say so.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from isobench.drivers.base import Driver, Sandbox
from isobench.errors import IsobenchError
from isobench.hostsys.procstat import stat_busy
from isobench.periodic import periodically
from isobench.procs import cpu_seconds, run_command, stat_fields
from isobench.signals import shielded
from isobench.workloads.base import SandboxFactory

log = logging.getLogger(__name__)

__all__ = [
    "SERIAL_CREATE",
    "Fleet",
    "HostWatch",
    "KsmSwitch",
    "host_busy_seconds",
    "is_guest",
    "mem_available",
    "process_cpu_seconds",
]

#: Drivers whose ``create`` must not run concurrently (none known today: every driver was checked).
SERIAL_CREATE: frozenset[str] = frozenset()
#: Threads of the concurrent start, at most: enough for every step of the default sizes.
MAX_WORKERS = 128


def is_guest(driver: Driver) -> bool:
    """Whether the driver boots a guest kernel (its sandboxes cost a guest's RAM)."""
    return driver.capabilities.guest


def qemu_pid(sandbox: Sandbox) -> int | None:
    """The guest's qemu process on the host, when the sandbox is a guest that knows it (the
    protocol has no accessor for it: GuestSandbox.qemu_pid, of both guest drivers)."""
    fn = getattr(sandbox, "qemu_pid", None)
    if not callable(fn):
        return None
    pid = fn()
    return pid if isinstance(pid, int) else None


def mem_available(proc_root: Path = Path("/proc")) -> int:
    """The host's MemAvailable in bytes."""
    for line in (proc_root / "meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise IsobenchError(f"{proc_root}/meminfo has no MemAvailable")


def host_busy_seconds(proc_root: Path = Path("/proc")) -> float:
    """CPU seconds the whole host has spent busy (not idle, not iowait) since boot."""
    parsed = stat_busy((proc_root / "stat").read_text())
    if parsed is None:
        raise IsobenchError(f"{proc_root}/stat has no aggregate cpu line")
    return parsed[0] / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int, proc_root: Path = Path("/proc")) -> float | None:
    """utime + stime of one process (all its threads), or None when it is gone."""
    fields = stat_fields(pid, proc_root)
    return None if fields is None else cpu_seconds(fields)


def sandbox_cpu_seconds(sandbox: Sandbox, proc_root: Path = Path("/proc")) -> float | None:
    """CPU time the host accounts to one sandbox, read without running anything inside it (a
    guest's ``stats()`` execs ``cat`` in the guest, which would count as its idle load)."""
    pid = qemu_pid(sandbox)
    if pid is not None:
        return process_cpu_seconds(pid, proc_root)
    try:
        return sandbox.stats().cpu_seconds
    except IsobenchError:
        return None


@dataclass
class Fleet:
    """Sandboxes started for one measurement, each owned until :meth:`close`."""

    factory: SandboxFactory
    prefix: str
    #: Start one at a time even when asked to start concurrently (a driver in SERIAL_CREATE).
    serial: bool = False
    _open: list[tuple[AbstractContextManager[Sandbox], Sandbox]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __len__(self) -> int:
        return len(self._open)

    @property
    def sandboxes(self) -> list[Sandbox]:
        with self._lock:
            return [sb for _, sb in self._open]

    def start_one(self) -> float:
        """Start one more sandbox; returns the seconds its create took (until ready)."""
        with self._lock:
            name = f"{self.prefix}-{next(self._seq)}"
        cm = self.factory(name=name)
        t0 = time.monotonic()
        sandbox = cm.__enter__()
        took = time.monotonic() - t0
        with self._lock:
            self._open.append((cm, sandbox))
        return took

    def start_concurrently(self, n: int) -> list[float]:
        """Start ``n`` sandboxes at once; raises the first failure after every started one is
        owned (the pool is drained, unstarted ones cancelled, before anything propagates)."""
        if self.serial or n == 1:
            return [self.start_one() for _ in range(n)]
        pool = ThreadPoolExecutor(max_workers=min(n, MAX_WORKERS), thread_name_prefix="isobench-density")
        try:
            futures = [pool.submit(self.start_one) for _ in range(n)]
            return [f.result() for f in futures]
        finally:
            with shielded():
                pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Destroy every sandbox started, newest first; safe to call twice."""
        with shielded():
            while True:
                with self._lock:
                    if not self._open:
                        return
                    cm, sandbox = self._open.pop()
                try:
                    cm.__exit__(None, None, None)
                except Exception as err:  # the runner records teardown errors; go on with the rest
                    log.error("teardown of %s failed: %s", sandbox.name, err)


@dataclass
class HostWatch:
    """How long a trivial host command takes while something runs in a sandbox: the host stays
    responsive when the worst latency stays small."""

    interval: float = 0.1
    latencies: list[float] = field(default_factory=list)
    failures: int = 0

    @contextlib.contextmanager
    def running(self) -> Iterator[HostWatch]:
        with periodically(self._probe, self.interval, name="isobench-host-watch", join_timeout=15.0):
            yield self

    def _probe(self) -> None:
        t = time.monotonic()
        try:
            run_command(["true"], timeout=10.0)
            self.latencies.append(time.monotonic() - t)
        except IsobenchError:
            self.failures += 1

    @property
    def worst(self) -> float | None:
        return max(self.latencies) if self.latencies else None


class KsmSwitch:
    """Kernel samepage merging on for a measurement, restored on every path (``with``).

    ``sys_root`` is the sysfs mount (a fake tree in tests). ``pages_to_scan`` speeds ksmd up for the
    measurement (its default, 100 pages every 20 ms, needs tens of seconds per guest). Every value
    written is restored, even when the measurement fails, is interrupted, or entering fails halfway.
    KSM is host-wide: while it runs it also merges other processes' mergeable memory (every qemu's).
    """

    def __init__(self, sys_root: Path = Path("/sys"), pages_to_scan: int | None = None) -> None:
        self._dir = sys_root / "kernel" / "mm" / "ksm"
        self._wanted = [("pages_to_scan", str(pages_to_scan))] if pages_to_scan else []
        self._wanted.append(("run", "1"))
        self._saved: list[tuple[str, str]] = []

    @property
    def available(self) -> bool:
        return (self._dir / "run").exists()

    def __enter__(self) -> KsmSwitch:
        try:
            for key, value in self._wanted:
                previous = (self._dir / key).read_text().strip()
                (self._dir / key).write_text(f"{value}\n")
                self._saved.append((key, previous))
        except OSError as err:
            self.__exit__()
            raise IsobenchError(f"cannot turn KSM on ({self._dir}): {err}; run as root") from err
        return self

    def __exit__(self, *exc: object) -> None:
        with shielded():
            while self._saved:
                key, previous = self._saved.pop()
                try:
                    (self._dir / key).write_text(f"{previous}\n")
                except OSError as err:
                    log.error("could not restore %s/%s to %s: %s", self._dir, key, previous, err)

    def counters(self) -> dict[str, int]:
        """pages_shared (pages KSM keeps once) and pages_sharing (mappings that point at them)."""
        out: dict[str, int] = {}
        for key in ("pages_shared", "pages_sharing"):
            with contextlib.suppress(OSError, ValueError):
                out[key] = int((self._dir / key).read_text().strip())
        return out


def sum_keys(stats: Sequence[Mapping[str, float]], keys: Sequence[str]) -> dict[str, float]:
    """Per key, the sum over sandboxes that report it (a key missing from one is left out)."""
    out: dict[str, float] = {}
    for key in keys:
        values = [float(s[key]) for s in stats if key in s]
        if values and len(values) == len(stats):
            out[key] = sum(values)
    return out
