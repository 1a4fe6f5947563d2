"""The headline: which metric answers which question, direction-aware colours, and runs that lack
drivers or workloads."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
from isobench.model import Sample
from isobench.reports import overview, render
from isobench.reports.findings import findings
from isobench.reports.headline import CONTAINMENT, MEMORY, QUESTIONS, build_headline, verdict
from isobench.results import Results

from .conftest import build_real_results

E_NOTATION = re.compile(r"[0-9]e[+-][0-9]")


def test_every_question_of_a_full_run_is_answered(real_results: Results) -> None:
    h = build_headline(real_results)
    assert [q.key for q in h.questions] == [q.key for q in QUESTIONS]
    assert h.drivers == ("host", "container", "runc", "bwrap", "vm", "qemu")
    for (driver, key), fig in h.figures.items():
        assert not E_NOTATION.search(fig.text + fig.detail), (driver, key, fig.text, fig.detail)


def test_the_defined_params_pick_the_cell(real_results: Results) -> None:
    h = build_headline(real_results)
    # cpu: the single-thread variant (the all-vCPU one runs ~1.9x faster)
    cpu = h.figure("host", "cpu")
    assert cpu is not None and cpu.value == pytest.approx(2900, rel=0.05)
    # disk: QD1 on each storage, not QD32; shown as IOPS
    root, volume = h.figure("host", "disk_root"), h.figure("vm", "disk_volume")
    assert root is not None and root.value == pytest.approx(9000, rel=0.05)
    assert root.text.endswith("k IOPS")
    assert volume is not None and volume.value == pytest.approx(2700, rel=0.05)
    # leak: the container's hardened profile, compared with the host's only profile
    leak = h.figure("container", "leak")
    assert leak is not None and leak.value == 20.0 and leak.verdict == "better"
    # startup: to a first command's exit (ready 3.0 s + exec 0.14 s), in human units
    start = h.figure("vm", "start")
    assert start is not None and start.text == "3.14 s"


def test_ratio_questions_show_ratios_and_native_shows_its_value(real_results: Results) -> None:
    h = build_headline(real_results)
    vm, host = h.figure("vm", "cpu"), h.figure("host", "cpu")
    assert vm is not None and host is not None
    assert vm.text.startswith("\u00d70.1") and "\u2013" in vm.detail  # ratio with its interval
    assert host.text.endswith("ops/s") and host.verdict == "baseline"


def test_colours_follow_the_metric_direction() -> None:
    h = build_headline(build_real_results(n=5))  # 5 against 5: the exact rank test can reach 95%
    verdicts = {(d, k): f.verdict for (d, k), f in h.figures.items()}
    # fewer events/s (higher is better) and more ns per syscall (lower is better) are both worse
    assert verdicts[("vm", "cpu")] == "worse"
    assert verdicts[("vm", "syscall")] == "worse"
    assert verdicts[("container", "syscall")] == "worse"  # the seccomp filter: x1.2
    # within noise, or under the minimum effect: neutral
    assert verdicts[("container", "cpu")] == "same"
    assert verdicts[("runc", "syscall")] == "same"  # x1.02
    # a lower leak score is better; a single repetition of a measured figure is never coloured
    assert verdicts[("vm", "leak")] == "better"
    assert verdicts[("vm", "rtt")] == "unsure"
    assert verdicts[("container", CONTAINMENT)] == "better"
    assert verdicts[("bwrap", CONTAINMENT)] == "same"
    # idle memory has no native figure: worse when over 5% of the sandbox's 512 MiB
    assert verdicts[("vm", MEMORY)] == "worse" and verdicts[("host", MEMORY)] == "baseline"
    assert verdicts[("container", MEMORY)] == "same"
    assert verdicts[("bwrap", MEMORY)] == "none"  # no host-side figure


def test_memory_without_a_known_sandbox_size_is_not_coloured(real_results: Results) -> None:
    run = {k: v for k, v in real_results.run.items() if k != "config"}
    h = build_headline(Results(run=run, samples=real_results.samples))
    fig = h.figure("vm", MEMORY)
    assert fig is not None and fig.verdict == "none" and fig.text == "247 MiB"


@pytest.mark.parametrize(
    ("ratio", "lo", "hi", "better", "n", "expected"),
    [
        (0.5, 0.4, 0.6, "higher", 3, "worse"),
        (0.5, 0.4, 0.6, "lower", 3, "better"),
        (2.0, 1.8, 2.2, "higher", 3, "better"),
        (2.0, 1.8, 2.2, "lower", 3, "worse"),
        (0.9, 0.7, 1.1, "lower", 3, "same"),
        (1.03, 1.02, 1.04, "lower", 3, "same"),  # significant but under the minimum effect
        (2.0, 2.0, 2.0, "lower", 1, "unsure"),
        (2.0, 1.8, 2.2, "none", 3, "none"),
        (math.nan, math.nan, math.nan, "lower", 3, "none"),
    ],
)
def test_verdict(ratio: float, lo: float, hi: float, better: str, n: int, expected: str) -> None:
    assert verdict(ratio, lo, hi, better, n=n, n_native=n) == expected  # type: ignore[arg-type]


def test_exact_verdicts_need_no_interval() -> None:
    assert verdict(0.2, math.nan, math.nan, "lower", n=1, n_native=1, exact=True) == "better"
    assert verdict(1.0, math.nan, math.nan, "lower", n=1, n_native=1, exact=True) == "same"
    assert verdict(0.5, math.nan, math.nan, "higher", n=1, n_native=1, exact=True) == "worse"


def test_findings_say_what_matters(real_results: Results) -> None:
    ov = overview(real_results)
    text = " ".join(ov.findings)
    assert (
        "An idle libvirt guest (vm) costs 247 MiB of host memory, about 490\u00d7 an idle isobench container"
        in text
    )
    # the fastest *sandbox*: native (host) starts faster still and is not one
    assert re.search(
        r"bubblewrap sandbox \(bwrap\) has run a first command [^;]+ after its start, the fastest sandbox here;",
        text,
    )
    assert "TCG figures, not KVM" in text
    # 3 repetitions against 3: the exact rank test cannot reach 95%, so no colour, but far off is said
    assert "CPU: worse than native" not in text
    assert (
        "Too few repetitions for the exact rank test to tell at 95%, but more than 2\u00d7 off native: CPU vm \u00d70.1"
        in text
    )
    assert "Measured once (n=1), so not ranked: disk IOPS (root)" in text
    assert "Measured once, but more than 2\u00d7 off native: disk IOPS (root) vm \u00d70.3" in text
    assert not E_NOTATION.search(text)


@pytest.mark.parametrize(
    ("drivers", "workloads"),
    [
        (("host", "container"), ("startup",)),
        (("container", "vm"), ("startup", "idle-memory", "cpu")),  # no native
        (("host",), ("cpu", "disk", "leakage", "interference")),
        (("vm",), ("idle-memory",)),
    ],
)
def test_partial_runs_give_a_partial_headline(drivers: tuple[str, ...], workloads: tuple[str, ...]) -> None:
    r = build_real_results(drivers, workloads)
    ov = overview(r)
    h = ov.headline
    assert set(h.drivers) == set(drivers)
    assert {q.workload for q in h.questions} <= set(workloads)
    assert ov.findings
    if "host" not in drivers:
        # nothing is compared with native (idle memory is judged against the sandbox's size)
        assert all(f.verdict in ("none", "unsure") for f in h.figures.values() if f.question != MEMORY)
        assert any("No native (host) driver ran" in f for f in ov.findings)


def test_a_run_before_schema_15_keeps_start_to_ready_in_its_headline(real_results: Results) -> None:
    # its startup.to_exit held the check run the runc, docker and bwrap drivers make inside create
    old = dataclasses.replace(real_results, schema_version=14)
    h = build_headline(old)
    (start,) = [q for q in h.questions if q.key == "start"]
    assert (start.title, start.metric) == ("start to ready", "startup.to_ready")
    vm = h.figure("vm", "start")
    assert vm is not None and vm.text == "3.00 s"
    assert re.search(
        r"\(bwrap\) is ready in [^;]+, the fastest sandbox here;", " ".join(overview(old).findings)
    )
    new = build_headline(real_results)
    (start,) = [q for q in new.questions if q.key == "start"]
    assert (start.title, start.metric) == ("start to first command", "startup.to_exit")


def test_partial_run_renders(tmp_path: pytest.TempPathFactory) -> None:
    r = build_real_results(("host", "container"), ("startup",))
    paths = render(r, tmp_path)  # type: ignore[arg-type]
    html = paths.html.read_text()
    assert html.index('id="headline"') < html.index("start to first command") < html.index('id="warnings"')


def test_empty_run_has_an_empty_headline() -> None:
    r = Results(run={"run_id": "x"}, samples=[])
    h = build_headline(r)
    assert h.empty and h.questions == ()
    assert findings(h, r.run) == [
        "No figure of this run answers a headline question (no successful measurement)."
    ]


def _with_budget(results: Results, target: float) -> Results:
    """The run record a budgeted run writes, computed from the samples by the budget's own code."""
    from dataclasses import replace as dc_replace

    from isobench.budget import figure_precision

    units = []
    for driver in {s.driver for s in results.samples}:
        for workload in ("startup", "cpu", "idle-memory"):
            mine = [s for s in results.samples if s.driver == driver and s.workload == workload]
            figs = figure_precision(mine, ("startup.to_exit", "cpu.*", "idle-memory.host_view"))
            units.append(
                {"driver": driver, "workload": workload, "figures": [f.to_dict(target) for f in figs]}
            )
    run = dict(results.run, budget={"precision": target, "units": units})
    return dc_replace(results, run=run)


