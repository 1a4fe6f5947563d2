"""The ``layers`` workload: what the depth of an image's layers or a snapshot chain costs.

For each depth D (quick: 1 and 16) a stack of D read-only layers over the same files is built once
and cached (``isobench.layers``), and a sandbox runs over it the way its driver stacks layers
(``capabilities.layer_stack``): D overlayfs lower directories above the image under the sandbox's
writable upper layer (containers), or a qcow2 backing chain of D images under a per-sandbox qcow2
overlay, attached as the guest's data disk (guests). Measured inside, by a small perl program
(Time::HiRes, CLOCK_MONOTONIC, in every image) run once per phase:

* cold lookups: stat of ``per_group`` distinct names in the bottom layer (the walk through every
  layer), in the top layer, and of names in no layer (a miss walks them all); open of others in the
  bottom layer; each after the caches were dropped;
* a cold read of a ``big`` bottom-layer file (bytes/s), and a listing of the directory merged from
  all layers, cold and warm;
* the first 4 KiB write (+ fsync) into a bottom-layer file: overlayfs copies the whole file up, a
  qcow2 overlay allocates one cluster (copying the rest of it from the chain); then the same write
  again;
* warm stat of the same names and misses (the dentry cache), for reference.

On the host: the time to add one more layer (a directory holding one file, fsync'd; for a chain
``qemu-img create -b <top>``, which opens the whole chain; a driver with its own way, a
``LayerAdder``, times that: Docker commits) and the sandbox's start to ready, each per depth. Caches: the host's page, dentry and inode caches are dropped (``drop_caches`` = 3, after
``sync``) from the host before every cold phase; a guest also drops its own inside. Which drops
happened is in every sample's metadata. Drivers that stack no layers (the native baseline,
bubblewrap) record ``layers.applicable`` = 0 and why, instead of a figure faked some other way.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.base import LayerStack, LayerStackKind, RootStorage, Sandbox
from isobench.drivers.guest.datadisk import make_layers_disk
from isobench.drivers.layerstack import LayerAdder
from isobench.errors import IsobenchError, UsageError, WorkloadError
from isobench.layers import LAYERS_SUBDIR, Placement, StackKind, ensure_stack
from isobench.model import Measurement
from isobench.workloads._common import BaseWorkload, Budget, Params, run_checked
from isobench.workloads.base import WorkloadContext

log = logging.getLogger(__name__)

__all__ = [
    "COLD_PHASES",
    "PROBE",
    "WORKLOAD",
    "LayersParams",
    "LayersWorkload",
    "parse_probe",
    "probe_measurements",
]

#: The in-sandbox program. argv: dir, drop (1: drop the caches inside first, where allowed), phase,
#: count, repetitions. Prints ``dropped yes|no`` and ``t <label> <ns> <ops> <n>`` lines.
PROBE = r"""
use strict; use Fcntl; use IO::Handle; use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC);
my ($d, $drop, $phase, $n, $reps) = @ARGV;
sub now { return int(clock_gettime(CLOCK_MONOTONIC) * 1e9) }
if ($drop) {
  system("sync");
  my $ok = 0; if (open(my $f, ">", "/proc/sys/vm/drop_caches")) { $ok = print($f "3\n") && close($f) }
  print "dropped ", ($ok ? "yes" : "no"), "\n";
}
sub names { my ($p) = @_; return map { sprintf("%s/%s%03d", $d, $p, $_) } 0 .. $n - 1 }
sub stats { my ($label, $p, $r) = @_; my @f = names($p); my $hit = 0; my $t = now();
  for (1 .. $r) { for (@f) { $hit++ if stat($_) } } my $e = now() - $t;
  print "t $label $e ", $r * $n, " $hit\n" }
sub listing { my ($label) = @_; my $t = now(); opendir(my $h, $d) or die "opendir: $!";
  my $c = () = readdir($h); closedir($h); print "t $label ", now() - $t, " 1 $c\n" }
sub wr { my ($label) = @_; my $buf = "x" x 4096; my $t = now();
  sysopen(my $h, "$d/w", O_WRONLY) or die "open w: $!"; syswrite($h, $buf) == 4096 or die "write: $!";
  $h->sync or die "fsync: $!"; close($h); print "t $label ", now() - $t, " 1 4096\n" }
