"""Results on disk: a crash-safe journal while running, a versioned document when done.

Layout of one run directory::

    journal.jsonl   header line, then one line per Sample, fsync'd as produced; an end line if the
                    runner finished (even by Ctrl-C). A killed run leaves a journal without one.
    results.json    the finalised, versioned document (written atomically: temp file, fsync, rename)
    samples.csv     every sample flattened, for spreadsheets and notebooks

Schema history (bump SCHEMA_VERSION and add a line for every change to results.json):
    1  2026-11-28  first version: {"schema_version", "run", "samples"}; a sample is Sample.to_dict().
    2  2026-11-30  run["order"] = {"design", "seed"} (the seeded random order of every round);
                   run["budget"] in a budgeted run ({"seconds", "spent", "precision", "stopped",
                   "limits", "figures_counted", "figures_met", "cells_skipped", "units": [{"driver",
                   "workload", "variant", "n", "cost_s", "status", "figures": [{"metric", "variant",
                   "n", "median", "half_width", "met"}]}]}); run["ab"] = {"labels", "configs"} in an
                   A/B run, whose samples carry params["ab"] = label; every sample's metadata has
                   "round" and "slot". Version 1 loads as is (it has none of these keys).
    3  2026-11-30  fleet runs (``--cluster``): every sample has params["host"] (the host it was
                   measured on, so cells, ratios to native and comparisons stay per host) and
                   metadata["host_run_id"] (the id its resources on that host carried: what
                   `isobench gc` there names); a retried cell's metadata["retry_of"] (the lost host);
                   run["cluster"] = {"scheduler", "hosts": {name: {"name", "resources", "info",
                   "drivers"}}} and run["fleet"] = {"lost_hosts", "cells_retried", "cells_lost"}.
                   Versions 1 and 2 load as is (a single-host run has none of these keys).
    4  2026-11-30  leakage: a probe that could not run or could not decide has no leakage.<probe>
                   sample any more (version 2 stored a 0, i.e. "closed", with metadata inconclusive);
                   leakage.score leaves them out of its denominator and lists them in its metadata
                   ("errors", "inconclusive": {probe: reason}); new aggregates leakage.errors and
                   leakage.inconclusive (counts); every leakage.<probe> has metadata["status"]. Leak
                   scores of version 4 and of earlier ones differ by construction (history shows a
                   step). Versions 1-3 load as is.
    5  2026-11-30  leakage: leakage.score's metadata has "interval" ([low, high]: the score over every
                   status its probes' evidence allows) and "uncertain" ({probe: evidence}: scored
                   correlation channels whose r's 95% interval reaches another verdict); such a
                   channel's leakage.<probe> has metadata "plausible" (its statuses), and every
                   correlation one "r_interval" and "n_eff". Reports rank two leak scores only when
                   their intervals are disjoint. Version 4 loads as is (its "bounds", the range over
                   the probes left out, stands in for the interval); 1-3 have none (shown without).
    6  2026-12-01  leakage: a correlation channel's metadata "p" (and the p < 0.01 / p < 0.05 of its
                   verdict) is Pearson's p over "n_eff", the effective number of points r's interval
                   already used, not over the raw count "n"; same keys. A channel near a p threshold
                   may get another verdict than under version 5 (e.g. a window with r 0.84 over 8
                   readings: p 0.009 leaks in 5, p 0.12 over 4.4 effective points in 6). Version 5 and
                   older load as is.
    7  2026-12-01  A/B runs: run["budget"]["changes"] = [{"driver", "workload", "label", "against",
                   "metric", "variant", "n", "change", "half_width", "met"}]: every counted figure's
                   change label/against paired by round and how well it is known (the relative
                   half-width of its 95% interval); these decide an A/B run's extra rounds (the
                   units' per-side figures stay). An A/B run's default cap, run["budget"]["limits"],
                   is 400 instead of 100. Versions 1-6 load as is (no "changes").
    8  2026-12-01  disk: disk.<pattern>.latency.p50/p99 are fio's total latency (lat: submission +
                   completion, metadata "latency" "total: submission + completion (fio lat)", with
                   "clat_p50_seconds" and "slat_mean_seconds" beside); versions 1-7 stored the
                   completion latency alone (clat), which leaves out what io_submit does itself: on
                   the reference host a 4 KiB direct read took 97 us, of which clat saw 2.6 us. Disk
                   latencies of version 8 and older ones differ by construction (history shows a
                   step; a compare across them is not a regression). Versions 1-7 load as is.
    9  2026-12-01  every sample's metadata has "host_steal" where its cell spanned at least one
                   CPU-second: the share of the host's CPU time (all CPUs, /proc/stat) its own
                   hypervisor took while the cell ran (steal), or while the figure's own window ran
                   where the workload measures it (network: the iperf3 and sockperf clients).
                   Reports name cells above 10% and the ratios whose two sides' steal differs.
                   Versions 1-8 load as is (no readings).
    10 2026-12-02  a cell that met another isobench run live on the same host (when it started or
                   ended) has metadata "concurrent_runs" (their run ids), and run["concurrent_runs"]
                   = {run_id: cells} over the run; the two runs' figures disturb each other, and
                   reports say so. Versions 1-9 load as is (none recorded).
    11 2026-12-02  run["budget"]["first_pass_s"]: the budget's seconds the first pass (warm-up and
                   every unit at its minimum n) took, the rest went to extra rounds; reports say
                   how much was left for them. Versions 2-10 load as is (not recorded).
    12 2026-12-02  idle-memory: a cgroup sandbox's (container, runc, docker) idle-memory.host_view is
                   its pages and kernel objects from memory.stat (v1 total_rss + total_cache +
                   memory.kmem.usage_in_bytes; v2 anon + file + kernel + sock), without the per-CPU
                   charge reserve of up to 64 pages a CPU that the usage counter holds; the counter
                   is idle-memory.host_view.memory_bytes, metadata "host_view" names the source;
                   density.attributable_per_instance sums the same figure.
                   On the reference host an idle container's counter read 256 or 512 KiB while its
                   pages and kernel objects were 80-88 KiB. A guest's host view is as before
                   (qemu PSS + guest RAM RSS). Versions 1-11 load as is (their host view is the
                   counter: history shows a step, a compare across it is no regression).
    13 2026-12-02  the container driver's init is an exec'd image of its helper, so all its memory
                   (anonymous pages, page tables) is charged to the container's cgroup; before, the
                   init was the helper's cloned child and most of it stayed charged to the runner's
                   cgroup. The container's idle-memory.host_view (and .memory_rss_bytes) and
                   density.attributable_per_instance rise by that much: on the reference host from
                   80-88 to 132-140 KiB (its init: 44 KiB anonymous before, 16 of it charged; 24 KiB
                   after, all charged). Other drivers are unchanged. Every sandbox's cgroup figures
                   now include memory_rss_bytes and memory_limit_bytes (the suite's own reader, used
                   for docker too). Versions 1-12 load as is.
    14 2026-12-02  run["budget"]["first_pass_grace_s"]: seconds past the budget its first pass
                   (every cell at its minimum n) could run: the default budget's is one more
                   budget (1200), so "spent" and "first_pass_s" may exceed "seconds"; a budget the
                   user gave has 0 (a hard cap that leaves cells unstarted: cells_skipped).
                   Versions 11-13 load as is (not recorded: every budget was a hard cap).
    15 2026-12-03  startup.to_exit is the sandbox's start to ready plus the exec of the command:
                   before, the wall time from the start to the command's exit, which held the
                   check run the runc, docker and bwrap drivers make inside their create (`true`
                   once) and so counted two commands for them (runc 110 ms against 72 + 19 on
                   the reference host). The headline's start column is now this figure, "start to
                   first command": bwrap is "ready" before any of its namespaces exist (it makes
                   them in every exec), so start to ready did not compare it with the others.
                   Versions 1-14 load as is; their headline keeps start to ready.
                   Also: idle-memory and density read a cgroup's memory.stat at least 2.5 s after
                   the sandbox (the step's last one) was up. The kernel adds memory cgroup figures
                   up every 2 s, so the quick settle (1 s) read a fresh container without its
                   init's anonymous pages in about half the repetitions (108-116 KiB for 132-140).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from isobench.atomic import fsync_dir, replacing
from isobench.errors import ResultsError
from isobench.liveruns import LiveRun, find_live
from isobench.model import Sample

log = logging.getLogger(__name__)

__all__ = [
    "SCHEMA_VERSION",
    "Journal",
    "Results",
    "finalize",
    "load_results",
    "redefinitions",
    "writer_of",
]

SCHEMA_VERSION = 15
#: Versions this isobench reads (every older one it has ever written).
READABLE_VERSIONS = tuple(range(1, SCHEMA_VERSION + 1))

#: Figures whose definition changed at a schema version (the history above): a value from before
#: and one from after differ by construction, so a comparison across the change is no regression.
#: (version, metric pattern, what changed)
REDEFINED: tuple[tuple[int, str, str], ...] = (
    (4, r"^leakage\.score$", "leak scores leave inconclusive probes out of their denominator"),
    (
        8,
        r"^disk\..+\.latency\.",
        "disk latency is the total (fio lat), no longer the completion alone (clat)",
    ),
    (
        12,
        r"^(idle-memory\.host_view|density\.attributable_per_instance)$",
        "a cgroup sandbox's idle memory is its pages and kernel objects (memory.stat), no longer "
        "the usage counter with its per-CPU charge reserve",
    ),
    (
        13,
        r"^(idle-memory\.host_view(\.memory_rss_bytes)?|density\.attributable_per_instance)$",
        "the container driver's init is charged to its own cgroup (an exec'd image, no longer the "
        "helper's cloned child, whose pages stayed the runner's); other drivers are unchanged",
    ),
    (
        15,
        r"^(idle-memory\.host_view(\.memory_rss_bytes)?|density\.attributable_per_instance)$",
        "a cgroup's memory.stat is read once the kernel has added up its last pages (2.5 s after the "
        "sandbox was up), no longer after the quick 1 s settle that missed a fresh container's init",
    ),
    (
        15,
        r"^startup\.to_exit$",
        "start to exit is start to ready plus the command's exec, no longer the wall time that held "
        "the check run the runc, docker and bwrap drivers make inside their create",
    ),
)


def redefinitions(versions: Iterable[int], metrics: Iterable[str]) -> list[str]:
    """What changed between the oldest and the newest of ``versions`` for any of ``metrics``: one
    line per redefinition (empty when the runs share their definitions)."""
    vs = sorted(set(versions))
    names = set(metrics)
    out = []
    for version, pattern, what in REDEFINED:
        if not vs or not vs[0] < version <= vs[-1]:
            continue
        hit = sorted(m for m in names if re.search(pattern, m))
        if hit:
            out.append(
                f"results schema {version} redefined {len(hit)} figure(s) these runs compare "
                f"({', '.join(hit[:3])}{', ...' if len(hit) > 3 else ''}): {what}; the runs span schemas "
                f"{vs[0]}-{vs[-1]}, so their changes there are by construction, not a regression"
            )
    return out


JOURNAL = "journal.jsonl"
RESULTS = "results.json"
CSV = "samples.csv"


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o: Any) -> Any:
    """NaN/inf are not JSON; store them as null rather than writing invalid documents."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Mapping):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


def dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(_clean(obj), default=_json_default, allow_nan=False, **kw)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` so that a crash leaves either the old file or the new one, never half of one."""
    with replacing(path) as f:
        f.write(text)


class Journal:
    """Append-only JSONL log of a run; every record is fsync'd before ``append`` returns."""

    def __init__(self, run_dir: Path, run: Mapping[str, Any]) -> None:
        self.path = run_dir / JOURNAL
        #: Why the journal cannot be written any more (a full disk), once a write has failed.
        self.failed: str | None = None
        self._f: IO[str] = open(self.path, "x", encoding="utf-8")  # noqa: SIM115 - closed in close()
        fsync_dir(run_dir)
        self._write({"type": "header", "schema_version": SCHEMA_VERSION, "run": dict(run)})

    def _write(self, record: Mapping[str, Any]) -> None:
        if self.failed is not None:
            raise ResultsError(self.failed)
        end = self._f.tell()
        try:
            self._f.write(dumps(record) + "\n")
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as err:
            # A full disk (ENOSPC) or a dead one: cut the half-written line, so the journal stays
            # whole records that `isobench finalize` reads, and say it in one line.
            self.failed = (
                f"cannot write the journal {self.path}: {err.strerror or err}; what was measured "
                f"before is kept there (free space, then `isobench finalize {self.path.parent}`)"
            )
            self._cut(end)
            raise ResultsError(self.failed) from err

    def _cut(self, end: int) -> None:
        """Drop everything after offset ``end``, buffered bytes included (they never reach disk)."""
        fd = os.dup(self._f.fileno())
        with contextlib.suppress(OSError):
            self._f.close()  # its flush fails again on a full disk; the buffer is dropped with it
        try:
            os.ftruncate(fd, end)
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def append(self, sample: Sample) -> None:
        self._write({"type": "sample", **sample.to_dict()})

    def close(self, status: str, **extra: Any) -> None:
        if self._f.closed or self.failed is not None:
            return  # a failed journal already said why; its end stays unwritten ("interrupted")
        self._write({"type": "end", "status": status, "ended": time.time(), **extra})
        self._f.close()


@dataclass
class Results:
    run: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    path: Path | None = None
    #: The schema the run was written with (a run rebuilt from an old journal keeps its own).
    schema_version: int = SCHEMA_VERSION

    @property
    def run_id(self) -> str:
        return str(self.run.get("run_id", "?"))

    def measured(self, *, include_warmup: bool = False) -> Iterator[Sample]:
        for s in self.samples:
            if s.value is not None and (include_warmup or not s.warmup):
                yield s

    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.failed]


def read_journal(path: Path) -> Results:
    """Rebuild results from a journal, tolerating a torn last line from a killed writer."""
    run: dict[str, Any] | None = None
    version = SCHEMA_VERSION
    samples: list[Sample] = []
    end: dict[str, Any] | None = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ResultsError(f"cannot read journal {path}: {err.strerror}") from err
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if lineno == len(lines):
                log.warning("%s: dropping torn last line (the writer was killed mid-write)", path)
                continue
            raise ResultsError(f"{path}:{lineno}: corrupt journal line") from None
        kind = rec.pop("type", None)
        if kind == "header":
            _check_version(rec.get("schema_version"), path)
            version = int(rec["schema_version"])
            run = dict(rec["run"])
        elif kind == "sample":
            samples.append(Sample.from_dict(rec))
        elif kind == "end":
            end = rec
    if run is None:
        raise ResultsError(f"{path}: journal has no header; not an isobench run")
    if end is None:
        run["status"] = "interrupted"
        run.setdefault("ended", samples[-1].timestamp if samples else run.get("started"))
    else:
        run["status"] = end.get("status", "complete")
        run["ended"] = end.get("ended")
        run.update({k: v for k, v in end.items() if k not in ("status", "ended")})
    return Results(run=run, samples=samples, path=path.parent, schema_version=version)


def _check_version(version: Any, where: Path) -> None:
    if version not in READABLE_VERSIONS:
        raise ResultsError(
            f"{where}: schema version {version!r} is not supported by this isobench "
            f"(reads {', '.join(map(str, READABLE_VERSIONS))}); use a matching isobench version"
        )


CSV_FIELDS = (
    "run_id",
    "driver",
    "workload",
    "metric",
    "value",
    "unit",
    "repetition",
    "better",
    "phase",
    "warmup",
    "error",
    "timestamp",
    "params",
    "metadata",
)


def write_csv(path: Path, samples: Iterable[Sample]) -> None:
    with replacing(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for s in samples:
            d = s.to_dict()
            d["params"] = dumps(d["params"], sort_keys=True)
            d["metadata"] = dumps(d["metadata"], sort_keys=True)
            w.writerow({k: d[k] for k in CSV_FIELDS})


def writer_of(journal: Results) -> LiveRun | None:
    """The live runner still writing the journal ``journal`` was read from (it has no end record
    yet), or None for a journal whose run ended or was killed."""
    return find_live(journal.run_id) if journal.run.get("status") == "interrupted" else None


def finalize(run_dir: Path, journal: Results | None = None) -> Results:
    """Turn a run directory's journal (``journal``, when already read) into results.json +
    samples.csv (idempotent; works after a kill)."""
    results = journal if journal is not None else read_journal(run_dir / JOURNAL)
    doc = {
        # the journal's own: an old run finalised by a newer isobench keeps its definitions
        "schema_version": results.schema_version,
        "run": results.run,
        "samples": [s.to_dict() for s in results.samples],
    }
    try:
        atomic_write_text(run_dir / RESULTS, dumps(doc, indent=1) + "\n")
        write_csv(run_dir / CSV, results.samples)
    except OSError as err:
        raise ResultsError(
            f"cannot write the results of {run_dir}: {err.strerror or err}; the journal there is "
            f"whole: free space, then `isobench finalize {run_dir}`"
        ) from err
    return results


def load_results(path: Path) -> Results:
    """Load a run from its directory or its results.json; a directory with only a journal is read
    from the journal (e.g. a killed run not finalised yet)."""
    if path.is_dir():
        doc_path = path / RESULTS
        if not doc_path.exists():
            if (path / JOURNAL).exists():
                log.warning("%s has no %s yet; reading the journal", path, RESULTS)
                results = read_journal(path / JOURNAL)
                if writer_of(results) is not None:  # not killed: still being written
                    results.run["status"] = "running"
                return results
            raise ResultsError(f"{path} is not an isobench results directory (no {RESULTS} or {JOURNAL})")
    else:
        doc_path = path
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{doc_path} does not exist") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ResultsError(f"{doc_path} is not readable JSON: {err}") from err
    if not isinstance(doc, dict) or "schema_version" not in doc:
        raise ResultsError(f"{doc_path} is not an isobench results document")
    _check_version(doc["schema_version"], doc_path)
    return Results(
        run=dict(doc["run"]),
        samples=[Sample.from_dict(s) for s in doc["samples"]],
        path=doc_path.parent,
        schema_version=int(doc["schema_version"]),
    )