def test_figures_below_a_budgets_precision_target_are_marked() -> None:
    from isobench.reports.headline import BELOW_TARGET

    results = build_real_results(n=6)
    plain_h = build_headline(results)
    assert plain_h.below_target == 0 and plain_h.footnote() == ""
    # the samples spread by ~1% (cov 0.01): every figure meets 5%, none meets 0.01%
    loose = build_headline(_with_budget(results, 0.05))
    assert loose.below_target == 0 and loose.footnote() == ""
    tight = build_headline(_with_budget(results, 0.0001))
    marked = {(d, q) for (d, q), f in tight.figures.items() if f.below_target}
    # idle memory too (its figure is the median repetition's host-side total, not a cell's median),
    # where a driver has a host-side figure: not native, not bwrap
    with_memory = {d for (d, q), f in tight.figures.items() if q == "memory" and f.n}
    assert with_memory and "host" not in with_memory
    assert marked == {(d, q) for d in tight.drivers for q in ("start", "cpu")} | {
        (d, "memory") for d in with_memory
    }
    vm = tight.figure("vm", "start")
    assert vm is not None and vm.text.endswith(BELOW_TARGET) and "precision target" in vm.tip
    leak = tight.figure("container", "leak")  # not a counted figure: never marked
    assert leak is not None and not leak.below_target
    assert "\u00b10.01%" in tight.footnote() and BELOW_TARGET in tight.footnote()


