"""Running the catalogue against one sandbox and turning verdicts into Measurements."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from isobench.drivers.base import Sandbox, SandboxSpec
from isobench.errors import CellTimeout, IsobenchError, WorkloadError
from isobench.leakage import rules
from isobench.leakage import series as s
from isobench.leakage.catalogue import STATIC_PROBES, Facts, StaticProbe, decide_shared_kernel, first_disk
from isobench.leakage.correlation import CORRELATION_PROBES, CorrelationProbe
from isobench.leakage.host import Canaries, HostView
from isobench.leakage.loads import LoadKind, running_load
from isobench.leakage.rules import Verdict
from isobench.model import Measurement
from isobench.periodic import periodically

log = logging.getLogger(__name__)

__all__ = [
    "ERROR_MARK",
    "CorrelationSettings",
    "ProbeResult",
    "Score",
    "decide_static",
    "measurements",
    "parse_sections",
    "run_correlations",
    "run_static",
    "score",
    "split_sections",
    "static_script",
]

_SECTION = "@@isobench-probe "


@dataclass(frozen=True)
class ProbeResult:
    name: str
    weight: int
    description: str
    verdict: Verdict


@dataclass(frozen=True)
class Score:
    count: int
    weighted: int
    max_weighted: int
    #: Probes scored (leaks or closed).
    evaluated: int
    #: Probes shown but not scored: could not run / ran but cannot tell.
    errors: int = 0
    inconclusive: int = 0
    #: Summed weight of those left out (errors and inconclusive).
    left_out_weight: int = 0
    #: The score's interval: its lowest and highest value over every status each probe's evidence
    #: allows (:attr:`Verdict.plausible`): errors and inconclusive ones closed or leaking, uncertain
    #: correlation channels anywhere their r's interval reaches. Two configurations whose intervals
    #: overlap are not ranked apart by this run.
    low: float = 0.0
    high: float = 0.0
    #: Scored probes whose evidence sits within its sampling error of the rule's threshold.
    uncertain: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.weighted / self.max_weighted if self.max_weighted else 0.0

    @property
    def bounds(self) -> tuple[float, float]:
        """The score if every probe left out were closed, and if every one leaked."""
        total = self.max_weighted + self.left_out_weight
        if not total:
            return 0.0, 0.0
        return 100.0 * self.weighted / total, 100.0 * (self.weighted + self.left_out_weight) / total

    @property
    def interval(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class CorrelationSettings:
    """The issue asks for 8-12 on/off periods of 0.25-0.5 s."""

    period: float = 0.4
    periods: int = 12
    interval: float = 0.05
    #: Time before the pattern starts, covering the exec's start-up.
    lead: float = 1.0
    tail: float = 0.3

    #: Load groups to drive (None: all). Each group is one exec of a few seconds per sandbox.
    loads: tuple[LoadKind, ...] | None = None

    @classmethod
    def quick(cls) -> CorrelationSettings:
        # Every load, as in a full run, only shorter: a quick score over fewer channels ranked the
        # drivers differently from a full one (2026-11-30). What a short series cannot decide is
        # "inconclusive" (rules.UNDECIDED_CORRELATION), left out of the score and listed.
        return cls(period=0.25, periods=8)


# --- static probes -----------------------------------------------------------------------------


#: A probe's script prints this (and a reason) when it cannot run here, e.g. a tool is missing.
ERROR_MARK = "@@error "
_RC = "@@rc "
#: Exit codes of a shell that could not find (127) or execute (126) a command.
_NOT_RUN = {126: "a command it needs is not executable", 127: "a command it needs is missing"}


def static_script(probes: Sequence[StaticProbe], facts: Facts) -> str:
    parts = []
    for p in probes:
        parts.append(f'echo "{_SECTION}{p.name}"')
        parts.append(f"( {p.script(facts)} ) 2>/dev/null")
        parts.append(f'echo "{_RC}$?"')
    parts.append("exit 0")
    return "\n".join(parts) + "\n"


def split_sections(stdout: str) -> dict[str, str]:
    """Each probe's output, without the exit-status lines."""
    return {k: text for k, (text, _rc) in parse_sections(stdout).items()}


def parse_sections(stdout: str) -> dict[str, tuple[str, int | None]]:
    """Each probe's output and its script's exit status (None when the section has no status line)."""
    out: dict[str, list[str]] = {}
    rcs: dict[str, int | None] = {}
    current: str | None = None
    for line in stdout.splitlines():
        if line.startswith(_SECTION):
            current = line[len(_SECTION) :].strip()
            out.setdefault(current, [])
            rcs.setdefault(current, None)
        elif current is not None and line.startswith(_RC):
            rest = line[len(_RC) :].strip()
            rcs[current] = int(rest) if rest.isdigit() else None
        elif current is not None:
            out[current].append(line)
    return {k: ("\n".join(v), rcs[k]) for k, v in out.items()}