if ($phase eq "readdir") { listing("readdir_cold") }
elsif ($phase =~ /^stat-(\w)$/) { stats("stat_cold:$1", $1, 1) }
elsif ($phase eq "open") { my @f = names("o"); my $ok = 0; my $t = now();
  for (@f) { if (sysopen(my $h, $_, O_RDONLY)) { $ok++; close($h) } }
  print "t open_cold:o ", now() - $t, " $n $ok\n" }
elsif ($phase eq "read") { sysopen(my $h, "$d/big", O_RDONLY) or die "open big: $!"; my ($buf, $got, $all);
  my $t = now(); while (($got = sysread($h, $buf, 1 << 20)) > 0) { $all += $got }
  print "t read_cold ", now() - $t, " 1 $all\n" }
elsif ($phase eq "warm") { stats("stat_warm:b", "b", $reps); stats("stat_warm:m", "m", $reps);
  listing("readdir_warm") }
elsif ($phase eq "write") { wr("first_write"); wr("later_write") }
else { die "unknown phase $phase" }
"""

#: overlayfs refuses more lower layers than this (OVL_MAX_STACK).
MAX_DEPTH = 500

#: Phases run each after a cache drop, in this order.
COLD_PHASES = ("readdir", "stat-b", "stat-t", "stat-m", "open", "read")

#: (label in the probe's output, metric, what its value is)
_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("stat_cold:b", "layers.stat_bottom_cold", "per stat of a bottom-layer file, caches dropped"),
    ("stat_cold:t", "layers.stat_top_cold", "per stat of a top-layer file, caches dropped"),
    ("stat_cold:m", "layers.stat_miss_cold", "per stat of a name in no layer, caches dropped"),
    ("open_cold:o", "layers.open_bottom_cold", "per open+close of a bottom-layer file, caches dropped"),
    ("stat_warm:b", "layers.stat_bottom_warm", "per stat of a bottom-layer file, cached"),
    ("stat_warm:m", "layers.stat_miss_warm", "per stat of a name in no layer, cached"),
    ("readdir_cold", "layers.readdir_cold", "listing the directory merged from all layers, caches dropped"),
    ("readdir_warm", "layers.readdir_warm", "the same listing again"),
    ("first_write", "layers.first_write", "first 4 KiB write + fsync into a bottom-layer file"),
    ("later_write", "layers.later_write", "the same write again"),
)


@dataclass(frozen=True)
class LayersParams(Params):
    workload: ClassVar[str] = "layers"

    depths: tuple[int, ...] = (1, 4, 16, 64)
    #: Names per group (bottom stat, bottom open, top stat, misses).
    per_group: int = 64
    big_mib: int = 16
    write_kib: int = 1024
    #: Repetitions of the warm stats inside one exec.
    warm_repetitions: int = 20
    #: Drop the caches (host, and a guest's own) before each cold phase; off, "cold" is not cold.
    drop_caches: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if max(self.depths) > MAX_DEPTH:
            raise UsageError(f"workload layers: depths go up to {MAX_DEPTH} (overlayfs' lower-layer limit)")

    @classmethod
    def quick(cls) -> LayersParams:
        return cls(depths=(1, 16), big_mib=8, warm_repetitions=5)

    def placement(self) -> Placement:
        return Placement(
            per_group=self.per_group, big_bytes=self.big_mib << 20, write_bytes=self.write_kib << 10
        )


@dataclass(frozen=True)
class ProbeOutput:
    #: label -> (nanoseconds, operations, count the probe checked: hits, entries, bytes)
    timings: Mapping[str, tuple[int, int, int]]
    dropped_inside: bool | None


_LINE = re.compile(r"^t (\S+) (-?\d+) (\d+) (\d+)$", re.MULTILINE)


def parse_probe(stdout: str) -> ProbeOutput:
    timings = {
        m.group(1): (int(m.group(2)), int(m.group(3)), int(m.group(4))) for m in _LINE.finditer(stdout)
    }
    if not timings or any(ns < 0 or ops <= 0 for ns, ops, _ in timings.values()):
        raise WorkloadError("the layers probe printed no timings (or negative ones)")
    dropped = re.search(r"^dropped (yes|no)$", stdout, re.MULTILINE)
    return ProbeOutput(timings, None if dropped is None else dropped.group(1) == "yes")


def _check_counts(t: Mapping[str, tuple[int, int, int]], p: LayersParams, entries: int) -> None:
    """The probe saw the stack it was meant to: every stacked name found, no miss found, the whole
    big file read, every layer's entries in the listing."""
    expect = {
        "stat_cold:b": p.per_group,
        "stat_cold:t": p.per_group,
        "stat_cold:m": 0,
        "open_cold:o": p.per_group,
        "stat_warm:b": p.per_group * p.warm_repetitions,
        "stat_warm:m": 0,
        "read_cold": p.big_mib << 20,
        "readdir_cold": entries,
        "readdir_warm": entries,
    }
    for label, want in expect.items():
        if label in t and t[label][2] != want:
            raise WorkloadError(
                f"layers probe {label}: saw {t[label][2]}, expected {want}; rebuild the stack"
            )


