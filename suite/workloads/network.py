"""The ``network`` workload: TCP throughput (iperf3) and request/response latency (sockperf
ping-pong, full round trip) between the host (client) and a server inside the sandbox.

The servers run in the sandbox through ``exec`` in a background thread; each is bounded by
``timeout`` inside the sandbox and by the exec timeout outside. Beside each server the same exec runs
a stop listener (``busybox nc -l``): the host connects to it once the client is done and the script
ends the server. That needs no second exec, which matters where a second exec cannot reach the
first one's processes (bwrap: a new pid namespace per exec) or must wait for it (the guest agent runs
one command at a time); the pid-file kill remains the fallback. Nothing outlives the cell. The host driver's address is 127.0.0.1,
so its figures are loopback figures. Everything stays on loopback or the driver's veth/virtual NIC.

CPU placement is controlled, not left to the scheduler. On a 2-core nested-virt host a loopback
sockperf round trip took 14 us with client and server on one CPU and 65-74 us across two (the
wake-up is a cross-CPU interrupt through the hypervisor); unpinned, each cell lands on either side
by chance, and a driver comparison becomes a comparison of luck. ``placement`` (a param, so it is in
every sample) is ``cross-cpu`` by default: the host client on one CPU, the server on another;
``same-cpu`` puts both on one; ``free`` pins nothing. Where the server runs in a guest, pinning
inside pins to a guest vCPU, so only the client is pinned and the vCPU threads stay where
``sandbox.cpuset`` (or the host scheduler) puts them; the metadata says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, NamedTuple, TypeVar

from isobench.drivers.base import ExecResult, Sandbox
from isobench.errors import IsobenchError, WorkloadError
from isobench.hostsys.procstat import steal_metadata, steal_over
from isobench.model import Measurement
from isobench.procs import run_command
from isobench.workloads._common import BaseWorkload, Budget, Params, last_line, strip_ansi
from isobench.workloads._windows import CADENCE_S, Window, connect_once, gaps, staggered_windows
from isobench.workloads.base import WorkloadContext

log = logging.getLogger(__name__)

__all__ = [
    "WORKLOAD",
    "IperfResult",
    "NetworkParams",
    "NetworkWorkload",
    "Placement",
    "SockperfResult",
    "parse_iperf3_json",
    "parse_sockperf",
    "plan_placement",
]

#: How long a refused client keeps retrying while the server inside is still starting (TCG is slow).
SERVER_START_SECONDS = 30.0
PLACEMENTS = ("cross-cpu", "same-cpu", "free")


@dataclass(frozen=True)
class NetworkParams(Params):
    workload: ClassVar[str] = "network"

    iperf_seconds: int = 10
    #: Seconds iperf3 omits at the start (TCP slow start).
    iperf_omit: int = field(default=1, metadata={"min": 0})
    #: The round-trip figure is the median of every round trip in this window. On a nested-virt host
    #: the RTT triples for 1-6 s at a time (the outer host's wake-ups; 25% of 1 s windows on the
    #: reference host) and one cell is all a default run measures: a 1 s window landed in such a
    #: stretch often enough that most default runs ranked some driver 2x slower than native. Over
    #: 5 s the median stays in the fast mode unless the slow one covers ~3/4 of it (the fast mode
    #: makes 3x the round trips), so the smoke size keeps the full 5 s too.
    latency_seconds: int = 5
    #: sockperf message size in bytes.
    message_size: int = 64
    #: cross-cpu | same-cpu | free (see the module docstring).
    placement: str = field(default="cross-cpu", metadata={"choices": PLACEMENTS})
    #: Pairs of 1 s round-trip windows, the sandbox's and then host loopback's (same client CPU,
    #: server on the sandbox server's CPU), for the figure ``network.tcp_rtt.p50_paired_ratio``:
    #: the median over pairs of sandbox p50 / host p50, which the headline's RTT ratio is. The
    #: host's slow stretches last 1-6 s and hit both paths alike, so adjacent windows cancel them
    #: where cells measured minutes apart do not (README "Round-trip drift"). 0: off, and the
    #: headline's RTT ratio is the cells' own again. The windows run back to back, a client
    #: started every 1.1 s (``_windows``): 3 pairs add ~9 s to a cell, 5 pairs ~13 s.
    paired_windows: int = field(default=5, metadata={"min": 0})

    @classmethod
    def quick(cls) -> NetworkParams:
        # 3 pairs: the median still outvotes one pair that straddles a slow stretch's edge
        return cls(iperf_seconds=2, iperf_omit=0, paired_windows=3)


@dataclass(frozen=True)
class Placement:
    """Where the host-side client and the server inside run; None: not pinned."""

    mode: str
    client_cpu: int | None
    server_cpu: int | None
    note: str = ""

    def client(self, argv: Sequence[str]) -> list[str]:
        if self.client_cpu is None:
            return list(argv)
        return ["taskset", "-c", str(self.client_cpu), *argv]

    def server(self, command: str) -> str:
        return command if self.server_cpu is None else f"taskset -c {self.server_cpu} {command}"

    def metadata(self) -> dict[str, Any]:
        md: dict[str, Any] = {"client_cpu": self.client_cpu, "server_cpu": self.server_cpu}
        if self.note:
            md["placement_note"] = self.note
        return md


def plan_placement(
    mode: str, host_cpus: Sequence[int], sandbox_cpus: Sequence[int] | None, *, guest: bool
) -> Placement:
    """Pure: the CPUs for ``mode`` given the CPUs this process may use and the sandbox's cpuset."""
    if mode == "free" or not host_cpus:
        return Placement(mode, None, None, "not pinned")
    candidates = sorted(sandbox_cpus) if sandbox_cpus else sorted(host_cpus)
    if mode == "same-cpu":
        server = candidates[0]
        client = server if server in host_cpus else sorted(host_cpus)[0]
    else:
        server = candidates[-1]
        others = [c for c in sorted(host_cpus) if c != server]
        client = others[0] if others else server
    note = "" if mode == "same-cpu" or client != server else "one CPU available: client and server share it"
    if guest:
        vcpus = f"sandbox.cpuset {','.join(map(str, candidates))}" if sandbox_cpus else "the host scheduler"
        return Placement(mode, client, None, f"server in a guest: its vCPU threads are placed by {vcpus}")
    return Placement(mode, client, server, note)