def test_a_run_without_headline_figures_says_where_its_figures_are() -> None:
    from isobench.reports import overview

    from .conftest import _samples

    samples = _samples("container", "density", "density.n_reached", [20.0], unit="sandboxes")
    r = Results(run={"run_id": "x"}, samples=list(samples))
    ov = overview(r)
    assert ov.headline.empty
    assert ov.findings[0] == (
        "No figure of this run answers a headline question; the report's tables and sections hold its 1 figure."
    )


def test_guest_rows_name_their_kernel_flavour_from_the_samples(tmp_path: Path) -> None:
    from dataclasses import replace as dc_replace

    from isobench.reports.markdown import headline_markdown

    base = build_real_results(drivers=("host", "container", "vm", "qemu"), workloads=("startup", "cpu"))
    # the flavour is read from each sample's metadata, whatever the driver is called: here the
    # vm driver ran the micro kernel and qemu both (a run with [drivers.qemu] kernel switched midway)
    flavour = {"vm": ["micro"], "qemu": ["stock", "micro"]}
    samples = [
        dc_replace(
            s, metadata={**s.metadata, "kernel_flavour": flavour[s.driver][i % len(flavour[s.driver])]}
        )
        if s.driver in flavour
        else s
        for i, s in enumerate(base.samples)
    ]
    results = dc_replace(base, samples=samples)
    h = build_headline(results)
    assert [h.label(d) for d in h.drivers] == [
        "host",
        "container",
        "vm (micro kernel)",
        "qemu (micro + stock kernels)",
    ]
    md = headline_markdown(h)
    assert "| vm (micro kernel) |" in md and "| qemu (micro + stock kernels) |" in md
    assert "| host |" in md
    html = render(results, tmp_path).html.read_text()
    headline = html[html.index('id="headline"') : html.index("</section>", html.index('id="headline"'))]
    assert "<th>vm (micro kernel)</th>" in headline and "<th>qemu (micro + stock kernels)</th>" in headline
    # without the metadata (results from before the micro guest) the row is the driver's name
    assert build_headline(base).label("qemu") == "qemu"