def _could_not_run(probe: StaticProbe, section: tuple[str, int | None] | None) -> Verdict | None:
    """An error verdict when the probe's section says it did not run, else None."""
    if section is None:
        return rules.error(probe.rule, "no output section: the probing exec stopped before this probe")
    text, rc = section
    for line in text.splitlines():
        if line.startswith(ERROR_MARK):
            return rules.error(probe.rule, line[len(ERROR_MARK) :].strip())
    if rc in _NOT_RUN:
        return rules.error(probe.rule, f"exit {rc}: {_NOT_RUN[rc]} in the sandbox")
    return None


def decide_static(
    probes: Sequence[StaticProbe],
    host: Mapping[str, str | None],
    inside: Mapping[str, str],
    facts: Facts,
    statuses: Mapping[str, int | None] | None = None,
) -> list[ProbeResult]:
    """Pure: readings in, verdicts out. boot_id decides first whether the kernel is shared.

    ``statuses`` (each probe's exit status, from :func:`parse_sections`) lets a probe that did not
    run be told from one that found nothing; without it every reading is taken as given."""
    shared = decide_shared_kernel(host.get("boot_id"), inside.get("boot_id"))
    facts = replace(facts, shared_kernel=shared)
    results = []
    for p in probes:
        failed = None
        if statuses is not None:
            section = (inside[p.name], statuses.get(p.name)) if p.name in inside else None
            failed = _could_not_run(p, section)
        v = failed or p.decide(host.get(p.name), inside.get(p.name), facts)
        results.append(ProbeResult(p.name, p.weight, p.description, v))
    return results


def run_static(
    sandbox: Sandbox,
    spec: SandboxSpec,
    canaries: Canaries,
    *,
    host_view: HostView | None = None,
    probes: Sequence[StaticProbe] = STATIC_PROBES,
    timeout: float = 60.0,
) -> list[ProbeResult]:
    hv = host_view or HostView()
    facts = Facts(
        canaries=canaries,
        run_id=spec.run_id,
        sandbox_name=spec.name,
        allowed_cpus=len(spec.cpuset) if spec.cpuset else spec.vcpus,
        memory_mib=spec.memory_mib,
        host_disk=first_disk(hv.read("proc/partitions")),
    )
    script = static_script(probes, facts)
    host = {p.name: p.host(hv, facts) for p in probes}
    res = sandbox.exec(["sh", "-c", script], timeout=timeout)
    if _SECTION not in res.stdout:
        raise WorkloadError(
            f"leakage probes produced no output in {sandbox.name} (exit {res.exit_code}): "
            f"{res.stderr.strip()[:200]}; check that the image has sh, cat and grep"
        )
    facts = replace(facts, exec_seconds=res.seconds)
    sections = parse_sections(res.stdout)
    inside = {k: text for k, (text, _rc) in sections.items()}
    statuses = {k: rc for k, (_text, rc) in sections.items()}
    return decide_static(probes, host, inside, facts, statuses)


# --- correlation probes ------------------------------------------------------------------------


def decide_correlation(
    probe: CorrelationProbe,
    samples: Sequence[s.Sample],
    pattern: s.LoadPattern,
    offset: float,
    how: str,
    host_samples: Sequence[s.Sample] | None = None,
) -> Verdict:
    """Pure: the recorded samples and the host's pattern in, a verdict out.

    ``host_samples`` (the host reading the same file meanwhile, on its boot clock) tell a series
    that is constant inside because the sandbox has its own copy (closed: the host's moved) from
    one that is constant everywhere (a saturated host: inconclusive), and a series that does not
    follow the load because the sandbox is isolated (closed: the host's own reading followed it,
    r >= 0.5)
    from one where the load never showed, not even on the host (inconclusive: /proc/pressure/cpu
    gave r = 0.02 inside one run with the CPUs saturated by other work and 0.96 in the next)."""
    xs, ys = s.aligned_points(samples, probe.path, probe.extract, probe.kind, pattern, offset)
    if not xs:
        return Verdict("correlation", False, f"{probe.path} not readable inside", n=0)
    v = rules.correlation(xs, ys)
    if v.inconclusive and len(set(ys)) == 1 and host_samples:
        _hx, hy = s.aligned_points(host_samples, probe.path, probe.extract, probe.kind, pattern, 0.0)
        if len(set(hy)) > 1:
            return Verdict(
                "correlation",
                False,
                f"constant inside over {len(ys)} samples while the host's moved "
                f"({min(hy):.4g}..{max(hy):.4g} over {len(hy)}) ({how})",
                n=len(ys),
            )
    if v.status == "closed" and host_samples and probe.host_reference:
        hx, hy = s.aligned_points(host_samples, probe.path, probe.extract, probe.kind, pattern, 0.0)
        on_host = rules.correlation(hx, hy) if hx else None
        # the host's reading need not clear the leak bar, only show the load (r >= 0.5)
        if on_host is not None and (on_host.r is None or on_host.r < rules.UNDECIDED_CORRELATION):
            host_r = "constant" if on_host.r is None else f"r={on_host.r:.3f}"
            return replace(
                v,
                inconclusive=True,
                evidence=f"{v.evidence}, but the host's own reading did not follow the load either "
                f"({host_r} over {len(hx)}): cannot tell ({how})",
            )
    return replace(v, evidence=f"{v.evidence} ({how})")


