"""The report of an A/B run answers its question under the headline: B against A, paired by round."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from isobench.model import Sample
from isobench.reports import render
from isobench.reports.ab_view import ab_views, first_configuration
from isobench.results import Results

KEY = (("startup", "startup.to_exit"),)


def _sample(driver: str, metric: str, value: float, label: str, rnd: int) -> Sample:
    return Sample(
        run_id="ab",
        driver=driver,
        workload="startup",
        metric=metric,
        value=value,
        unit="seconds",
        repetition=rnd,
        params={"ab": label},
        metadata={"round": rnd},
    )


def _ab_run(rounds: int = 12) -> Results:
    """host and container over drifting rounds: container's start-to-ready 20% slower in B, its
    clone phase 2x faster in B, its mounts phase unchanged; host unchanged throughout."""
    rng = np.random.default_rng(3)
    samples = []
    for r in range(rounds):
        level = 1.0 + 0.5 * rng.random()
        for label, ready, clone in (("A", 1.0, 1.0), ("B", 1.2, 0.5)):
            wiggle = math.exp(rng.normal(0, 0.005))
            samples += [
                _sample("host", "startup.to_exit", 2e-4 * level * wiggle, label, r),
                _sample("container", "startup.to_exit", 5e-3 * ready * level * wiggle, label, r),
                _sample("container", "startup.phase.clone", 1e-3 * clone * level * wiggle, label, r),
                _sample(
                    "container",
                    "startup.phase.mounts",
                    3e-4 * level * math.exp(rng.normal(0, 0.05)),
                    label,
                    r,
                ),
            ]
    return Results(run={"run_id": "ab", "ab": {"labels": ["A", "B"]}}, samples=samples)


def test_the_view_shows_the_headline_figures_and_every_significant_change() -> None:
    (view,) = ab_views(_ab_run(), KEY, drivers=("host", "container"))
    assert view.title == "A/B: B against A"
    rows = view.rows()
    names = [(c.key.driver, c.key.metric) for c in rows]
    # the headline's figure of every driver first (in the headline's driver order), then the rest
    assert names == [
        ("host", "startup.to_exit"),
        ("container", "startup.to_exit"),
        ("container", "startup.phase.clone"),
    ]
    host, ready, clone = rows
    assert host.verdict == "no significant change"  # shown although unchanged: it is a headline figure
    assert ready.verdict == "slower" and abs(ready.change - 0.2) < 0.01
    assert clone.verdict == "faster" and abs(clone.change + 0.5) < 0.01
    assert view.hidden() == 1  # the mounts phase: compared, unchanged, counted
    cells = view.cells(ready)
    assert view.header() == [
        "driver",
        "figure",
        "A",
        "B",
        "change [95% CI]",
        "p (Holm)",
        "detectable",
        "verdict",
    ]
    assert cells[0:2] == ["container", "startup.to_exit"]
    assert cells[2].endswith("ms (n=12)") and cells[3].endswith("ms (n=12)")  # human units
    assert cells[4].startswith("+20.0% [") and cells[-1] == "slower"
    assert "Holm-adjusted over the 4 figures compared" in view.legend()
    assert "isobench compare RUN --ab A,B" in view.legend()


def test_a_plain_run_has_no_ab_view_and_keeps_its_samples() -> None:
    results = _ab_run()
    plain = Results(
        run={"run_id": "p"}, samples=[replace(s, params={}) for s in results.samples if s.params["ab"] == "A"]
    )
    assert ab_views(plain, KEY) == ()
    assert first_configuration(plain) is plain
    first = first_configuration(results)
    assert {s.params["ab"] for s in first.samples} == {"A"} and len(first.samples) == len(
        results.samples
    ) // 2


def test_the_report_of_an_ab_run_answers_under_a_headline_of_configuration_a(tmp_path: Path) -> None:
    paths = render(_ab_run(), tmp_path)
    html = paths.html.read_text()
    assert '<section id="ab-B"><h2>A/B: B against A</h2>' in html
    assert html.index('id="headline"') < html.index('id="ab-B"') < html.index('id="warnings"')
    ab = html[html.index('id="ab-B"') : html.index("</section>", html.index('id="ab-B"'))]
    assert '<td class="v-worse">slower</td>' in ab and '<td class="v-better">faster</td>' in ab
    headline = html[html.index('id="headline"') : html.index('id="ab-B"')]
    # configuration A's container start-to-ready (~5-7.5 ms), not B's (~6-9 ms) or both pooled
    assert "n=12" in headline and "n=24" not in headline
    md = paths.markdown.read_text()
    assert "## A/B: B against A" in md
    assert "| container | startup.to_exit |" in md and "| slower |" in md
