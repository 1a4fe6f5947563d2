"""Correlation probes: a series read inside follows a load the host switches on and off.

Probes sharing a load run together: the host starts the load child, the sandbox runs ONE exec of
the sampling loop for the whole pattern, and each probe correlates its own file against the pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from isobench.leakage import series as s
from isobench.leakage.loads import LoadKind

__all__ = ["CORRELATION_PROBES", "CorrelationProbe"]


@dataclass(frozen=True)
class CorrelationProbe:
    name: str
    weight: int
    description: str
    load: LoadKind
    path: str
    extract: Callable[[str], float | tuple[float, float] | None]
    kind: s.SeriesKind
    #: Only probed when the host has the file itself (RAPL): otherwise there is nothing to leak.
    host_optional: bool = False
    #: A closed verdict needs the host's own reading of the file to follow the load meanwhile
    #: (else the load never showed and the run cannot tell). Not for a channel that exists only
    #: inside a guest (steal time: the host's own steal does not follow its own load).
    host_reference: bool = True


CORRELATION_PROBES: tuple[CorrelationProbe, ...] = (
    CorrelationProbe(
        "proc_stat",
        2,
        "/proc/stat CPU busy share follows a host CPU spinner",
        "cpu",
        "/proc/stat",
        s.stat_busy,
        "ratio",
    ),
    CorrelationProbe(
        "loadavg",
        2,
        "/proc/loadavg runnable count follows a host CPU spinner",
        "cpu",
        "/proc/loadavg",
        s.loadavg_running,
        "instant",
    ),
    CorrelationProbe(
        "steal_time",
        2,
        "steal time follows host CPU contention (a guest-side channel)",
        "cpu",
        "/proc/stat",
        s.stat_steal,
        "ratio",
        host_reference=False,
    ),
    CorrelationProbe(
        "rapl_energy",
        2,
        "RAPL energy rate follows a host CPU spinner",
        "cpu",
        "/sys/class/powercap/intel-rapl:0/energy_uj",
        s.single_number,
        "rate",
        host_optional=True,
    ),
    CorrelationProbe(
        "pressure_cpu",
        2,
        "/proc/pressure/cpu stall time follows a host CPU spinner",
        "cpu",
        "/proc/pressure/cpu",
        s.pressure_some_total,
        "rate",
        host_optional=True,
    ),
    CorrelationProbe(
        "schedstat",
        2,
        "/proc/schedstat run time follows a host CPU spinner",
        "cpu",
        "/proc/schedstat",
        s.schedstat_running,
        "rate",
        host_optional=True,
    ),
    CorrelationProbe(
        "meminfo",
        2,
        "/proc/meminfo used memory follows a host memory toucher",
        "memory",
        "/proc/meminfo",
        s.meminfo_used,
        "level",
    ),
    CorrelationProbe(
        "vmstat",
        2,
        "/proc/vmstat free pages follow a host memory toucher",
        "memory",
        "/proc/vmstat",
        s.vmstat_used,
        "level",
    ),
    CorrelationProbe(
        "zoneinfo",
        2,
        "/proc/zoneinfo free pages follow a host memory toucher",
        "memory",
        "/proc/zoneinfo",
        s.zoneinfo_used,
        "level",
    ),
    CorrelationProbe(
        "buddyinfo",
        2,
        "/proc/buddyinfo free pages follow a host memory toucher",
        "memory",
        "/proc/buddyinfo",
        s.buddyinfo_used,
        "level",
    ),
    CorrelationProbe(
        "pagetypeinfo",
        2,
        "/proc/pagetypeinfo free pages follow a host memory toucher",
        "memory",
        "/proc/pagetypeinfo",
        s.pagetypeinfo_used,
        "level",
    ),
    CorrelationProbe(
        "diskstats",
        2,
        "/proc/diskstats sectors written follow a host disk writer",
        "disk",
        "/proc/diskstats",
        s.diskstats_written,
        "rate",
    ),
    CorrelationProbe(
        "file_nr",
        2,
        "/proc/sys/fs/file-nr follows host open files",
        "files",
        "/proc/sys/fs/file-nr",
        s.single_number,
        "level",
    ),
    CorrelationProbe(
        "slabinfo",
        2,
        "/proc/slabinfo filp objects follow host open files",
        "files",
        "/proc/slabinfo",
        s.slabinfo_filp,
        "level",
    ),
    CorrelationProbe(
        "interrupts",
        2,
        "/proc/interrupts rate follows host cross-CPU wake-ups (IPIs)",
        "ipi",
        "/proc/interrupts",
        s.interrupts_total,
        "rate",
    ),
    CorrelationProbe(
        "softirqs",
        2,
        "/proc/softirqs NET_RX/TX rate follows host loopback traffic",
        "net",
        "/proc/softirqs",
        s.softirqs_net,
        "rate",
    ),
    CorrelationProbe(
        "net_snmp",
        2,
        "/proc/net/snmp UDP datagrams received follow host loopback traffic",
        "net",
        "/proc/net/snmp",
        s.snmp_udp_in,
        "rate",
    ),
    CorrelationProbe(
        "ns_last_pid",
        2,
        "/proc/sys/kernel/ns_last_pid advances with the host's forks",
        "fork",
        "/proc/sys/kernel/ns_last_pid",
        s.single_number,
        "rate",
    ),
)
