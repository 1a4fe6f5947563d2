"""What each figure means and how it was obtained: the report's "Methods" section."""

from __future__ import annotations

from collections.abc import Iterable

from isobench.model import Sample

__all__ = ["STATISTICS", "method_text", "recorded_tools"]

STATISTICS = (
    "Every figure is the median of the measured repetitions (warm-up repetitions excluded). Its "
    "interval is the exact order-statistic (binomial) interval of the median, which holds for any "
    "distribution: at least 95% from 6 repetitions on; with fewer it is the range of the values, "
    "printed with the confidence it really has (3 repetitions: 75%); one repetition has none. CoV is "
    "the sample standard "
    "deviation over the mean; a cell whose CoV exceeds 5% is flagged noisy. Ratios to native are the "
    "ratio of a driver's median to the host driver's median for the same workload, metric and "
    "parameters, with a bootstrap interval that resamples both sides independently; a ratio is called "
    "better or worse than native only where that interval excludes 1, the exact two-sided "
    "Wilcoxon-Mann-Whitney test of the two samples gives p < 0.05 (3 repetitions against 3 never "
    "can: its smallest p is 0.1) and the difference is at least 5%. The network "
    "round trip's ratio, where the run paired it (the default), is measured instead: alternating 1 s "
    "windows of the sandbox's round trip and host loopback's, the ratio being the median of the "
    "pairs' ratios with its order-statistic interval, as the host's slow stretches hit both sides of "
    "a pair but not cells measured minutes apart. Samples of different parameter combinations are never pooled."
)

# Why these texts are generic about tools: the workload records the exact tool and version in each
# sample's metadata, which the report lists under the text (see recorded_tools).
_WORKLOADS: dict[str, str] = {
    "startup": (
        "Time from asking the driver for a sandbox until the sandbox is ready and has run a first "
        "command, on CLOCK_MONOTONIC. startup.to_exit, the headline's start to first command, is "
        "start to ready plus the exec of `true`: it compares bwrap, which is ready before any of its "
        "namespaces exist (it makes them in every exec), with the sandboxes that make theirs at "
        "create, and leaves out the check run the runc, docker and bwrap drivers make inside their "
        "create (it is in startup.total). Phases (metrics startup.phase.<name>) are the intervals the driver "
        "itself records around each step (e.g. namespace and cgroup setup, root filesystem mount, "
        "libvirt define/start, guest boot until its agent answers); the timeline draws each median where "
        "the phase began, phases that ran at once in lanes of one bar."
    ),
    "cpu": "CPU-bound work run inside the sandbox; the figure is the tool's own throughput or run time.",
    "memory": "Memory bandwidth/latency measured by a tool inside the sandbox, as the tool reports it.",
    "membw": "Memory bandwidth measured by a tool inside the sandbox, as the tool reports it.",
    "disk": (
        'File I/O inside the sandbox on each storage path (param "storage": e.g. the sandbox\'s own '
        "root storage or the /data volume), with direct I/O where the path supports it. Latency is "
        "fio's total (submission + completion) per I/O."
    ),
    "network": (
        "Throughput and latency between the host and the sandbox over each network path (param "
        '"path"), on loopback or veth/virtio links the run created.'
    ),
    "leakage": (
        "Probes run inside the sandbox and check whether host information is visible (1) or not (0): "
        'metrics leakage.<probe>; leakage.score aggregates the probes. Param "hardening" names the '
        "sandbox hardening profile used."
    ),
    "escape": (
        "A static probe tries each known escape primitive from inside the sandbox against canaries "
        "the host planted (a file found by its token, a process named by it, a symlink in the "
        "volume), never walking through a door it finds open: files whose write would act on the "
        "host are opened for writing and closed unwritten. escape.<primitive> is 1 (open) or 0 "
        "(blocked); escape.open counts the open ones and holds every verdict with its evidence."
    ),
    "interference": (
        'A victim workload runs while a neighbour sandbox runs a stressor (param "stressor"); the '
        "interference.* metrics give the victim's degradation relative to running alone."
    ),
    "density": (
        "N idle sandboxes started one after another (and, separately, all at once), N stepping up while "
        "memory, idle CPU and the cell's time allow: time until all N are ready, the N-th start, the "
        "host's MemAvailable drop and the driver-attributed memory per sandbox, and idle CPU per "
        "sandbox (params: n, start). density.n_reached says how far it got and why it stopped."
    ),
    "layers": (
        "D read-only layers over the same files (param depth): overlayfs lower directories under the "
        "container's upper layer, or a qcow2 backing chain under a guest's overlay as its data disk. "
        "Inside, per operation over 64 names, each phase after the caches were dropped: stat of a "
        "bottom-layer file, a top-layer file and a name in no layer, open, a listing of the merged "
        "directory, a cold read, the first 4 KiB write (copy-up vs cluster allocation); on the host, "
        "one more layer and start to ready. The seed's claim (overlayfs needs just two layers, so "
        "lookups are cheaper than AUFS's walk) is quoted next to the figure."
    ),
    "limits": (
        "The same limits requested from every driver, then probed from inside: CPU quota (busy "
        "processes, their CPU time over wall time), cpuset (CPUs they were seen on), pids (fork until "
        "refused), memory (hold one more MiB until stopped). Fidelity = delivered / requested."
    ),
    "idle-memory": (
        "Memory charged to an idle sandbox as the host sees it, broken down into components "
        "(idle-memory.<component>); a total is the host-side sum where the workload recorded one."
    ),
}


def method_text(workload: str) -> str:
    return _WORKLOADS.get(
        workload,
        "Measured by the workload's own tools inside the sandbox; see the metric names and units below.",
    )


_TOOL_KEYS = ("tool", "tool_version", "tools", "command")


def recorded_tools(samples: Iterable[Sample]) -> list[str]:
    """Distinct tool/command descriptions the workload stored in sample metadata."""
    seen: dict[str, None] = {}
    for s in samples:
        for k in _TOOL_KEYS:
            if k in s.metadata and s.metadata[k] not in (None, ""):
                seen.setdefault(f"{k}: {s.metadata[k]}", None)
    return list(seen)[:20]
