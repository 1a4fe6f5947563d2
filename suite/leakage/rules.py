"""The four ways a probe decides "leaks / does not leak", as pure functions.

Every probe ends in one of these rules, so a report can say *why* something counts as a leak:

- ``equal``: the sandbox reads exactly (or within a stated tolerance) what the host reads.
- ``canary``: a marker the host planted (process name, lock, mount, interface...) is found inside.
- ``correlation``: a series sampled inside follows an on/off load the host drives (Pearson r).
- ``presence``: a file, capability or device that should not be there is there.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MAX_P_VALUE",
    "MIN_CORRELATION",
    "MIN_POINTS",
    "R_CONFIDENCE",
    "UNDECIDED_CORRELATION",
    "UNDECIDED_P_VALUE",
    "Rule",
    "Status",
    "Verdict",
    "canary",
    "correlation",
    "correlation_status",
    "effective_points",
    "equal",
    "error",
    "not_applicable",
    "presence",
    "r_interval",
    "within",
]

Rule = Literal["equal", "canary", "correlation", "presence"]
#: What a verdict means for the score: only "leaks" and "closed" are scored; "error" (the probe could
#: not run), "inconclusive" (it ran but cannot tell) and "n/a" (nothing to leak here) are shown with
#: their reason and left out of the denominator, so neither a broken probe nor a short series can
#: make a sandbox look better isolated than it is.
Status = Literal["leaks", "closed", "inconclusive", "error", "n/a"]

#: A correlation probe leaks at r >= 0.8 with p < 0.01 (the issue's acceptance bar). Series are
#: oriented so that the host's load raises them; a negative r is therefore never counted. p is
#: Pearson's over the series' effective number of independent points (:func:`effective_points`), the
#: same n as r's interval: neighbouring readings are alike, and over the raw count p would claim a
#: certainty the series does not have.
MIN_CORRELATION = 0.8
MAX_P_VALUE = 0.01
#: Below the bar but at r >= 0.5, or at any positive r with p < 0.05, the series does follow the
#: load, only not clearly enough at this length (a quick run's short series on a busy host land
#: here: diskstats gave r = 0.44, p = 0.013 in a quick run and r = 0.88 in a full one):
#: "inconclusive", not "closed". Closed means no sign of the load at all.
UNDECIDED_CORRELATION = 0.5
UNDECIDED_P_VALUE = 0.05
#: Fewer aligned points than this cannot reach p < 0.01 at any useful r.
MIN_POINTS = 8
#: Confidence of r's interval (:func:`r_interval`). A leaks or closed verdict whose rule gives another
#: status somewhere in that interval is *uncertain*: the next run may well give the other one.
R_CONFIDENCE = 0.95

#: Statuses a scored correlation verdict moves through as r grows (at a fixed number of points).
_ORDER: tuple[Status, ...] = ("closed", "inconclusive", "leaks")

#: Evidence strings are stored with every sample; keep them readable in a table cell.
_EVIDENCE_MAX = 240


@dataclass(frozen=True)
class Verdict:
    """One probe's answer. ``applicable=False`` means the host has nothing to leak (e.g. no RAPL)."""

    rule: Rule
    leaks: bool
    evidence: str
    applicable: bool = True
    #: Correlation probes only: Pearson r, its two-sided p value (over ``n_eff``) and the number of
    #: points.
    r: float | None = None
    p: float | None = None
    n: int | None = None
    #: Ran, but cannot tell (too few samples, a constant series, a significant but weak r): shown,
    #: not scored.
    inconclusive: bool = False
    #: The probe could not run (a tool missing inside, its section lost, the exec failed): shown,
    #: not scored. Never read as "closed".
    error: bool = False
    #: Correlation probes only: r's interval (:data:`R_CONFIDENCE`) over the series' effective
    #: number of independent points (``n_eff``, fewer than ``n``: neighbouring readings are alike).
    r_low: float | None = None
    r_high: float | None = None
    n_eff: float | None = None

    @property
    def status(self) -> Status:
        if not self.applicable:
            return "n/a"
        if self.error:
            return "error"
        if self.inconclusive:
            return "inconclusive"
        return "leaks" if self.leaks else "closed"

    @property
    def scored(self) -> bool:
        return self.status in ("leaks", "closed")

    @property
    def plausible(self) -> tuple[Status, ...]:
        """The statuses this evidence allows, for the score's interval: a probe that could not run or
        decide may be either way; a correlation verdict may be any status whose r threshold (0.5,
        0.8) lies within r's interval; every other verdict is what it is (static readings repeat
        exactly).

        Only the r thresholds count: at r near 0 over n independent points, the 95% interval's upper
        end *is* the r at which p = 0.05, so the p rule alone would call every closed channel
        uncertain by a coin flip. A flip between closed and inconclusive through p alone moves the
        score by one probe's weight in the denominator (under a point)."""
        st = self.status
        if st in ("error", "inconclusive"):
            return ("closed", "leaks")
        if st == "n/a" or self.r_low is None or self.r_high is None or self.n is None:
            return (st,)
        ends = [_ORDER.index(_status_by_r(r)) for r in (self.r_low, self.r_high)]
        lo, hi = min(*ends, _ORDER.index(st)), max(*ends, _ORDER.index(st))
        return _ORDER[lo : hi + 1]

    @property
    def uncertain(self) -> bool:
        """Scored, but its evidence sits within its own sampling error of the rule's threshold."""
        return self.scored and len(self.plausible) > 1


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EVIDENCE_MAX else text[: _EVIDENCE_MAX - 3] + "..."


