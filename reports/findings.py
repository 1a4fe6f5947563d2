"""The findings that matter, in words, from the headline (hyperfine's "X ran N times faster than Y",
the Phoronix Test Suite's executive summary): what is slower than native and by how much, what an
idle sandbox costs, whether guests ran under KVM, and how sure the numbers are."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from isobench.stats import order_statistic_indices

from .cells import NATIVE
from .headline import (
    CONTAINMENT,
    LEAK,
    MEMORY,
    PAIRED_CONFIDENCE,
    START,
    START_TO_READY,
    Figure,
    Headline,
    ratio_words,
)
from .leak_rank import Interval, ranking_sentences
from .units import human, human_ratio, plural

__all__ = ["findings"]

# "Better"/"worse" than native is a ratio; these words say what the ratio is of.
_COMPARED = ("cpu", "membw", "disk_root", "disk_volume", "net", "rtt", "syscall")


#: What a driver is, for a sentence; an unknown driver is called by its name.
KINDS = {
    "container": "isobench container",
    "runc": "runc container",
    "docker": "Docker container",
    "bwrap": "bubblewrap sandbox",
    "vm": "libvirt guest",
    "qemu": "QEMU guest",
}


def kind(driver: str, also: str = "") -> str:
    """``libvirt guest (vm)``: what a driver is, with the name the tables use (and ``also``)."""
    inside = f"{driver}, {also}" if also else driver
    return (
        f"{KINDS[driver]} ({inside})"
        if driver in KINDS
        else f"{driver} sandbox" + (f" ({also})" if also else "")
    )


def a_kind(driver: str) -> str:
    """``an isobench container (container)``."""
    k = kind(driver)
    return f"{'an' if k[0].lower() in 'aeiou' else 'a'} {k}"


def _capital(text: str) -> str:
    """``text`` starting a sentence: its first letter upper-case, the rest as it is."""
    return text[:1].upper() + text[1:]


def _names(drivers: Sequence[str]) -> str:
    if len(drivers) <= 1:
        return "".join(drivers)
    return ", ".join(drivers[:-1]) + " and " + drivers[-1]


def _measured(h: Headline, key: str) -> list[Figure]:
    out = []
    for d in h.drivers:
        f = h.figure(d, key)
        if f is not None and f.n > 0 and not math.isnan(f.value):
            out.append(f)
    return out


def _accel(run: Mapping[str, Any], drivers: Sequence[str]) -> list[str]:
    meta = run.get("drivers") or {}
    if not isinstance(meta, Mapping):
        return []
    tcg = [d for d in drivers if isinstance(meta.get(d), Mapping) and str(meta[d].get("accel", "")) == "tcg"]
    if not tcg:
        return []
    return [
        f"Guest figures ({_names(tcg)}) are TCG figures, not KVM: the guests' CPU was emulated in "
        "software, so their start-up, CPU and I/O costs are far above what KVM guests pay."
    ]


def _startup(h: Headline) -> list[str]:
    figs = [f for f in _measured(h, START) if f.driver != NATIVE]
    if len(figs) < 2:
        return []
    figs.sort(key=lambda f: f.value)
    fast, slow = figs[0], figs[-1]
    ratio = slow.value / fast.value if fast.value else math.inf
    to_ready = START_TO_READY in h.questions
    what = "is ready in" if to_ready else "has run a first command"
    after = "" if to_ready else " after its start"
    return [
        f"{_capital(a_kind(fast.driver))} {what} {human(fast.value, fast.unit)}{after}, the fastest sandbox "
        f"here; {a_kind(slow.driver)} takes {human(slow.value, slow.unit)}, about {ratio_words(ratio)} as long."
    ]


def _memory(h: Headline) -> list[str]:
    figs = [f for f in _measured(h, MEMORY) if f.driver != NATIVE]
    if not figs:
        return []
    figs.sort(key=lambda f: f.value)
    cheap, dear = figs[0], figs[-1]
    if cheap is dear:
        text = f"An idle {kind(dear.driver)} costs {human(dear.value, 'bytes')} of host memory."
    else:
        ratio = dear.value / cheap.value if cheap.value else math.inf
        text = (
            f"An idle {kind(dear.driver)} costs {human(dear.value, 'bytes')} of host memory, about "
            f"{ratio_words(ratio)} an idle {kind(cheap.driver, human(cheap.value, 'bytes'))}."
        )
    unmeasured = [d for d in h.drivers if (f := h.figure(d, MEMORY)) and f.verdict == "none" and f.n == 0]
    if unmeasured:
        text += f" {_names(unmeasured)} reports no host-side figure."
    return [text]


def _compared(h: Headline) -> list[str]:
    """Per question, who is significantly worse than native, and who cannot be told apart."""
    out = []
    titles = {q.key: q.title for q in h.questions}
    for key in _COMPARED:
        if key not in titles:
            continue
        figs = [f for f in _measured(h, key) if f.driver != NATIVE]
        worse = [f for f in figs if f.verdict == "worse"]
        better = [f for f in figs if f.verdict == "better"]
        same = [f.driver for f in figs if f.verdict == "same"]
        if not worse and not better:
            continue
        parts = []
        if worse:
            worse.sort(key=lambda f: abs(math.log(f.ratio)) if f.ratio > 0 else 0, reverse=True)
            parts.append(
                "worse than native in " + ", ".join(f"{f.driver} ({human_ratio(f.ratio)})" for f in worse)
            )
        if better:
            parts.append("better in " + ", ".join(f"{f.driver} ({human_ratio(f.ratio)})" for f in better))
        if same:
            parts.append(f"no significant difference in {_names(same)}")
        out.append(f"{_capital(titles[key])}: " + "; ".join(parts) + ".")
    return out


def _leak_and_containment(h: Headline) -> list[str]:
    out = []
    leak = [f for f in _measured(h, LEAK) if f.driver != NATIVE]
    if leak:
        unit = leak[0].unit
        scores = [Interval(f.driver, f.value, f.ci_low, f.ci_high) for f in leak]
        out += ranking_sentences(scores, lambda v: human(v, unit))
    cont = [f for f in _measured(h, CONTAINMENT) if f.driver != NATIVE]
    if cont:
        full = [f.driver for f in cont if f.text.split("/")[0] == f.text.split("/")[-1]]
        partial = [f"{f.driver} {f.text}" for f in cont if f.driver not in full]
        text = []
        if full:
            text.append(f"{_names(full)} contained every stressor")
        if partial:
            text.append("contained: " + ", ".join(partial))
        out.append("Noisy neighbours: " + "; ".join(text) + ".")
    return out


def _single(h: Headline) -> list[str]:
    """Questions measured once have no interval and are not coloured, nor are ratios from too few
    pairs of adjacent windows or from too few repetitions for the exact test; a difference from
    native beyond 2x is still worth a sentence, said as what it is."""
    once: list[str] = []
    few: list[str] = []
    paired: list[str] = []
    pairs: set[int] = set()
    for q in h.questions:
        # start-up has its own sentence; memory has no native to compare with
        if q.exact or q.key in (MEMORY, START):
            continue
        figs = [f for f in _measured(h, q.key) if f.driver != NATIVE and _unranked_far_off(f)]
        if measured_once := [f for f in figs if not f.paired and f.n == 1]:
            once.append(_ratios(q.title, measured_once))
        if too_few := [f for f in figs if not f.paired and f.n > 1]:
            few.append(_ratios(q.title, too_few))
        if from_pairs := [f for f in figs if f.paired]:
            paired.append(_ratios(q.title, from_pairs))
            pairs |= {f.paired for f in from_pairs}
    out = []
    if once:
        out.append("Measured once, but more than 2\u00d7 off native: " + "; ".join(once) + ".")
    if few:
        out.append(
            "Too few repetitions for the exact rank test to tell at 95%, but more than 2\u00d7 off "
            "native: " + "; ".join(few) + "."
        )
    if paired:
        out.append(
            f"From {_span(pairs)} pairs of adjacent windows, too few to be sure, but more than 2\u00d7 off native: "
            + "; ".join(paired)
            + "."
        )
    return out


def _ratios(title: str, figs: Sequence[Figure]) -> str:
    """``network RTT vm x6.06, qemu x4.11``."""
    return f"{title} " + ", ".join(f"{f.driver} {human_ratio(f.ratio)}" for f in figs)


def _span(ns: set[int]) -> str:
    """``3`` or ``3\u20135``."""
    return "\u2013".join(str(n) for n in sorted({min(ns), max(ns)}))


def _unranked_far_off(f: Figure) -> bool:
    """A ratio with no verdict for want of repetitions (measured once: no interval; from too few
    pairs; or too few for the exact rank test) that is still more than 2x off native."""
    return f.verdict == "unsure" and (f.ratio >= 2 or f.ratio <= 0.5)


def _steal_caveat(h: Headline) -> list[str]:
    """The ratios a reader is told about (a verdict, or a once-measured one beyond 2x) whose slower
    side ran while the host lost notably more of its CPU time to steal than the other side did: a
    held-back host slows whichever side it happens to, so such a ratio may be the host's. Ratios of
    adjacent windows (``Figure.paired``) are left out: both sides ran in the same seconds."""
    said = []
    for q in h.questions:
        native = h.figures.get((NATIVE, q.key))
        if q.exact or q.key == MEMORY or native is None:
            continue
        hit = []
        for f in _measured(h, q.key):
            told = f.verdict in ("worse", "better") or _unranked_far_off(f)
            if told and f.held_back:
                hit.append(f"{f.driver} {human_ratio(f.ratio)} at {f.host_steal:.0%}")
        if hit:
            said.append(f"{q.title} (native at {native.host_steal:.0%} steal): " + ", ".join(hit))
    if not said:
        return []
    return [
        "These ratios' slower side ran while the host lost notably more of its CPU time to steal (its "
        "hypervisor ran something else), so they may be the host's rather than the sandbox's: "
        + "; ".join(said)
        + "."
    ]


def _certainty(h: Headline, noisy: int, total: int) -> list[str]:
    # the leak score and containment carry their own certainty (an interval, counts)
    figs = [f for f in h.figures.values() if f.n > 0 and f.question not in (LEAK, CONTAINMENT)]
    if not figs:
        return []
    ns = sorted({f.n for f in figs})
    # a question whose ratios come from pairs of adjacent windows is ranked by them, not by its n
    pairs = {q.key: {f.paired for f in _measured(h, q.key) if f.paired} for q in h.questions}
    single = [
        q.title
        for q in h.questions
        if h.n.get(q.key) == 1 and q.key not in (LEAK, CONTAINMENT) and not pairs[q.key]
    ]
    if ns == [1]:
        text = "Every figure here is a single measurement (n=1): no interval, so none is ranked" + (
            " but by its pairs of adjacent windows" if any(pairs.values()) else ""
        )
    else:
        text = (
            f"Figures are medians of n={ns[-1]} repetitions"
            if len(ns) == 1
            else f"Figures are medians of n={ns[0]}\u2013{ns[-1]} repetitions"
        )
        text += (
            " (\u00b1: the median's interval, at n\u22645 the range, 75% confidence at n=3); coloured "
            "only where the 95% interval of the ratio to native excludes 1 and the exact rank test "
            "agrees (p < 0.05: never at n=3 against 3)"
        )
        if single:
            text += f". Measured once (n=1), so not ranked: {_names(single)}"
    for q in h.questions:
        if ks := pairs[q.key]:
            # the pairs' range holds their median with this confidence (3 pairs: 75%)
            conf = order_statistic_indices(min(ks))[2]
            text += f". {_capital(q.title)}: ratios from {_span(ks)} pairs of adjacent windows" + (
                f" ({conf:.0%} confidence, too few to rank)" if conf < PAIRED_CONFIDENCE else ""
            )
    text += "."
    if total and noisy:
        text += f" {noisy} of {total} figures vary by more than 5% (CoV) between repetitions."
    return [text]


def findings(
    h: Headline, run: Mapping[str, Any], *, noisy: int = 0, total: int = 0, failed: int = 0
) -> list[str]:
    """A few sentences with what matters, most important first."""
    if h.empty:
        if total:  # measured, but only workloads no headline question asks about (density, limits)
            return [
                "No figure of this run answers a headline question; the report's tables and sections "
                f"hold its {plural(total, 'figure')}."
            ]
        return ["No figure of this run answers a headline question (no successful measurement)."]
    # TCG qualifies every guest figure after it; how sure the numbers are closes the list
    out = _startup(h) + _memory(h) + _accel(run, h.drivers) + _compared(h)
    out += _certainty(h, noisy, total) + _single(h) + _steal_caveat(h) + _leak_and_containment(h)
    if NATIVE not in h.drivers:
        out.append("No native (host) driver ran: nothing can be compared with native.")
    if failed:
        out.append(f"{plural(failed, 'cell')} failed; see the warnings.")
    return out