def test_a_column_names_the_range_of_repetitions_when_drivers_got_different_counts() -> None:
    from isobench.reports.markdown import headline_markdown

    from .conftest import _samples

    # a budget gives the cheap host start many more repetitions than a guest's
    samples = _samples("host", "startup", "startup.to_exit", [0.001 + i * 1e-5 for i in range(59)])
    samples += _samples("vm", "startup", "startup.to_exit", [3.0, 3.1, 3.2])
    samples += _samples("host", "cpu", "cpu.events_per_second", [100.0, 101.0], better="higher")
    samples += _samples("vm", "cpu", "cpu.events_per_second", [10.0, 11.0], better="higher")
    h = build_headline(Results(run={"run_id": "x"}, samples=samples))
    assert h.n_text("start") == "3\u201359"
    assert h.n_text("cpu") == "2"
    assert h.n_text("disk_root") == ""
    assert "start to first command (n=3\u201359)" in headline_markdown(h)


def _with_steal(r: Results, steal: dict[tuple[str, str], float]) -> Results:
    samples = [
        dataclasses.replace(s, metadata={**s.metadata, "host_steal": steal[(s.driver, s.workload)]})
        if (s.driver, s.workload) in steal
        else s
        for s in r.samples
    ]
    return dataclasses.replace(r, samples=samples)