def not_applicable(rule: Rule, why: str) -> Verdict:
    return Verdict(rule=rule, leaks=False, evidence=_short(why), applicable=False)


def error(rule: Rule, why: str) -> Verdict:
    """The probe could not run: never a "closed" answer."""
    return Verdict(rule=rule, leaks=False, evidence=_short(why), error=True)


def equal(host: str | None, inside: str | None, *, what: str = "value") -> Verdict:
    """Exact equality of two non-empty readings (whitespace-trimmed)."""
    h = (host or "").strip()
    i = (inside or "").strip()
    if not h:
        return not_applicable("equal", f"host has no {what}")
    if not i:
        return Verdict("equal", False, f"{what} not readable inside")
    if h == i:
        return Verdict("equal", True, f"same {what} as host: {h}")
    return Verdict("equal", False, f"inside {what} {i} != host {h}")


def within(host: float | None, inside: float | None, tolerance: float, *, what: str) -> Verdict:
    """Numeric equality up to ``tolerance`` (clock readings taken moments apart)."""
    if host is None:
        return not_applicable("equal", f"host has no {what}")
    if inside is None:
        return Verdict("equal", False, f"{what} not readable inside")
    diff = abs(host - inside)
    if diff <= tolerance:
        return Verdict(
            "equal", True, f"{what} {inside:g} matches host {host:g} (|d|={diff:.3g} <= {tolerance:.3g})"
        )
    return Verdict("equal", False, f"{what} {inside:g} differs from host {host:g} by {diff:.3g}")


def canary(token: str | None, inside: str | None, *, where: str) -> Verdict:
    """The planted ``token`` appears in what the sandbox read."""
    if not token:
        return not_applicable("canary", f"no canary could be planted for {where}")
    text = inside or ""
    for line in text.splitlines():
        if token in line:
            return Verdict("canary", True, f"host canary {token} visible in {where}: {line.strip()}")
    return Verdict("canary", False, f"canary {token} not visible in {where}")


def presence(found: Sequence[str], *, what: str) -> Verdict:
    """Something that should be hidden is there; ``found`` names each such thing."""
    if found:
        return Verdict("presence", True, f"{what}: {', '.join(found)}")
    return Verdict("presence", False, f"no {what}")