def run_correlations(
    sandbox: Sandbox,
    *,
    run_id: str,
    settings: CorrelationSettings,
    host_view: HostView | None = None,
    probes: Sequence[CorrelationProbe] = CORRELATION_PROBES,
    loads: Iterable[LoadKind] | None = None,
    scratch_root: Path = Path("/var/tmp"),
) -> list[ProbeResult]:
    hv = host_view or HostView()
    results: list[ProbeResult] = []
    chosen = loads if loads is not None else settings.loads
    wanted = set(chosen) if chosen is not None else None
    groups: dict[LoadKind, list[CorrelationProbe]] = {}
    for p in probes:
        if wanted is not None and p.load not in wanted:
            continue
        if p.host_optional and not hv.read(p.path):
            results.append(
                ProbeResult(
                    p.name,
                    p.weight,
                    p.description,
                    rules.not_applicable("correlation", f"host has no {p.path}"),
                )
            )
            continue
        groups.setdefault(p.load, []).append(p)
    scratch = Path(tempfile.mkdtemp(prefix=f"isobench-{run_id}-leak-", dir=scratch_root))
    try:
        for load, members in groups.items():
            results.extend(_run_group(sandbox, load, members, settings, scratch, hv))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


#: Faulting in memory is slow in a nested guest (~0.2 s for the toucher): quarter-second periods
#: would measure the ramp rather than the level.
_MIN_PERIOD: dict[str, float] = {"memory": 0.5}


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@contextlib.contextmanager
def _host_sampler(hv: HostView, paths: Sequence[str], interval: float) -> Iterator[list[s.Sample]]:
    """The host reads the same files as the sandbox, in a thread, for as long as the block runs."""
    samples: list[s.Sample] = []

    def sample() -> None:
        files = {p: text for p in paths if (text := hv.read(p)) is not None}
        samples.append(s.Sample(_boottime(), files))

    with periodically(sample, interval, name="leakage-host-sampler"):
        yield samples


def _run_group(
    sandbox: Sandbox,
    load: LoadKind,
    members: Sequence[CorrelationProbe],
    st: CorrelationSettings,
    scratch: Path,
    hv: HostView,
) -> list[ProbeResult]:
    paths = sorted({p.path for p in members})
    st = replace(st, period=max(st.period, _MIN_PERIOD.get(load, 0.0)))
    pattern_len = st.period * st.periods
    script = s.sampler_script(paths, st.lead + pattern_len + st.tail, st.interval)
    t0 = _boottime()
    pattern = s.LoadPattern(start=t0 + st.lead, period=st.period, periods=st.periods)
    try:
        with (
            running_load(load, pattern.start, st.period, st.periods, scratch),
            _host_sampler(hv, paths, st.interval) as host_samples,
        ):
            res = sandbox.exec(["sh", "-c", script], timeout=pattern_len + st.lead + st.tail + 60)
            t1 = _boottime()
    except CellTimeout:
        raise
    except IsobenchError as err:
        # One group's exec failing says nothing about the sandbox's isolation: shown, not scored.
        return _all_error(members, f"the sampling exec failed: {err}")
    samples = s.parse_dump(res.stdout)
    if len(samples) < 2:
        why = f"sampling loop gave {len(samples)} samples (exit {res.exit_code}: {res.stderr.strip()[:120]})"
        return _all_error(members, why)
    out = []
    offset, how = s.align_offset(samples[0].t, samples[-1].t, t0, t1)
    for p in members:
        v = decide_correlation(p, samples, pattern, offset, how, host_samples)
        log.info("leakage %s: %s", p.name, v.evidence)
        out.append(ProbeResult(p.name, p.weight, p.description, v))
    return out


