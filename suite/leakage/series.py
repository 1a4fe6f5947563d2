"""Time series sampled inside a sandbox: the dump format, pure per-file parsers, and alignment.

The sandbox side of a correlation probe is ONE exec of a shell loop (see :func:`sampler_script`)
that prints, every few tens of milliseconds, ``@@t <uptime>`` followed by ``@@f <path>`` and the
raw file. Parsing happens here on the host, so the loop needs nothing but ``sh``, ``cat`` and
``sleep`` and the parsers can be tested on recorded dumps.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from isobench.hostsys.procstat import stat_busy, stat_steal

__all__ = [
    "LoadPattern",
    "Sample",
    "SeriesKind",
    "align_offset",
    "aligned_points",
    "parse_dump",
    "sampler_script",
    # /proc/stat's parsers live with the host layer (the runner reads steal too); channels use them here
    "stat_busy",
    "stat_steal",
]

SeriesKind = Literal["level", "instant", "rate", "ratio"]


@dataclass(frozen=True)
class Sample:
    """One pass of the sampling loop: the sandbox's uptime (s) and the raw text of each file."""

    t: float
    files: Mapping[str, str]


@dataclass(frozen=True)
class LoadPattern:
    """Alternating off/on periods of equal length, starting with "off", on the host's boot clock."""

    start: float
    period: float
    periods: int

    @property
    def end(self) -> float:
        return self.start + self.period * self.periods

    def on_intervals(self) -> list[tuple[float, float]]:
        return [
            (self.start + k * self.period, self.start + (k + 1) * self.period)
            for k in range(self.periods)
            if k % 2 == 1
        ]

    def on_fraction(self, a: float, b: float) -> float:
        """Share of [a, b] during which the load was on (the expected signal over that interval)."""
        if b <= a:
            return 1.0 if any(s <= a < e for s, e in self.on_intervals()) else 0.0
        on = sum(max(0.0, min(b, e) - max(a, s)) for s, e in self.on_intervals())
        return on / (b - a)


def sampler_script(paths: Sequence[str], duration: float, interval: float) -> str:
    """The sandbox-side loop: runs ``duration`` seconds by the sandbox's own uptime clock."""
    cs = max(1, round(duration * 100))
    cats = "\n".join(f'  echo "@@f {p}"; cat {p} 2>/dev/null' for p in paths)
    # /proc/uptime has centisecond resolution and is read with a shell builtin, so a sample costs
    # only the cat forks; busybox `date` has no sub-second format.
    return f"""read up rest < /proc/uptime
t0=${{up%.*}}${{up#*.}}
end=$((t0 + {cs}))
t=$t0
while [ "$t" -le "$end" ]; do
  read up rest < /proc/uptime
  echo "@@t $up"
{cats}
  sleep {interval:g}
  t=${{up%.*}}${{up#*.}}
done
read up rest < /proc/uptime
echo "@@t $up"
{cats}
"""


def parse_dump(text: str) -> list[Sample]:
    """Split the loop's output into samples; a torn last sample (no files) is dropped."""
    samples: list[Sample] = []
    t: float | None = None
    files: dict[str, list[str]] = {}
    current: list[str] | None = None

    def flush() -> None:
        if t is not None and files:
            samples.append(Sample(t, {k: "\n".join(v) for k, v in files.items()}))

    for line in text.splitlines():
        if line.startswith("@@t "):
            flush()
            try:
                t = float(line[4:].strip())
            except ValueError:
                t = None
            files = {}
            current = None
        elif line.startswith("@@f "):
            current = files.setdefault(line[4:].strip(), [])
        elif current is not None:
            current.append(line)
    flush()
    return samples