@dataclass(frozen=True)
class IperfResult:
    sent_bits_per_second: float
    received_bits_per_second: float
    seconds: float
    retransmits: int | None


@dataclass(frozen=True)
class SockperfResult:
    observations: int
    avg_seconds: float
    p50_seconds: float
    p99_seconds: float
    full_rtt: bool


class ConnectionRefused(WorkloadError):
    """The server is not listening (yet)."""


def parse_iperf3_json(text: str) -> IperfResult:
    """iperf3 ``-J`` output. iperf3 3.12 exits 0 on connect errors and reports them in ``error``."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise WorkloadError(f"iperf3 JSON is malformed: {err}") from err
    error = doc.get("error")
    if error:
        if "Connection refused" in error:
            raise ConnectionRefused(f"iperf3: {error}")
        raise WorkloadError(f"iperf3 failed: {error}")
    end = doc.get("end") or {}
    sent = end.get("sum_sent") or {}
    received = end.get("sum_received") or {}
    if not received.get("bits_per_second") or not sent.get("bits_per_second"):
        raise WorkloadError("iperf3 reported no throughput")
    retr = sent.get("retransmits")
    return IperfResult(
        sent_bits_per_second=float(sent["bits_per_second"]),
        received_bits_per_second=float(received["bits_per_second"]),
        seconds=float(received.get("seconds", 0.0)),
        retransmits=int(retr) if retr is not None else None,
    )


def parse_sockperf(text: str) -> SockperfResult:
    """sockperf ``ping-pong`` summary; like iperf3 it exits 0 when it cannot connect."""
    text = strip_ansi(text)
    if "errno=111" in text or "Connection refused" in text:
        raise ConnectionRefused(f"sockperf: {last_line(text)}")
    err = re.search(r"sockperf: ERROR: (.*)", text)
    if err:
        raise WorkloadError(f"sockperf failed: {err.group(1).strip()}")
    avg = re.search(r"====> avg-(rtt|latency)=([\d.]+)", text)
    obs = re.search(r"Total (\d+) observations", text)
    p50 = re.search(r"percentile 50\.000 =\s*([\d.]+)", text)
    p99 = re.search(r"percentile 99\.000 =\s*([\d.]+)", text)
    if not (avg and obs and p50 and p99):
        raise WorkloadError(f"sockperf printed no latency summary: {last_line(text) or 'no output'}")
    if int(obs.group(1)) == 0:
        raise WorkloadError("sockperf made no observations")
    us = 1e-6
    return SockperfResult(
        observations=int(obs.group(1)),
        avg_seconds=float(avg.group(2)) * us,
        p50_seconds=float(p50.group(1)) * us,
        p99_seconds=float(p99.group(1)) * us,
        full_rtt=avg.group(1) == "rtt",
    )


def free_port() -> int:
    """A TCP port free on the host's loopback now. Only the host driver shares the host's port
    space; the others have their own, where any port is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class BackgroundExec:
    """A command running inside the sandbox in a thread; ``join`` returns its result or error."""

    def __init__(self, sandbox: Sandbox, argv: Sequence[str], timeout: float) -> None:
        self.result: ExecResult | None = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = sandbox.exec(list(argv), timeout=timeout)
            except BaseException as err:  # reported to the caller by join()
                self.error = err

        self._thread = threading.Thread(target=target, name=f"isobench-server-{argv[0]}", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def exited(self) -> str | None:
        """Why the command ended (its error or its last stderr line); None while it runs."""
        if self.running:
            return None
        return str(self.error or (self.result and last_line(self.result.stderr)))


@dataclass(frozen=True)
class Server:
    """A server started inside the sandbox: its exec, its pid file and its stop listener's port."""

    proc: BackgroundExec
    pidfile: str
    stop_port: int


_R = TypeVar("_R")


def retry_refused(
    attempt: Callable[[], _R], exited: Callable[[], str | None], budget: Budget, what: str
) -> _R:
    """``attempt()`` again while the server ``what`` refuses connections (it may not listen yet),
    until it has ``exited()`` (a reason) or the start-up deadline passes."""
    deadline = time.monotonic() + min(SERVER_START_SECONDS, budget.left())
    while True:
        try:
            return attempt()
        except ConnectionRefused as err:
            if (detail := exited()) is not None:
                raise WorkloadError(f"{what} exited: {detail}") from err
            if time.monotonic() > deadline:
                raise WorkloadError(f"{what} never listened") from err
            time.sleep(0.2)


def _listening(address: str, port: int) -> None:
    """A server that accepts a connection; ConnectionRefused while it does not listen yet."""
    try:
        connect_once(address, port)
    except ConnectionRefusedError as err:
        raise ConnectionRefused(f"{address}:{port}: {err.strerror}") from err


def _sockperf_server(address: str, port: int) -> list[str]:
    """sockperf's TCP server on ``address``: inside a sandbox, or the host-loopback reference."""
    return ["sockperf", "server", "--tcp", "-i", address, "-p", str(port)]


def _ping_pong(address: str, port: int, seconds: int, message_size: int) -> list[str]:
    """sockperf's client for one round-trip window (full round trip, TCP)."""
    return ["sockperf", "ping-pong", "--tcp", "--full-rtt", "-i", address, "-p", str(port),
            "-t", str(seconds), "-m", str(message_size)]  # fmt: skip


class _Session(NamedTuple):
    """What both measurements of one cell share."""

    sandbox: Sandbox
    address: str
    params: NetworkParams
    placement: Placement
    budget: Budget
    meta: dict[str, Any]


class NetworkWorkload(BaseWorkload):
    name = "network"
    description = "host->sandbox TCP throughput (iperf3) and round trip (sockperf)"
    tools = (
        "iperf3",
        "sockperf",
        "sh",
        "timeout",
        "cat",
        "rm",
        "busybox",
        "taskset",
    )
    #: One cell already averages over time (thousands of I/Os or round trips): a few repetitions
    #: suffice, and one for a smoke run.
    max_repetitions = 3
    quick_repetitions = 1
    precision_figures = ("network.tcp_throughput", "network.tcp_rtt.p50")
    params_type = NetworkParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params = NetworkParams.of(ctx)
        for tool, package in (("iperf3", "iperf3"), ("sockperf", "sockperf"), ("taskset", "util-linux")):
            if shutil.which(tool) is None:
                raise WorkloadError(
                    f"network: the host needs {tool} for the client side; apt-get install {package}"
                )
        budget = self.budget(ctx)
        with ctx.sandbox(network=True) as sandbox:
            address = sandbox.address
            if not address:
                raise WorkloadError(f"driver {ctx.driver.name} gave the sandbox no address with network=True")
            placement = plan_placement(
                params.placement,
                sorted(os.sched_getaffinity(0)),
                ctx.spec.cpuset,
                guest=ctx.driver.capabilities.guest,
            )
            meta: dict[str, Any] = {
                "address": address,
                "client": "host",
                "server": "sandbox",
                **placement.metadata(),
            }
            session = _Session(sandbox, address, params, placement, budget, meta)
            out = self._throughput(session)
            out += self._latency(session)
            if params.paired_windows:
                out += self._paired(session)
        return out

    def _serve(self, sandbox: Sandbox, command: str, life: float) -> Server:
        """Start ``command`` in the background inside, bounded by ``timeout``, with a stop listener on
        ``stop_port`` beside it; its pid goes to a file for the fallback kill (never by name: other
        benchmarks may share the host)."""
        pidfile = f"{sandbox.workdir.rstrip('/')}/isobench-server-{free_port()}.pid"
        stop_port = free_port()
        script = (
            f"echo $$ > {pidfile}; "
            f"timeout {int(life)} {command} & srv=$!; "
            f"timeout {int(life)} busybox nc -l -p {stop_port} </dev/null >/dev/null 2>&1 & stop=$!; "
            # Whichever ends first (server done, or the host poked the stop port) ends the other.
            "while kill -0 $srv 2>/dev/null && kill -0 $stop 2>/dev/null; do sleep 0.1; done; "
            "kill $srv $stop 2>/dev/null; wait $srv"
        )
        return Server(BackgroundExec(sandbox, ["sh", "-c", script], timeout=life + 10), pidfile, stop_port)

    def _stop(self, sandbox: Sandbox, server: Server, grace: float, address: str) -> None:
        proc = server.proc
        proc.join(grace)
        if proc.running:
            with contextlib.suppress(OSError):
                socket.create_connection((address, server.stop_port), timeout=5).close()
            proc.join(10)
        if proc.running:
            with contextlib.suppress(IsobenchError):
                kill = f"[ -f {server.pidfile} ] && kill $(cat {server.pidfile}) 2>/dev/null; rm -f {server.pidfile}"
                sandbox.exec(["sh", "-c", kill], timeout=30)
            proc.join(30)
        if proc.running:
            log.warning("%s: a server inside did not stop; the sandbox teardown will end it", sandbox.name)

    def _throughput(self, session: _Session) -> list[Measurement]:
        sandbox, address, params, placement, budget, meta = session
        port = free_port()
        life = params.iperf_seconds + params.iperf_omit + SERVER_START_SECONDS + 10
        server = self._serve(sandbox, placement.server(f"iperf3 -s -1 -B {address} -p {port}"), life)
        client = placement.client([
            "iperf3", "-c", address, "-p", str(port), "-J",
            "-t", str(params.iperf_seconds), "-O", str(params.iperf_omit),
        ])  # fmt: skip

        def attempt() -> IperfResult:
            res = run_command(client, timeout=budget.cap(params.iperf_seconds + params.iperf_omit + 30))
            return parse_iperf3_json(res.stdout)

        # -s -1 exits after its one client; the kill only matters when the client failed.
        result, steal = self._client(session, server, attempt, "iperf3", grace=5)
        if result.seconds < 0.95 * params.iperf_seconds:
            raise WorkloadError(f"iperf3 ran {result.seconds:.2f}s of {params.iperf_seconds}s")
        p = {"protocol": "tcp", "direction": "host_to_sandbox", "streams": 1, "placement": params.placement}
        m = {**meta, "tool": "iperf3", "seconds": result.seconds, "retransmits": result.retransmits, **steal}
        return [
            Measurement(
                "network.tcp_throughput",
                result.received_bits_per_second / 8,
                "bytes_per_second",
                "higher",
                p,
                m,
            )
        ]

    def _client(
        self, session: _Session, server: Server, attempt: Callable[[], _R], what: str, *, grace: float
    ) -> tuple[_R, dict[str, float]]:
        """The host-side client's result, retried while the server inside is not listening yet; the
        server stopped on every path; the host's steal over the client's own window (the runner's
        reading spans the whole cell) as metadata."""
        try:
            result, steal = retry_refused(
                lambda: steal_over(attempt),
                server.proc.exited,
                session.budget,
                f"{what} server inside the sandbox",
            )
        finally:
            self._stop(session.sandbox, server, grace=grace, address=session.address)
        return result, steal_metadata(steal)

    def _paired(self, session: _Session) -> list[Measurement]:
        """Alternate 1 s windows against the sandbox's server and a host-loopback one; each pair's
        p50 ratio cancels what the host does to both in the same seconds."""
        sandbox, address, params, placement, budget, meta = session
        port, ref_port = free_port(), free_port()
        life = 4 * params.paired_windows + SERVER_START_SECONDS + 10
        server = self._serve(sandbox, placement.server(" ".join(_sockperf_server(address, port))), life)
        ref_cpu = _reference_cpu(placement)
        pin = [] if ref_cpu is None else ["taskset", "-c", str(ref_cpu)]
        # bounded by `timeout` even if isobench is killed; its own group, so one kill ends both
        ref_argv = ["timeout", str(int(life)), *pin, *_sockperf_server("127.0.0.1", ref_port)]
        ref = subprocess.Popen(
            ref_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

        def ref_exited() -> str | None:
            return None if ref.poll() is None else f"exit status {ref.returncode}"

        windows: list[Window] = []

        def alternate() -> None:
            # neither server may listen yet: the sandbox's, then the host's
            for host, to, exited, what in (
                (address, port, server.proc.exited, "sockperf server inside the sandbox"),
                ("127.0.0.1", ref_port, ref_exited, "the host-loopback sockperf server"),
            ):
                retry_refused(partial(_listening, host, to), exited, budget, what)
            targets = [(address, port), ("127.0.0.1", ref_port)] * params.paired_windows
            argvs = [placement.client(_ping_pong(host, to, 1, params.message_size)) for host, to in targets]
            windows.extend(staggered_windows(argvs, cadence=CADENCE_S, timeout=budget.cap(31)))

        try:
            _, steal = steal_over(alternate)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(ref.pid, signal.SIGKILL)
            ref.wait()
            self._stop(sandbox, server, grace=0, address=address)
        p50s = [parse_sockperf(w.output).p50_seconds for w in windows]
        pairs = list(zip(p50s[::2], p50s[1::2], strict=True))
        ratios = [a / b for a, b in pairs]
        p = _rtt_params(params)
        m = {
            **meta,
            "tool": "sockperf",
            "reference": "host loopback" + ("" if ref_cpu is None else f", server on CPU {ref_cpu}"),
            "window_seconds": 1,
            "window_cadence_seconds": CADENCE_S,
            "window_gaps_seconds": [None if g is None else round(g, 3) for g in gaps(windows)],
            "pair_ratios": [round(r, 4) for r in ratios],
            "sandbox_p50_seconds": [a for a, _ in pairs],
            "host_p50_seconds": [b for _, b in pairs],
            **steal_metadata(steal),
        }
        ratio = statistics.median(ratios)
        return [Measurement("network.tcp_rtt.p50_paired_ratio", ratio, "ratio", "lower", p, m)]

    def _latency(self, session: _Session) -> list[Measurement]:
        sandbox, address, params, placement, budget, meta = session
        port = free_port()
        life = params.latency_seconds + SERVER_START_SECONDS + 10
        server = self._serve(sandbox, placement.server(" ".join(_sockperf_server(address, port))), life)
        client = placement.client(_ping_pong(address, port, params.latency_seconds, params.message_size))

        def attempt() -> SockperfResult:
            res = run_command(client, timeout=budget.cap(params.latency_seconds + 30))
            return parse_sockperf(res.stdout + res.stderr)

        # sockperf's server never exits by itself: stop the one we started.
        result, steal = self._client(session, server, attempt, "sockperf", grace=0)
        p = _rtt_params(params)
        m = {
            **meta,
            "tool": "sockperf",
            "observations": result.observations,
            "latency": "full round trip",
            **steal,
        }
        return [
            Measurement("network.tcp_rtt.avg", result.avg_seconds, "seconds", "lower", p, m),
            Measurement("network.tcp_rtt.p50", result.p50_seconds, "seconds", "lower", p, m),
            Measurement("network.tcp_rtt.p99", result.p99_seconds, "seconds", "lower", p, m),
        ]


def _rtt_params(params: NetworkParams) -> dict[str, Any]:
    """What a round-trip figure was measured with (its cell's params)."""
    return {
        "protocol": "tcp",
        "pattern": "ping-pong",
        "message_bytes": params.message_size,
        "placement": params.placement,
    }


def _reference_cpu(placement: Placement) -> int | None:
    """The CPU the host-loopback reference server runs on: the sandbox server's, or for a guest
    (whose server a vCPU runs) the first other than the client's."""
    if placement.server_cpu is not None or placement.client_cpu is None:
        return placement.server_cpu
    return next((c for c in sorted(os.sched_getaffinity(0)) if c != placement.client_cpu), None)


WORKLOAD = NetworkWorkload