def test_ratios_whose_slower_side_ran_under_more_host_steal_are_named() -> None:
    from isobench.reports.cells import group_cells
    from isobench.reports.grid import question_tables
    from isobench.reports.headline import HELD_BACK_NOTE

    base = build_real_results(("host", "container", "vm"), ("cpu", "network"))
    steal = {("host", "network"): 0.05, ("container", "network"): 0.21, ("host", "cpu"): 0.04}

    def said(extra: dict[tuple[str, str], float]) -> list[str]:
        return [f for f in overview(_with_steal(base, steal | extra)).findings if "steal" in f]

    # the once-measured RTT (container x4.7 off native) ran held back; vm's CPU verdict ran under the
    # same steal as native's (within 5 points, neither above 10%)
    assert said({("vm", "cpu"): 0.06}) == [
        "These ratios' slower side ran while the host lost notably more of its CPU time to steal (its "
        "hypervisor ran something else), so they may be the host's rather than the sandbox's: network RTT "
        "(native at 5% steal): container \u00d74.73 at 21%."
    ]
    assert said({("vm", "cpu"): 0.16})[0].endswith(
        ": CPU (native at 4% steal): vm \u00d70.130 at 16%; network RTT (native at 5% steal): container \u00d74.73 at 21%."
    )
    # steal on the faster side only shrinks a gap: native held back while container was slower anyway
    assert said({("host", "network"): 0.3, ("container", "network"): 0.05}) == []
    # the headline cell's tooltip carries its steal
    figures = overview(_with_steal(base, steal)).headline.figures
    held = figures[("container", "rtt")]
    assert held.tip == (
        "median 65.6 us, n=1, host steal 21%; \u00d74.73 native; native ran at 5% steal: the host may "
        "explain this ratio"
    )
    # and its figure is marked, in the headline and in the per-workload table, with the note saying why
    assert held.held_back and held.text == "65.6 us\u2021"
    assert overview(_with_steal(base, steal)).headline.footnote().endswith(HELD_BACK_NOTE)
    (table,) = question_tables(group_cells(_with_steal(base, steal)))["network"][:1]
    row = dict(table.rows)
    assert [f.text for f in row["container"] if f is not None and f.question == "network.tcp_rtt.p50"] == [
        "65.6 us\u2021"
    ]
    # a faster side's steal only shrinks a gap: no mark
    assert (
        not overview(_with_steal(base, steal | {("host", "network"): 0.3}))
        .headline.figures[("container", "rtt")]
        .held_back
    )
    # no readings (results before schema 9): no sentence
    assert not [f for f in overview(base).findings if "steal" in f]


def test_the_report_says_what_the_held_back_mark_means_under_the_tables_that_carry_it(tmp_path: Path) -> None:
    from html import escape

    from isobench.reports.headline import HELD_BACK_NOTE

    base = build_real_results(("host", "container"), ("cpu", "network"))
    html = render(
        _with_steal(base, {("host", "network"): 0.05, ("container", "network"): 0.21}), tmp_path
    ).html.read_text()
    tables = html.split('id="tables"', 1)[1].split('id="figures"', 1)[0]
    note = f'<p class="legend">{escape(HELD_BACK_NOTE)}</p>'
    # once under the headline, once under the network tables; cpu's tables carry no mark
    assert html.count(note) == 2 and tables.count(note) == 1
    assert tables.split('id="table-network"', 1)[1].count(note) == 1
    plain = render(base, tmp_path / "plain").html.read_text()
    assert "\u2021" not in plain and escape(HELD_BACK_NOTE) not in plain


def test_rtt_ratios_come_from_adjacent_windows_where_the_run_paired_them() -> None:
    from isobench.reports.cells import group_cells
    from isobench.reports.grid import question_tables
    from isobench.reports.headline import PAIRED_WORDS

    from .conftest import _samples

    base = _with_steal(
        build_real_results(("host", "container", "vm"), ("network",)),
        {("host", "network"): 0.05, ("container", "network"): 0.21},
    )
    params = next(s.params for s in base.samples if s.metric == "network.tcp_rtt.p50")
    pairs = [1.2, 1.25, 1.3, 1.22, 1.28]
    paired = _samples(
        "container", "network", "network.tcp_rtt.p50_paired_ratio", [1.25], unit="ratio",
        params=dict(params), metadata={"pair_ratios": pairs},
    )  # fmt: skip
    r = dataclasses.replace(base, samples=[*base.samples, *paired])
    ov = overview(r)
    fig = ov.headline.figures[("container", "rtt")]
    # the cells measured apart said x4.73 (native's cell in a slow stretch); the pairs say x1.25
    assert (fig.paired, fig.ratio, fig.ratio_low, fig.ratio_high) == (5, 1.25, 1.2, 1.3)
    assert fig.verdict == "worse" and fig.text.endswith(" us") and "\u00d71.25" in fig.detail
    assert fig.tip.endswith(
        "native (median of 5 pairs of adjacent windows, sandbox / host loopback, interval 93.8%)"
    )
    # both sides of a pair ran in the same seconds: no steal caveat for it
    assert not [f for f in ov.findings if "steal" in f]
    assert "Network RTT: worse than native in container (\u00d71.25)" in " ".join(ov.findings)
    (rtt,) = [q for q in ov.headline.questions if q.key == "rtt"]
    assert rtt.params.endswith(PAIRED_WORDS)
    # a driver without pairs keeps the cells' ratio
    assert ov.headline.figures[("vm", "rtt")].paired == 0
    # the cells carry the pairs: a headline from cells alone, and the per-workload table, say the same
    assert build_headline(cells=group_cells(r)).figures[("container", "rtt")] == fig
    (table,) = question_tables(group_cells(r))["network"]
    assert "p50_paired_ratio" not in " ".join(table.columns)  # shown as the p50's ratio instead
    row = dict(table.rows)["container"]
    assert [f.ratio for f in row if f is not None and f.question == "network.tcp_rtt.p50"] == [1.25]