def _all_error(members: Sequence[CorrelationProbe], why: str) -> list[ProbeResult]:
    return [
        ProbeResult(p.name, p.weight, p.description, replace(rules.error("correlation", why), n=0))
        for p in members
    ]


# --- scoring and measurements -----------------------------------------------------------------


def score(results: Sequence[ProbeResult]) -> Score:
    """Weighted share of the *scored* probes that leak: errors, inconclusive and n/a stay out. Its
    interval takes every probe at the end of what its evidence allows that lowers (closed, else left
    out, else leaks) or raises (leaks, else left out, else closed) the score."""
    scored = [r for r in results if r.verdict.scored]
    leaking = [r for r in scored if r.verdict.leaks]
    low = _extreme(results, ("closed", "inconclusive", "leaks"))
    high = _extreme(results, ("leaks", "inconclusive", "closed"))
    return Score(
        count=len(leaking),
        weighted=sum(r.weight for r in leaking),
        max_weighted=sum(r.weight for r in scored),
        evaluated=len(scored),
        errors=sum(r.verdict.status == "error" for r in results),
        inconclusive=sum(r.verdict.status == "inconclusive" for r in results),
        left_out_weight=sum(r.weight for r in results if r.verdict.status in ("error", "inconclusive")),
        low=low,
        high=high,
        uncertain=sum(r.verdict.uncertain for r in results),
    )


def _extreme(results: Sequence[ProbeResult], preference: tuple[rules.Status, ...]) -> float:
    """The score with each probe at the first status of ``preference`` its evidence allows."""
    weighted = total = 0
    for r in results:
        allowed = r.verdict.plausible
        st = next((s for s in preference if s in allowed), None)
        if st == "leaks":
            weighted += r.weight
        if st in ("leaks", "closed"):
            total += r.weight
    return 100.0 * weighted / total if total else 0.0


def measurements(results: Sequence[ProbeResult], params: Mapping[str, Any]) -> list[Measurement]:
    """One bool per scored probe, then ``leakage.count``, ``leakage.score``, and the counts of probes
    left out: ``leakage.errors`` and ``leakage.inconclusive`` (their reasons in the metadata)."""
    out: list[Measurement] = []
    left_out: dict[str, dict[str, str]] = {"n/a": {}, "error": {}, "inconclusive": {}}
    for r in results:
        v = r.verdict
        if not v.scored:
            left_out[v.status][r.name] = v.evidence
            continue
        meta: dict[str, Any] = {
            "evidence": v.evidence,
            "rule": v.rule,
            "weight": r.weight,
            "what": r.description,
            "status": v.status,
        }
        if v.r is not None:
            meta.update({"r": v.r, "p": v.p, "n": v.n})
        if v.r_low is not None:
            meta.update({"r_interval": [v.r_low, v.r_high], "n_eff": v.n_eff})
        if v.uncertain:
            meta["plausible"] = list(v.plausible)
        out.append(
            Measurement(
                f"leakage.{r.name}",
                1.0 if v.leaks else 0.0,
                "bool",
                "lower",
                params=dict(params),
                metadata=meta,
            )
        )
    sc = score(results)
    leaking = sorted(r.name for r in results if r.verdict.scored and r.verdict.leaks)
    uncertain = {r.name: r.verdict.evidence for r in results if r.verdict.uncertain}
    summary = {
        "leaking": leaking,
        "not_applicable": left_out["n/a"],
        "errors": left_out["error"],
        "inconclusive": left_out["inconclusive"],
        "evaluated": sc.evaluated,
    }

    def aggregate(metric: str, value: float, unit: str, meta: Mapping[str, Any]) -> Measurement:
        return Measurement(metric, value, unit, "lower", params=dict(params), metadata=dict(meta))

    out.append(aggregate("leakage.count", float(sc.count), "probes", summary))
    out.append(
        aggregate(
            "leakage.score",
            round(sc.percent, 2),
            "%",
            {
                **summary,
                "weighted": sc.weighted,
                "max_weighted": sc.max_weighted,
                "bounds": [round(b, 2) for b in sc.bounds],
                "interval": [round(b, 2) for b in sc.interval],
                "uncertain": uncertain,
                "weights": "see isobench.leakage.catalogue",
            },
        )
    )
    out.append(aggregate("leakage.errors", float(sc.errors), "probes", {"probes": left_out["error"]}))
    out.append(
        aggregate(
            "leakage.inconclusive", float(sc.inconclusive), "probes", {"probes": left_out["inconclusive"]}
        )
    )
    return out
