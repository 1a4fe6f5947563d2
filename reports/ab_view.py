"""The answer of an A/B run for the report: how each configuration changed against the first.

An A/B run (``isobench run --ab``) is asked one question: what does B change against A? The report
answers it under the headline with the same analysis as ``isobench compare RUN --ab A,B`` (paired
by round, the exact signed-rank test, Holm over every figure compared, no gate rules): the
headline's figures of every driver, whatever became of them, and every other figure whose change is
significant; the rest is counted. The headline itself shows configuration A only, so that a driver's
figure and its ratio to native come from one configuration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from isobench.model import Sample
from isobench.results import Results

from .ab import AB_PARAM, ab_labels, compare_ab
from .gate import Comparison, MetricChange, _change_text, _detectable
from .units import human

__all__ = ["AB_COLUMNS", "ABView", "ab_views", "first_configuration", "first_configuration_as_run"]

#: The columns of an A/B table (after the two medians, named by the labels).
AB_COLUMNS = ("change [95% CI]", "p (Holm)", "detectable", "verdict")

_CHANGED = ("faster", "slower", "changed")


@dataclass(frozen=True)
class ABView:
    base: str
    other: str
    comparison: Comparison
    #: (workload, metric) of the headline's questions: shown for every driver even when unchanged.
    key_metrics: frozenset[tuple[str, str]]
    #: The order drivers are listed in (the headline's); others follow by name.
    drivers: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return f"A/B: {self.other} against {self.base}"

    def rows(self) -> list[MetricChange]:
        """The headline's figures, then the other significant changes, each group by driver."""
        key = [c for c in self.comparison.changes if (c.key.workload, c.key.metric) in self.key_metrics]
        rest = [c for c in self.comparison.changes if c not in key and c.verdict in _CHANGED]
        rank = {d: i for i, d in enumerate(self.drivers)}

        def order(c: MetricChange) -> tuple[str, int, str, str, str]:
            k = c.key
            return (k.workload, rank.get(k.driver, len(rank)), k.driver, k.metric, k.variant)

        return sorted(key, key=order) + sorted(rest, key=order)

    def header(self) -> list[str]:
        return ["driver", "figure", self.base, self.other, *AB_COLUMNS]

    def cells(self, c: MetricChange) -> list[str]:
        """One row's texts, in :meth:`header`'s order, values in human units."""
        figure = c.key.metric + (f" [{c.key.variant}]" if c.key.variant else "")
        p = "n/a" if math.isnan(c.p_adjusted) else f"{c.p_adjusted:.2g}"
        return [
            c.key.driver,
            figure,
            f"{human(c.baseline_median, c.unit)} (n={c.baseline_n})",
            f"{human(c.current_median, c.unit)} (n={c.current_n})",
            _change_text(c),
            p,
            _detectable(c.detectable),
            c.verdict,
        ]

    def legend(self) -> str:
        return (
            f"Both configurations ran interleaved in every round; each change is {self.other}/{self.base} "
            "paired by round (Hodges-Lehmann estimate, exact signed-rank 95% interval), p is Holm-adjusted "
            f"over the {len(self.comparison.changes)} figures compared, detectable is the smallest change "
            "this run would flag 80% of the time. Shown: the headline's figures and every significant "
            f"change ({self.hidden()} more compared: no significant change or not judged). The same with "
            f"a gate: isobench compare RUN --ab {self.base},{self.other} --fail-on RULES. The headline above "
            f"shows {self.base}."
        )

    def hidden(self) -> int:
        """Compared figures not among :meth:`rows` (no significant change, or not judged)."""
        return len(self.comparison.changes) - len(self.rows())


def ab_views(
    results: Results, key_metrics: Iterable[tuple[str, str]], drivers: Iterable[str] = ()
) -> tuple[ABView, ...]:
    """One view per configuration after the first, against the first; none for a plain run."""
    labels = ab_labels(results)
    keys, order = frozenset(key_metrics), tuple(drivers)
    return tuple(ABView(labels[0], b, compare_ab(results, labels[0], b), keys, order) for b in labels[1:])


def first_configuration(results: Results) -> Results:
    """An A/B run's samples of its first configuration only (a plain run as it is)."""
    labels = ab_labels(results)
    if len(labels) < 2:
        return results

    def keep(s: Sample) -> bool:
        return AB_PARAM not in s.params or str(s.params[AB_PARAM]) == labels[0]

    return replace(results, samples=[s for s in results.samples if keep(s)])


def first_configuration_as_run(results: Results) -> Results:
    """An A/B run as a run among runs (``isobench history``, ``compare --history``): its first
    configuration, the one its headline shows, as if run alone: the samples without their ``ab``
    param, so their cells are the plain runs' cells, and ``run["config"]`` with that configuration's
    sandbox settings and driver options, so what differs from a neighbouring run is told right.
    ``run["ab"]`` stays, to say what the run was. A plain run comes back as it is."""
    labels = ab_labels(results)
    if len(labels) < 2:
        return results
    first = first_configuration(results)
    samples = [replace(s, params={k: v for k, v in s.params.items() if k != AB_PARAM}) for s in first.samples]
    config = dict(results.run.get("config") or {})
    options = (results.run.get("ab") or {}).get("configs", {}).get(labels[0])
    if isinstance(options, dict):
        config |= dict(options.get("sandbox") or {})
        config["driver_options"] = options.get("drivers") or {}
    return replace(results, samples=samples, run={**results.run, "config": config})