def correlation(
    pattern: Sequence[float],
    series: Sequence[float],
    *,
    min_r: float = MIN_CORRELATION,
    max_p: float = MAX_P_VALUE,
    undecided_r: float = UNDECIDED_CORRELATION,
    undecided_p: float = UNDECIDED_P_VALUE,
    min_points: int = MIN_POINTS,
) -> Verdict:
    """Pearson r between the host's on/off pattern and the series read inside, point by point:
    leaks at r >= ``min_r`` and p < ``max_p``; inconclusive short of that at r >= ``undecided_r`` or
    at any positive r with p < ``undecided_p``; closed otherwise. p is over the effective number of
    points (:func:`effective_points`), as r's interval is."""
    from scipy import stats

    if len(pattern) != len(series):
        raise ValueError(f"pattern has {len(pattern)} points, series {len(series)}")
    n = len(series)
    if n < min_points:
        return Verdict(
            "correlation", False, f"only {n} aligned samples (< {min_points})", n=n, inconclusive=True
        )
    if len(set(pattern)) < 2:
        return Verdict(
            "correlation", False, f"load pattern constant over {n} samples", n=n, inconclusive=True
        )
    if len(set(series)) < 2:
        # Constant: either nothing reaches the sandbox, or the host is saturated so the load changes
        # nothing there either (e.g. 100% busy CPUs). Not proof either way.
        return Verdict("correlation", False, f"series constant over {n} samples", n=n, inconclusive=True)
    r = float(stats.pearsonr(pattern, series).statistic)
    if math.isnan(r):
        return Verdict("correlation", False, f"r undefined over {n} samples", n=n, inconclusive=True)
    n_eff = effective_points(pattern, series)
    p = _pearson_p(r, n_eff)
    status = correlation_status(
        r, n_eff, min_r=min_r, max_p=max_p, undecided_r=undecided_r, undecided_p=undecided_p, p=p
    )
    lo, hi = r_interval(r, n_eff)
    evidence = f"r={r:.3f} [{lo:.2f}, {hi:.2f}] p={p:.2g} n={n} n_eff={n_eff:.1f}"
    if status == "inconclusive":
        evidence += f" (follows the load, short of r>={min_r:g} with p<{max_p:g}: cannot decide)"
    return Verdict(
        "correlation",
        status == "leaks",
        evidence,
        r=round(r, 4),
        p=p,
        n=n,
        inconclusive=status == "inconclusive",
        r_low=round(lo, 4),
        r_high=round(hi, 4),
        n_eff=round(n_eff, 1),
    )


def correlation_status(
    r: float,
    n: float,
    *,
    min_r: float = MIN_CORRELATION,
    max_p: float = MAX_P_VALUE,
    undecided_r: float = UNDECIDED_CORRELATION,
    undecided_p: float = UNDECIDED_P_VALUE,
    p: float | None = None,
) -> Status:
    """The correlation rule on r over ``n`` independent points (for autocorrelated series their
    effective number; ``p``: Pearson's two-sided p, derived from r and n when not given): leaks at
    r >= ``min_r`` and p < ``max_p``; inconclusive short of that at r >= ``undecided_r`` or at any
    positive r with p < ``undecided_p``; closed otherwise."""
    if p is None:
        p = _pearson_p(r, n)
    if r >= min_r and p < max_p:
        return "leaks"
    if r >= undecided_r or (r > 0 and p < undecided_p):
        return "inconclusive"
    return "closed"


def _status_by_r(r: float) -> Status:
    """The correlation rule's r thresholds alone (the margin of :attr:`Verdict.plausible`)."""
    if r >= MIN_CORRELATION:
        return "leaks"
    return "inconclusive" if r >= UNDECIDED_CORRELATION else "closed"


def _pearson_p(r: float, n: float) -> float:
    """Pearson's two-sided p of r over ``n`` independent points (a fractional effective n is fine:
    Student's t takes any positive degrees of freedom)."""
    from scipy import stats

    if n <= 2:
        return 1.0
    if abs(r) >= 1.0:
        return 0.0
    t = r * math.sqrt((n - 2) / (1.0 - r * r))
    return float(2 * stats.t.sf(abs(t), n - 2))


def _lag1(xs: Sequence[float]) -> float:
    mean = sum(xs) / len(xs)
    d = [x - mean for x in xs]
    var = sum(v * v for v in d)
    return sum(a * b for a, b in itertools.pairwise(d)) / var if var else 0.0


def effective_points(pattern: Sequence[float], series: Sequence[float]) -> float:
    """How many independent points the correlation of two autocorrelated series rests on:
    n (1 - a b) / (1 + a b), a and b their lag-1 autocorrelations (Bretherton et al. 1999, J. Climate
    12:1990, eq. 31). Readings every 50 ms of a load switched every 0.25-0.5 s are far from
    independent: a square wave alone has a ~ 0.8, so 61 readings over 8 periods count ~12 times."""
    n = len(series)
    ab = max(0.0, _lag1(pattern) * _lag1(series))
    return n * (1 - ab) / (1 + ab)


def r_interval(r: float, n_eff: float, confidence: float = R_CONFIDENCE) -> tuple[float, float]:
    """Fisher's interval of Pearson r over ``n_eff`` independent points; (-1, 1) at 4 or fewer."""
    from scipy import stats

    if n_eff <= 4:
        return -1.0, 1.0
    z = math.atanh(max(-0.999999, min(0.999999, r)))
    half = float(stats.norm.ppf(0.5 + confidence / 2)) / math.sqrt(n_eff - 3)
    return math.tanh(z - half), math.tanh(z + half)