def align_offset(
    first_t: float, last_t: float, exec_start: float, exec_end: float, slack: float = 1.0
) -> tuple[float, str]:
    """Offset to add to sandbox uptimes to get host boot-clock times, and how it was found.

    A container without a time namespace shares the host's boot clock, so its readings fall inside
    the exec's host window and need no shift. Otherwise (a guest kernel) the first sample is taken
    to coincide with the start of the exec; the error is the exec's start-up latency.
    """
    if exec_start - slack <= first_t and last_t <= exec_end + slack:
        return 0.0, "shared boot clock"
    return exec_start - first_t, "anchored at exec start"


_NUM = re.compile(r"^\d+$")


def aligned_points(
    samples: Sequence[Sample],
    path: str,
    extract: Callable[[str], float | tuple[float, float] | None],
    kind: SeriesKind,
    pattern: LoadPattern,
    offset: float,
) -> tuple[list[float], list[float]]:
    """(expected load, observed) pairs for one file, restricted to the load pattern's window.

    ``level`` series pair each reading with the load over the interval just before it, ``instant``
    ones with the load at the moment of reading; ``rate``
    series are counter deltas per second and ``ratio`` ones delta(a)/delta(b) (e.g. busy/total
    jiffies), each paired with the load over the interval they span.
    """
    pts: list[tuple[float, float | tuple[float, float]]] = []
    for s in samples:
        raw = s.files.get(path)
        if raw is None or not raw.strip():
            continue
        v = extract(raw)
        if v is None:
            continue
        t = s.t + offset
        if pts and t <= pts[-1][0]:
            continue  # same centisecond: no usable interval
        pts.append((t, v))
    xs: list[float] = []
    ys: list[float] = []
    for (t0, v0), (t1, v1) in itertools.pairwise(pts):
        if t0 < pattern.start or t1 > pattern.end:
            continue
        # An instantaneous count (runnable tasks) reflects the load at the moment it was read.
        x = pattern.on_fraction(t1, t1) if kind == "instant" else pattern.on_fraction(t0, t1)
        if kind in ("level", "instant"):
            assert not isinstance(v1, tuple)
            y = v1
        elif kind == "rate":
            assert not isinstance(v0, tuple) and not isinstance(v1, tuple)
            y = (v1 - v0) / (t1 - t0)
        else:
            assert isinstance(v0, tuple) and isinstance(v1, tuple)
            den = v1[1] - v0[1]
            if den <= 0:
                continue
            y = (v1[0] - v0[0]) / den
        xs.append(x)
        ys.append(y)
    return xs, ys


# --- pure parsers of the sampled files ------------------------------------------------------


def _rows(text: str) -> Iterator[list[str]]:
    """Each line of ``text``, split on white space."""
    return (line.split() for line in text.splitlines())


def _total(values: Iterable[float]) -> float | None:
    """The sum of ``values``, or None when there were none: the file had no line to count."""
    total = 0.0
    seen = False
    for v in values:
        total += v
        seen = True
    return total if seen else None


def _negated(value: float | None) -> float | None:
    return None if value is None else -value


def _free_pages(counts: Sequence[str]) -> float:
    """Free pages of one buddy-allocator row: a count of free blocks per order (2**order pages)."""
    return sum(float(c) * (1 << order) for order, c in enumerate(counts))


def loadavg_running(text: str) -> float | None:
    """Instantaneous runnable count (the ``a`` of ``a/b``); the averages move far too slowly."""
    parts = text.split()
    if len(parts) < 4 or "/" not in parts[3]:
        return None
    return float(parts[3].split("/")[0])


