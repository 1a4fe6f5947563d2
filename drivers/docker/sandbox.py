"""One Docker container as a Sandbox: the spec mapped to a container, exec through the exec API,
stats from its cgroup, ``remove(force)`` as teardown.

Phases: ``create`` (``POST /containers/create``), ``start`` (``POST /containers/<id>/start`` and the
inspect that gives the init's pid and the address), ``ready`` (a point: the init runs), ``exec``
(the first ``true`` round trip, made inside create() so a broken image fails there), ``remove``
inside the enclosing ``destroy``. Once destroyed, the daemon's own phases (``daemon_create``,
``daemon_start`` split into ``daemon_network`` and ``daemon_runtime``, ``daemon_die``,
``daemon_destroy``; see events.py) are added from one bounded events query, made on the first look
at ``phases`` after destroy: no timed interval (not even the startup workload's outer bracket)
contains it, and workloads that never look do not pay for it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from isobench.drivers.base import ExecRequest, ExecResult, PhaseClock, SandboxBase, SandboxSpec, SandboxStats
from isobench.drivers.capabilities import VOLUME_MOUNT
from isobench.drivers.docker.engine import ContainerConfig, Engine
from isobench.drivers.docker.events import ClockOffset, daemon_phases, event_times
from isobench.drivers.docker.names import LABEL_RUN, LABEL_SANDBOX, container_name
from isobench.drivers.docker.stats import ContainerCgroup, cgroup_of, parse_api_stats
from isobench.errors import CellTimeout, SandboxError
from isobench.model import PhaseTiming
from isobench.procs import kill_tree

__all__ = ["INIT_ARGS", "WORKDIR", "DockerSandbox", "container_config", "naming_a_dead_daemon"]

#: Writable directory inside every sandbox, in the container's overlay2 upper layer.
WORKDIR = "/work"
#: The idle init, as for runc: INT_MAX seconds (busybox and coreutils sleep both take it).
INIT_ARGS = ("sleep", "2147483647")
_MIB = 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
#: How ``docker exec`` says the runtime could not start the process (exit 126 or 127 follows).
_EXEC_FAILED = "OCI runtime exec failed"
#: Events are asked for from this long before the create request: the daemon's ``since`` is
#: inclusive, but a margin costs next to nothing (events of other objects are dropped by id).
_SINCE_MARGIN_NS = 1_000_000_000

log = logging.getLogger(__name__)


def container_config(
    spec: SandboxSpec,
    *,
    image: str,
    network: str | None,
    cgroup_parent: str,
    io_disks: Sequence[str] = (),
) -> ContainerConfig:
    """The container for ``spec``: the same limits every container driver sets (memory without swap,
    a CPU quota of ``vcpus``, the cpuset, the pids limit, the disk bandwidth on ``io_disks``: device
    paths), labelled with the run id."""
    if spec.io_bps is not None and not io_disks:
        raise SandboxError(f"sandbox {spec.name}: io_bps needs the disks to throttle")
    memory = spec.memory_mib * _MIB
    return ContainerConfig(
        name=container_name(spec.run_id, spec.name),
        image=image,
        command=INIT_ARGS,
        hostname=_UNSAFE.sub("-", spec.name)[:63].strip("-") or "sandbox",
        working_dir=WORKDIR,
        labels={LABEL_RUN: spec.run_id, LABEL_SANDBOX: spec.name},
        cgroup_parent=cgroup_parent,
        cpuset_cpus=",".join(str(c) for c in sorted(spec.cpuset)) if spec.cpuset else None,
        nano_cpus=round((spec.cpu_quota if spec.cpu_quota is not None else spec.vcpus) * 1_000_000_000),
        mem_limit=memory,
        memswap_limit=memory,
        pids_limit=spec.pids_limit,
        binds={str(spec.volume): VOLUME_MOUNT} if spec.volume is not None else {},
        network=network if spec.network and network else "none",
        device_bps=tuple((d, spec.io_bps) for d in io_disks) if spec.io_bps is not None else (),
    )


#: How long a daemon that stopped answering gets to be seen dead (its process reaped) before the
#: client's own error is what the user reads.
DYING_GRACE_S = 2.0


@contextlib.contextmanager
def naming_a_dead_daemon(death_note: Callable[[], str], grace: float = DYING_GRACE_S) -> Iterator[None]:
    """A SandboxError raised while the daemon is dead becomes ``death_note()``'s words (why it
    died), not the client's "connection refused". When the daemon did not answer at all, it may
    be dying still (killed, its socket gone, its process not yet reaped): it gets ``grace``
    seconds to be seen dead. Other errors of a live daemon are raised at once, as they were."""
    try:
        yield
    except SandboxError as err:
        note = death_note()
        if not note and _unanswered(err):
            end = time.monotonic() + grace
            while not note and time.monotonic() < end:
                time.sleep(0.02)
                note = death_note()
        if note:
            raise SandboxError(note) from err
        raise


def _unanswered(err: BaseException) -> bool:
    """Whether ``err`` came from a daemon that did not answer (no connection, or one cut)."""
    cause = err.__cause__
    if isinstance(cause, ConnectionError | FileNotFoundError):
        return True
    try:
        import requests.exceptions
    except ImportError:
        return False
    return isinstance(cause, requests.exceptions.ConnectionError)


class DockerSandbox(SandboxBase):
    """One container. Owns it from create until ``remove``."""

    kind = "docker sandbox"

    def __init__(
        self,
        spec: SandboxSpec,
        clock: PhaseClock,
        *,
        engine: Engine,
        config: ContainerConfig,
        timeout: float,
        death_note: Callable[[], str] = lambda: "",
    ) -> None:
        super().__init__(spec, clock, workdir=WORKDIR)
        #: Why the daemon is gone, when it is: a dead daemon is named, not "connection refused".
        self._death_note = death_note
        self._engine = engine
        self._config = config
        self._timeout = timeout
        self._id: str | None = None
        self._pid: int | None = None
        self._cgroup: ContainerCgroup | None = None
        self._offset: ClockOffset | None = None
        self._daemon_read = False

    @property
    def phases(self) -> Sequence[PhaseTiming]:
        """The client's phases; after destroy also the daemon's (read here, once: see the module doc)."""
        if self._destroyed and not self._daemon_read:
            self._daemon_read = True
            self._add_daemon_phases()
        return super().phases

    @property
    def container_id(self) -> str | None:
        return self._id

    @property
    def init_pid(self) -> int | None:
        return self._pid

    def _exec(self, req: ExecRequest) -> ExecResult:
        argv, timeout, env, stdin = req.argv, req.timeout, req.env, req.stdin
        if self._id is None:
            raise SandboxError(f"docker sandbox {self.name} is not running; create it again")
        engine = self._engine
        start = time.monotonic_ns()
        with naming_a_dead_daemon(self._death_note):
            exec_id = engine.exec_create(
                self._id, argv, env=env or {}, workdir=WORKDIR, stdin=stdin is not None
            )
            try:
                out = engine.exec_attach(exec_id, stdin=stdin, timeout=timeout)
            except CellTimeout:
                self._kill_exec(exec_id)
                raise
            state = engine.exec_inspect(exec_id)
        end = time.monotonic_ns()
        code = state.get("ExitCode")
        stdout = out.stdout.decode(errors="replace")
        stderr = out.stderr.decode(errors="replace")
        if not isinstance(code, int) or state.get("Running"):
            raise SandboxError(
                f"docker exec of {argv[0]!r} in {self.name} gave no exit code ({state!r:.200})"
            )
        if code in (126, 127) and _EXEC_FAILED in stdout + stderr:
            line = next(ln for ln in (stdout + stderr).splitlines() if _EXEC_FAILED in ln)
            raise SandboxError(f"cannot run {argv[0]!r} in docker sandbox {self.name}: {line.strip()}")
        return ExecResult(tuple(argv), code, stdout, stderr, start, end)

    def _kill_exec(self, exec_id: str) -> None:
        """A timed-out exec's process lives on in the container: kill it by its host pid, and what
        it started (fio's job processes leave its session)."""
        with contextlib.suppress(SandboxError):
            pid = self._engine.exec_inspect(exec_id).get("Pid")
            if isinstance(pid, int) and pid > 0:
                kill_tree(pid)

    def stats(self) -> SandboxStats:
        if self._destroyed or self._pid is None:
            return SandboxStats()
        if self._cgroup is None:
            self._cgroup = cgroup_of(self._pid)
        return SandboxStats.from_dict(self._cgroup.stats())

    def api_stats(self) -> SandboxStats:
        """The same figures from the Engine's stats API (slower: the daemon samples for ~1 s)."""
        if self._id is None:
            return SandboxStats()
        return SandboxStats.from_dict(parse_api_stats(self._engine.stats(self._id)))

    def _teardown(self) -> list[str]:
        if self._id is None:
            return []
        with self._clock.phase("remove"):
            try:
                self._engine.remove(self._id)
            except SandboxError as err:
                return [f"container {self._config.name}: {err}"]
        return []

    def _add_daemon_phases(self) -> None:
        """Docker's own view, next to the client's phases; without it a warning, never an error."""
        client = {p.name: p for p in self._clock.phases}
        create = client.get("create")
        if self._id is None or self._offset is None or create is None:
            return
        try:
            events = self._engine.events(
                since_ns=self._offset.to_realtime(create.start_ns) - _SINCE_MARGIN_NS,
                until_ns=time.time_ns(),
            )
        except (SandboxError, ValueError) as err:
            log.warning("%s: cannot read the daemon's events (%s); no daemon phases", self.name, err)
            return
        times = event_times(events, self._id)
        # How many the daemon returned: it keeps only its last 256 events, so a container that made
        # it log many (an OOM loop's oom events) can lose its early ones; the warning says so.
        what = f"docker sandbox {self.name} ({len(events)} daemon events read)"
        for p in daemon_phases(times, client, self._offset, what=what):
            self._clock.add(p.name, p.start_ns, p.end_ns)

    # -- creation (called by the driver through started_or_cleaned) ----------------------------------

    def _start(self) -> None:
        clock = self._clock
        engine = self._engine
        self._offset = ClockOffset.measure()
        with clock.phase("create"):
            self._id = engine.create_container(self._config)
        with clock.phase("start"):
            engine.start(self._id)
            doc = engine.inspect(self._id)
            self._pid, self._address = _pid_and_address(doc, self._config.network)
        self._ready_then_probe(self._timeout)


def _pid_and_address(doc: Mapping[str, Any], network: str) -> tuple[int, str | None]:
    state = doc.get("State") or {}
    pid = state.get("Pid")
    if not state.get("Running") or not isinstance(pid, int) or pid <= 0:
        raise SandboxError(
            f"container {doc.get('Name', '?')} is not running after start "
            f"(status {state.get('Status')!r}, error {state.get('Error')!r})"
        )
    if network == "none":
        return pid, None
    nets = (doc.get("NetworkSettings") or {}).get("Networks") or {}
    addr = (nets.get(network) or {}).get("IPAddress")
    if not addr:
        raise SandboxError(f"container {doc.get('Name', '?')} has no address on network {network}")
    return pid, str(addr)