def merged_entries(depth: int, p: LayersParams) -> int:
    """What a listing of the merged directory holds: ``.``, ``..`` and every layer's files."""
    placement = p.placement()
    bottom_top = 2 * p.per_group + 2 + p.per_group
    return 2 + depth * placement.spread_per_layer + bottom_top


def probe_measurements(
    out: ProbeOutput, depth: int, p: LayersParams, meta: Mapping[str, Any]
) -> list[Measurement]:
    _check_counts(out.timings, p, merged_entries(depth, p))
    params = {"depth": depth}
    result: list[Measurement] = []
    for label, metric, what in _FIGURES:
        if label not in out.timings:
            continue
        ns, ops, _ = out.timings[label]
        result.append(Measurement(metric, ns / ops / 1e9, "seconds", "lower", params, {**meta, "what": what}))
    if "read_cold" in out.timings:
        ns, _, size = out.timings["read_cold"]
        result.append(
            Measurement(
                "layers.read_cold",
                size / (max(ns, 1) / 1e9),
                "bytes_per_second",
                "higher",
                {**params, "size_bytes": size},
                {**meta, "what": "sequential read of a bottom-layer file, 1 MiB reads, caches dropped"},
            )
        )
    return result


def drop_host_caches(proc: Path = Path("/proc")) -> bool:
    """sync, then drop the host's page, dentry and inode caches; False where this process may not."""
    os.sync()
    try:
        (proc / "sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def add_layer_seconds(stack: LayerStack, kind: LayerStackKind, scratch: Path) -> float:
    """What one more layer costs on the host at this depth (see the module docstring)."""
    target = scratch / f"extra-{stack.depth}"
    t0 = time.monotonic_ns()
    if kind is LayerStackKind.QCOW2_CHAIN:
        # What a snapshot costs: the same overlay a guest's data disk gets, over the whole chain.
        make_layers_disk(stack, Path(f"{target}.qcow2"), spec_name="layers.add_layer")
    else:
        (target / LAYERS_SUBDIR).mkdir(parents=True)
        fd = os.open(target / LAYERS_SUBDIR / "extra", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"l" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
    return (time.monotonic_ns() - t0) / 1e9


class LayersWorkload(BaseWorkload):
    name = "layers"
    description = "image layers / snapshot chain depth: lookups, misses, cold reads, copy-up"
    tools = ("perl", "sync")
    max_repetitions = 5
    quick_repetitions = 1
    params_type = LayersParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        p = LayersParams.of(ctx)
        caps = ctx.driver.capabilities
        kind = caps.layer_stack
        if kind is None:
            reason = (
                "its root is the host's own tree: no read-only layers to stack"
                if caps.root_storage is RootStorage.HOST_FS
                else f"the driver attaches no layer stacks ({caps.root_storage} root, capabilities.layer_stack unset)"
            )
            return [Measurement("layers.applicable", 0, "bool", "none", {}, {"reason": reason})]
        if ctx.state_dir is None or ctx.scratch is None:
            raise WorkloadError("the layers workload needs the run's state dir (for its cached stacks)")
        from isobench.images import find_image

        image = find_image(ctx.state_dir)
        budget = self.budget(ctx)
        kinds = (StackKind.DIRS, StackKind.CHAIN) if kind is LayerStackKind.QCOW2_CHAIN else (StackKind.DIRS,)
        out: list[Measurement] = []
        reached, refused, why = 0, None, "every depth done"
        for depth in sorted(p.depths):
            try:
                budget.left()
                stack = ensure_stack(ctx.state_dir, image, depth, p.placement(), kinds)
                out += self._depth(ctx, stack, kind, p, budget)
            except IsobenchError as err:
                if not out:
                    raise
                # A driver or the kernel refused this depth (or the cell's time ran out): what was
                # measured stands, and why it stopped here is recorded.
                refused, why = depth, str(err)
                log.warning("layers: stopped at depth %d on %s: %s", depth, ctx.driver.name, err)
                break
            reached = depth
        meta = {"refused_at": refused, "stopped": why, "stack": str(kind)}
        return [*out, Measurement("layers.depth_reached", reached, "layers", "higher", {}, meta)]

    def _depth(
        self, ctx: WorkloadContext, stack: LayerStack, kind: LayerStackKind, p: LayersParams, budget: Budget
    ) -> list[Measurement]:
        assert ctx.scratch is not None
        depth = stack.depth
        meta: dict[str, Any] = {"stack": str(kind), "stack_digest": stack.digest, "tool": "perl Time::HiRes"}
        params = {"depth": depth}
        if isinstance(ctx.driver, LayerAdder):
            # The driver's own way (Docker: a commit of one 4 KiB file over the stack's image).
            added, what = ctx.driver.add_layer(stack), "the driver's own: a commit of one 4 KiB file"
        elif kind is LayerStackKind.QCOW2_CHAIN:
            added, what = add_layer_seconds(stack, kind, ctx.scratch), "qemu-img create -b <top>"
        else:
            added = add_layer_seconds(stack, kind, ctx.scratch)
            what = "a new layer directory holding one 4 KiB file, fsync'd"
        out = [Measurement("layers.add_layer", added, "seconds", "lower", params, {**meta, "what": what})]
        with ctx.sandbox(layers=stack) as sb:
            out.append(Measurement("layers.start_to_ready", _to_ready(sb), "seconds", "lower", params, meta))
            root = ctx.driver.capabilities.layers_path(LAYERS_SUBDIR)
            probes, host_dropped, inside = self._probe(sb, root, p, budget)
        meta |= {"dropped_on_host": host_dropped, "dropped_inside": inside}
        out += probe_measurements(parse_probe(probes), depth, p, meta)
        return out

    def _probe(self, sb: Sandbox, root: str, p: LayersParams, budget: Budget) -> tuple[str, bool, bool]:
        text: list[str] = []
        host_dropped = inside = p.drop_caches

        def run(phase: str, drop: bool) -> None:
            nonlocal host_dropped, inside
            drop = drop and p.drop_caches
            if drop:
                host_dropped &= drop_host_caches()
            argv = [
                "perl",
                "-e",
                PROBE,
                root,
                "1" if drop else "0",
                phase,
                str(p.per_group),
                str(p.warm_repetitions),
            ]
            res = run_checked(sb, argv, timeout=budget.left(), what=f"layers probe {phase}")
            parsed = parse_probe(res.stdout)
            if drop:
                inside &= bool(parsed.dropped_inside)
            text.append(res.stdout)

        for phase in COLD_PHASES:
            run(phase, drop=True)
        run("warm", drop=False)
        run("write", drop=False)
        return "\n".join(text), host_dropped, inside


def _to_ready(sb: Sandbox) -> float:
    phases: Sequence[Any] = sb.phases
    by_name = {ph.name: ph for ph in phases}
    if "ready" not in by_name:
        raise WorkloadError("the driver recorded no ready phase")
    return float((by_name["ready"].end_ns - min(ph.start_ns for ph in phases)) / 1e9)


WORKLOAD = LayersWorkload