def test_a_paired_ratio_is_its_own_ratio_to_native_and_stands_for_its_figure_in_the_chart() -> None:
    from isobench.reports.plots.ratios import speed_rows
    from isobench.reports.tables import summary_table

    from .conftest import _samples

    base = build_real_results(("host", "container", "runc"), ("network",))
    params = next(s.params for s in base.samples if s.metric == "network.tcp_rtt.p50")
    paired = _samples(
        "container", "network", "network.tcp_rtt.p50_paired_ratio", [1.2, 1.3, 1.25], unit="ratio",
        params=dict(params),
    )  # fmt: skip
    summary = summary_table(dataclasses.replace(base, samples=[*base.samples, *paired]))
    row = summary[summary["metric"].eq("network.tcp_rtt.p50_paired_ratio")].iloc[0]
    assert (row["ratio_to_native"], row["ratio_ci_low"], row["ratio_ci_high"]) == (1.25, 1.2, 1.3)
    drawn = speed_rows(summary)
    rtt = drawn[drawn["metric"].str.startswith("network.tcp_rtt.p50")]
    # container's RTT bar is its paired ratio (as a speed: 1/1.25); runc, unpaired, keeps its cells'
    assert sorted(zip(rtt["driver"], rtt["metric"], strict=True)) == [
        ("container", "network.tcp_rtt.p50_paired_ratio"),
        ("runc", "network.tcp_rtt.p50"),
    ]
    assert rtt[rtt["driver"].eq("container")]["speed"].iloc[0] == 0.8


def test_a_paired_ratio_is_coloured_only_when_its_pairs_hold_the_median_with_90_percent() -> None:
    from isobench.reports.headline import PAIRED_CONFIDENCE

    from .conftest import _samples

    base = build_real_results(("host", "container"), ("network",))
    params = next(s.params for s in base.samples if s.metric == "network.tcp_rtt.p50")

    def fig(pairs: list[float]) -> tuple[str, float]:
        paired = _samples(
            "container", "network", "network.tcp_rtt.p50_paired_ratio", [1.0], unit="ratio",
            params=dict(params), metadata={"pair_ratios": pairs},
        )  # fmt: skip
        f = build_headline(dataclasses.replace(base, samples=[*base.samples, *paired])).figures[
            ("container", "rtt")
        ]
        return f.verdict, f.ratio

    # three pairs all slower by 20-30%: the range holds the median with 75% confidence, no colour
    assert PAIRED_CONFIDENCE == 0.9 and fig([1.2, 1.3, 1.25]) == ("unsure", 1.25)
    assert fig([1.2, 1.3, 1.25, 1.22, 1.28]) == ("worse", 1.25)  # five: 94%
    assert fig([0.9, 1.3, 1.0, 1.22, 1.05])[0] == "same"