def _kv(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep:
            out[key.strip()] = rest.strip()
        else:
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = parts[1]
    return out


def meminfo_used(text: str) -> float | None:
    """MemTotal - MemAvailable in kB: rises with the host's memory toucher."""
    kv = _kv(text)
    try:
        return float(kv["MemTotal"].split()[0]) - float(kv["MemAvailable"].split()[0])
    except (KeyError, ValueError, IndexError):
        return None


def vmstat_used(text: str) -> float | None:
    """-nr_free_pages, so allocation on the host raises it."""
    kv = _kv(text)
    try:
        return -float(kv["nr_free_pages"])
    except (KeyError, ValueError):
        return None


def zoneinfo_used(text: str) -> float | None:
    """-(sum of free pages over all zones)."""
    return _negated(_total(float(p[2]) for p in _rows(text) if len(p) == 3 and p[:2] == ["pages", "free"]))


def diskstats_written(text: str) -> float | None:
    """Sectors written, summed over every device (partitions double-count, proportionally)."""
    return _total(float(p[9]) for p in _rows(text) if len(p) >= 10 and _NUM.match(p[9]))


def interrupts_total(text: str) -> float | None:
    """Sum of every per-CPU count in /proc/interrupts (device IRQs and IPIs alike)."""
    lines = text.splitlines()
    if not lines:
        return None
    ncpu = len(lines[0].split())
    total = 0.0
    for line in lines[1:]:
        parts = line.split()[1 : 1 + ncpu]
        for p in parts:
            if not _NUM.match(p):
                break
            total += float(p)
    return total if ncpu else None


def softirqs_net(text: str) -> float | None:
    """NET_RX + NET_TX softirqs over all CPUs."""
    net = (p[1:] for p in _rows(text) if p and p[0] in ("NET_RX:", "NET_TX:"))
    return _total(sum(float(c) for c in counts if _NUM.match(c)) for counts in net)


def single_number(text: str) -> float | None:
    """The first number of a file (/proc/sys/fs/file-nr's allocated handles, ns_last_pid, ...)."""
    parts = text.split()
    return float(parts[0]) if parts and _NUM.match(parts[0]) else None


def pressure_some_total(text: str) -> float | None:
    """The ``some ... total=`` of a /proc/pressure file: microseconds some task stalled (a counter)."""
    for line in text.splitlines():
        if line.startswith("some "):
            for field in line.split():
                if field.startswith("total=") and _NUM.match(field[6:]):
                    return float(field[6:])
    return None


def schedstat_running(text: str) -> float | None:
    """Sum over CPUs of the time tasks ran there (ns; the 7th number of each ``cpuN`` line)."""
    ran = [p[7] for p in _rows(text) if p and p[0].startswith("cpu") and p[0][3:].isdigit() and len(p) >= 8]
    if not all(_NUM.match(ns) for ns in ran):
        return None
    return _total(float(ns) for ns in ran)


def snmp_udp_in(text: str) -> float | None:
    """Udp InDatagrams of /proc/net/snmp (a header line of names, then one of values)."""
    lines = [ln.split() for ln in text.splitlines() if ln.startswith("Udp:")]
    if len(lines) < 2 or "InDatagrams" not in lines[0]:
        return None
    value = lines[1][lines[0].index("InDatagrams")]
    return float(value) if _NUM.match(value) else None


def buddyinfo_used(text: str) -> float | None:
    """-(free pages over every zone and order), so allocation on the host raises it."""
    zones = [p[4:] for p in _rows(text) if len(p) > 4 and p[0] == "Node" and p[2] == "zone"]
    if not all(_NUM.match(c) for counts in zones for c in counts):
        return None
    return _negated(_total(_free_pages(counts) for counts in zones))


def pagetypeinfo_used(text: str) -> float | None:
    """-(free pages per migrate type over every order), from /proc/pagetypeinfo's first table."""
    # The second table ("Number of blocks type ...") counts pageblocks, not free pages.
    free_table = re.split(r"^Number of blocks", text, maxsplit=1, flags=re.MULTILINE)[0]
    # "Node 0, zone Normal, type Movable 12 3 0 ..."
    types = [p[6:] for p in _rows(free_table) if len(p) > 6 and p[0] == "Node" and p[4] == "type"]
    return _negated(_total(_free_pages(counts) for counts in types if all(_NUM.match(c) for c in counts)))


def slabinfo_filp(text: str) -> float | None:
    """Active ``filp`` objects in /proc/slabinfo: one per open file on the whole host."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0] == "filp" and _NUM.match(parts[1]):
            return float(parts[1])
    return None
