"""The programs the ``limits`` workload runs inside a sandbox, and pure parsers of what they print.

They are perl (Essential in Debian, so in every image and on every host) using builtins only: no
module is loaded, wall time comes from /proc/uptime, CPU time from ``times``. Each prints one fact
per line so that output cut short by a kill still says how far it got.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from isobench.errors import WorkloadError

__all__ = [
    "BURN",
    "EAT",
    "FORK",
    "NEIGHBOUR",
    "Burn",
    "Copied",
    "Forks",
    "MemoryStop",
    "classify_memory_stop",
    "new_log_lines",
    "parse_burn",
    "parse_cpu_list",
    "parse_dd",
    "parse_forks",
    "parse_neighbour",
]

#: ``perl -e BURN N SECONDS``: N busy children for SECONDS; the parent samples which CPU each runs
#: on (/proc/<pid>/stat field 39, when running) and prints the children's CPU time over wall time.
BURN = r"""
$| = 1;
my ($n, $secs) = @ARGV;
sub up { open(my $f, '<', '/proc/uptime') or die "uptime: $!"; my $l = <$f>; close $f; return (split ' ', $l)[0]; }
my $t0 = up(); my $end = $t0 + $secs; my @kids;
for (1 .. $n) {
    my $pid = fork(); die "fork: $!\n" unless defined $pid;
    if ($pid == 0) { my $x = 0; while (1) { for (1 .. 100000) { $x++ } last if up() >= $end } exit 0 }
    push @kids, $pid;
}
if (open(my $s, '<', "/proc/$kids[0]/status")) {
    while (<$s>) { print "allowed $1\n" if /^Cpus_allowed_list:\s*(\S+)/ } close $s;
}
while (up() < $end) {
    for my $k (@kids) {
        open(my $f, '<', "/proc/$k/stat") or next; my $l = <$f>; close $f;
        $l =~ s/^.*\)\s+//; my @f = split ' ', $l;
        print "on $f[36]\n" if $f[0] eq 'R';
    }
    select(undef, undef, undef, 0.1);
}
waitpid($_, 0) for @kids;
my $t1 = up(); my @t = times;
print "wall $t0 $t1\ncpu $t[2] $t[3]\n";
"""

#: ``perl -e EAT CAP_MIB``: hold one more MiB (written, so backed) until killed, refused, or CAP.
EAT = r"""
$| = 1;
my ($cap) = @ARGV; my @hold; my $n = 0;
while ($n < $cap) { push @hold, "x" x 1048576; $n++; print "$n\n"; }
print "cap $n\n";
"""

#: ``perl -e FORK CAP``: fork sleeping children until fork fails or CAP; then kill them all.
FORK = r"""
$| = 1;
my ($cap) = @ARGV; my $parent = $$; my @kids; my $why = "cap";
while (@kids < $cap) {
    my $pid = fork();
    if (!defined $pid) { $why = "refused: $!"; last }
    if ($pid == 0) { sleep 1 while getppid() == $parent; exit 0 }
    push @kids, $pid;
}
print "forks " . scalar(@kids) . "\n$why\n";
kill 'KILL', @kids; waitpid($_, 0) for @kids;
"""


#: ``perl -e NEIGHBOUR SECONDS``: fixed units of work (100k increments each) for SECONDS; how many
#: units and over what wall time. A neighbour sandbox's throughput before and during a bomb.
NEIGHBOUR = r"""
$| = 1;
my ($secs) = @ARGV;
sub up { open(my $f, '<', '/proc/uptime') or die "uptime: $!"; my $l = <$f>; close $f; return (split ' ', $l)[0]; }
my $t0 = up(); my $end = $t0 + $secs; my ($n, $x, $t) = (0, 0, $t0);
while ($t < $end) { for (1 .. 100000) { $x++ } $n++; $t = up() }
print "units $n wall $t0 $t\n";
"""


def parse_neighbour(stdout: str) -> float:
    """NEIGHBOUR's output as work units per second."""
    m = re.search(r"^units (\d+) wall (\S+) (\S+)$", stdout, re.MULTILINE)
    if m is None:
        raise WorkloadError(f"the neighbour loop printed no units line: {stdout[-200:]!r}")
    wall = float(m.group(3)) - float(m.group(2))
    if wall <= 0:
        raise WorkloadError(f"the neighbour loop ran for no measurable time: {stdout[-200:]!r}")
    return int(m.group(1)) / wall


@dataclass(frozen=True)
class Copied:
    """What ``dd`` said it copied: bytes over its own wall time."""

    bytes: int
    seconds: float

    @property
    def bps(self) -> float:
        return self.bytes / self.seconds