def test_findings_say_a_ratio_from_too_few_pairs_is_unsure_not_measured_once() -> None:
    from .conftest import _samples

    base = build_real_results(("host", "container", "vm"), ("cpu", "network", "disk"))
    params = next(s.params for s in base.samples if s.metric == "network.tcp_rtt.p50")

    def said(pairs: list[float], workloads: tuple[str, ...] = ("cpu", "network", "disk")) -> str:
        paired = _samples(
            "container", "network", "network.tcp_rtt.p50_paired_ratio", [1.0], unit="ratio",
            params=dict(params), metadata={"pair_ratios": pairs},
        )  # fmt: skip
        samples = [s for s in base.samples if s.workload in workloads]
        return " ".join(overview(dataclasses.replace(base, samples=[*samples, *paired])).findings)

    three = said([2.4, 2.6, 2.5])
    # RTT is ranked by its pairs (too few here), not listed with the once-measured questions
    assert "Network RTT: ratios from 3 pairs of adjacent windows (75% confidence, too few to rank)." in three
    once = three.split("Measured once (n=1), so not ranked: ", 1)[1].split(".", 1)[0]
    assert "disk" in once and "RTT" not in once
    # far off native but unsure: said as what it is, apart from the once-measured ones
    assert (
        "From 3 pairs of adjacent windows, too few to be sure, but more than 2\u00d7 off native: "
        "network RTT container \u00d72.50." in three
    )
    assert "Measured once, but more than 2\u00d7 off native: network RTT" not in three
    # five pairs are enough to colour: a verdict, no caveat of too few
    five = said([2.4, 2.6, 2.5, 2.45, 2.55])
    assert "Network RTT: worse than native in container (\u00d72.50)" in five
    assert "Network RTT: ratios from 5 pairs of adjacent windows." in five
    assert "too few" not in five
    # a run of once-measured cells only: the pairs are all that is ranked
    assert (
        "Every figure here is a single measurement (n=1): no interval, so none is ranked but by its "
        "pairs of adjacent windows. Network RTT: ratios from 5 pairs of adjacent windows."
    ) in said([2.4, 2.6, 2.5, 2.45, 2.55], ("network",))


def test_idle_memory_shows_the_median_as_every_table_does_at_an_even_n() -> None:
    """The memory chart stacks one real repetition (the lower middle at an even n); the headline
    states the median of the totals, as the per-workload table does, not that repetition's."""
    samples = [
        Sample(
            run_id="r",
            driver=d,
            workload="idle-memory",
            metric="idle-memory.host_view",
            value=v * 1024.0,
            unit="bytes",
            repetition=i,
        )
        for d, values in (("host", (0, 0, 0, 0)), ("runc", (364, 368, 372, 428)))
        for i, v in enumerate(values)
    ]
    fig = build_headline(Results(run={"run_id": "r"}, samples=samples)).figure("runc", MEMORY)
    assert fig is not None and fig.value == 370 * 1024.0 and fig.text == "370 KiB"


def test_findings_rank_what_five_repetitions_can_tell() -> None:
    text = " ".join(overview(build_real_results(n=5)).findings)
    assert "CPU: worse than native in vm" in text
    assert "Too few repetitions" not in text


@pytest.mark.parametrize(
    ("values", "native", "expected"),
    [
        # complete separation, 3 against 3: by chance 1 time in 10 (smallest p 0.1), never coloured
        ((8.14, 8.3, 9.06), (7.79, 6.59, 7.58), "unsure"),
        # 4 against 4 can reach it (smallest p 0.029)
        ((8.1, 8.3, 9.0, 8.6), (7.7, 6.5, 7.5, 7.2), "better"),
        # 5 against 5 that overlap: the bootstrap may call it, the rank test does not
        ((8.0, 7.4, 8.3, 7.1, 8.2), (7.5, 7.3, 7.0, 7.9, 6.9), "same"),
    ],
)
def test_a_sample_verdict_needs_the_exact_rank_test(
    values: tuple[float, ...], native: tuple[float, ...], expected: str
) -> None:
    from isobench.reports.verdicts import rank_checked

    assert rank_checked("better", values, native) == expected