#: GNU (``... copied, 2.00047 s, 21.0 MB/s``) and busybox (``... copied, 2.000427 seconds, ...``)
#: dd alike; a locale may write the decimal comma.
_DD = re.compile(r"^(\d+) bytes\b.*\bcopied, ([0-9]+(?:[.,][0-9]+)?(?:e[-+]?[0-9]+)?) s", re.MULTILINE)


def parse_dd(stderr: str) -> Copied:
    """dd's closing summary (on stderr) as bytes and seconds."""
    m = _DD.search(stderr)
    if m is None:
        raise WorkloadError(f"dd printed no summary: {stderr.strip()[-200:]!r}")
    seconds = float(m.group(2).replace(",", "."))
    if seconds <= 0:
        raise WorkloadError(f"dd copied in no measurable time: {m.group(0)!r}")
    return Copied(int(m.group(1)), seconds)


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """A kernel CPU list (``0-2,5``) as sorted CPU numbers."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            cpus.update(range(int(lo), int(hi or lo) + 1))
        except ValueError as err:
            raise WorkloadError(f"not a CPU list: {text!r}") from err
    return tuple(sorted(cpus))


@dataclass(frozen=True)
class Burn:
    """What BURN printed: wall seconds, the children's CPU seconds, the affinity they had, and on
    which CPUs they were seen running."""

    wall_s: float
    cpu_s: float
    allowed: tuple[int, ...] | None
    seen: Counter[int] = field(default_factory=Counter)

    @property
    def cpus(self) -> float:
        return self.cpu_s / self.wall_s


def parse_burn(stdout: str) -> Burn:
    wall = cpu = None
    allowed: tuple[int, ...] | None = None
    seen: Counter[int] = Counter()
    for line in stdout.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "wall":
            wall = float(words[2]) - float(words[1])
        elif len(words) == 3 and words[0] == "cpu":
            cpu = float(words[1]) + float(words[2])
        elif len(words) == 2 and words[0] == "allowed":
            allowed = parse_cpu_list(words[1])
        elif len(words) == 2 and words[0] == "on" and words[1].isdigit():
            seen[int(words[1])] += 1
    if wall is None or cpu is None or wall <= 0:
        raise WorkloadError(f"the CPU burner printed no wall/cpu lines: {stdout[-200:]!r}")
    return Burn(wall, cpu, allowed, seen)


@dataclass(frozen=True)
class Forks:
    count: int
    refused: bool
    why: str


def parse_forks(stdout: str) -> Forks:
    m = re.search(r"^forks (\d+)$", stdout, re.MULTILINE)
    if m is None:
        raise WorkloadError(f"the fork probe printed no count: {stdout[-200:]!r}")
    rest = stdout[m.end() :].strip().splitlines()
    why = rest[0] if rest else "unknown"
    return Forks(int(m.group(1)), why.startswith("refused"), why)


def new_log_lines(before: Sequence[str], after: Sequence[str]) -> list[str]:
    """Kernel-log lines in ``after`` that ``before`` did not have yet. The ring buffer drops its
    oldest lines when full, so this looks for the last line seen before rather than counting."""
    if not before:
        return list(after)
    last = before[-1]
    for i in range(len(after) - 1, -1, -1):
        if after[i] == last:
            return list(after[i + 1 :])
    return list(after)


@dataclass(frozen=True)
class MemoryStop:
    """Where the memory eater stopped (bytes it held) and what stopped it."""

    bytes: float
    by: str
    #: True when something other than the eater's own cap stopped it.
    enforced: bool


def classify_memory_stop(
    *,
    exit_code: int,
    stdout: str,
    stderr: str,
    oom_kills_delta: float | None,
    host_log: Iterable[str],
    guest_log: Sequence[str] = (),
) -> MemoryStop:
    """Pure: EAT's output, its exit and the new kernel-log lines, as where and why it stopped."""
    mib = 0
    capped = False
    for line in stdout.splitlines():
        words = line.split()
        if words and words[-1].isdigit():
            mib = int(words[-1])
            capped = capped or words[0] == "cap"
    held = float(mib << 20)
    if capped:
        return MemoryStop(held, "not stopped: reached the eater's own cap (no limit enforced)", False)
    if "out of memory" in stderr.lower():
        return MemoryStop(held, "allocation failure (ENOMEM)", True)
    host = [line.lower() for line in host_log]
    guest = [line.lower() for line in guest_log]
    if (oom_kills_delta or 0) > 0 or any("memory cgroup out of memory" in x for x in host):
        return MemoryStop(held, "cgroup OOM kill", True)
    if any("out of memory" in x or "oom-kill" in x for x in guest):
        return MemoryStop(held, "guest OOM killer", True)
    if any("out of memory: killed process" in x for x in host):
        return MemoryStop(held, "host OOM killer", True)
    if exit_code in (-9, 137):
        return MemoryStop(held, "killed (SIGKILL); no OOM line found in the kernel log", True)
    return MemoryStop(held, f"exited with {exit_code}", True)
