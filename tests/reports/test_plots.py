"""The figures answer one question each and cannot be misread: read from the charts' own artists."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from isobench.model import Sample
from isobench.reports.cells import group_cells
from isobench.reports.plots.interference_chart import interference_chart
from isobench.reports.plots.memory_chart import UNATTRIBUTED, draw_memory, memory_bars
from isobench.reports.plots.ratios import ratio_bars, speed_rows
from isobench.reports.plots.startup import PhaseLayout, lanes, split_by_scale, startup_timeline
from isobench.reports.tables import summary_table
from isobench.results import Results
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

MiB = 2.0**20


def _mem(driver: str, metric: str, values: list[float]) -> list[Sample]:
    return [
        Sample(
            run_id="r",
            driver=driver,
            workload="idle-memory",
            metric=metric,
            value=v,
            unit="bytes",
            repetition=i,
        )
        for i, v in enumerate(values)
    ]


def _memory_run() -> list[Sample]:
    s: list[Sample] = []
    # A guest whose parts add up to its total, one whose parts fall short, one whose parts overshoot.
    for driver, (pss, ram, total) in {
        "vm": ((60, 61, 59), (180, 181, 179), (240, 242, 238)),
        "qemu": ((50, 50, 50), (150, 150, 150), (230, 231, 229)),
        "kata": ((80, 80, 80), (200, 200, 200), (250, 250, 250)),
    }.items():
        s += _mem(driver, "idle-memory.host_view", [v * MiB for v in total])
        s += _mem(driver, "idle-memory.host_view.vm.qemu_pss_bytes", [v * MiB for v in pss])
        s += _mem(driver, "idle-memory.host_view.vm.guest_ram_rss_bytes", [v * MiB for v in ram])
        s += _mem(driver, "idle-memory.host_view.vm.host_memavailable_delta_bytes", [300 * MiB] * 3)
    # Containers: a 512 MiB limit and the host's MemAvailable seen inside are no usage.
    for driver, used in {"container": 0.5, "runc": 0.75}.items():
        s += _mem(driver, "idle-memory.host_view", [used * MiB] * 3)
        s += _mem(driver, "idle-memory.host_view.memory_limit_bytes", [512 * MiB] * 3)
        s += _mem(driver, "idle-memory.inside_used", [1100 * MiB] * 3)
    s += _mem("bwrap", "idle-memory.inside_used", [900 * MiB] * 3)
    s += _mem("host", "idle-memory.inside_used", [900 * MiB] * 3)
    return s


def _stacks(fig: Figure) -> list[tuple[str, float, float]]:
    """Per drawn bar (panel, y): the stacked parts' summed width and the total tick's x."""
    out = []
    for ax in fig.axes:
        parts: dict[float, float] = defaultdict(float)
        totals: dict[float, float] = {}
        for patch in ax.patches:
            if isinstance(patch, Rectangle) and patch.get_gid() == "part":
                parts[round(patch.get_y() + patch.get_height() / 2, 6)] += patch.get_width()
        for line in ax.lines:
            if isinstance(line, Line2D) and line.get_gid() == "total":
                (x,), (y,) = line.get_xdata(), line.get_ydata()
                totals[round(float(y), 6)] = float(x)
        assert set(parts) == set(totals), "every stacked bar has its measured total drawn"
        names = [t.get_text() for t in ax.get_yticklabels()]
        out += [(names[int(y)], parts[y], totals[y]) for y in sorted(parts)]
    return out


def test_memory_stacks_never_exceed_the_measured_total() -> None:
    bars, unmeasured = memory_bars(_memory_run())
    stacks = _stacks(draw_memory(bars, unmeasured))
    assert {name for name, _, _ in stacks} == {"container", "runc", "vm", "qemu", "kata"}
    for name, stacked, total in stacks:
        assert stacked <= total * (1 + 1e-9), f"{name}: stack {stacked} above its total {total}"
    by = {b.driver: b for b in bars}
    # The limit was not stacked: a container's bar is its cgroup usage, 0.5 MiB, not 512 MiB.
    assert dict(stacks_by_name(stacks))["container"] == pytest.approx(0.5 * MiB)
    assert by["qemu"].parts[-1] == (UNATTRIBUTED, pytest.approx(30 * MiB))
    assert len(by["kata"].parts) == 1  # parts that overshoot are not drawn as parts
    assert by["vm"].memavailable_delta == 300 * MiB


def stacks_by_name(stacks: list[tuple[str, float, float]]) -> list[tuple[str, float]]:
    return [(name, stacked) for name, stacked, _ in stacks]


def test_memory_chart_of_the_synthetic_report_holds_too(results: Results) -> None:
    bars, unmeasured = memory_bars(results)
    assert [b.driver for b in bars] == ["container", "vm"] and unmeasured == []
    for _, stacked, total in _stacks(draw_memory(bars, unmeasured)):
        assert 0 < stacked <= total * (1 + 1e-9)


def test_memory_drivers_without_a_figure_say_not_measured() -> None:
    bars, unmeasured = memory_bars(_memory_run())
    assert unmeasured == ["bwrap"]  # the native baseline is no overhead, so it is not listed
    fig = draw_memory(bars, unmeasured)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sum("not measured" in t for t in texts) == 1
    labels = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert "bwrap" in labels and "host" not in labels
    # Containers and guests on separate axes, each in a unit that fits it.
    containers, guests = fig.axes
    assert containers.get_xlim()[1] < 2 * MiB < 200 * MiB < guests.get_xlim()[1]
    fig.canvas.draw()
    ticks = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
    assert ticks and not [t for t in ticks if "e+" in t or "e-" in t or len(t) > 5]


def test_ratios_point_the_same_way(results: Results) -> None:
    summary = summary_table(results)
    rows = speed_rows(summary)
    assert not set(rows["workload"]) & {"startup", "idle-memory", "leakage", "interference"}
    lat = rows[(rows["metric"] == "cpu.latency_ms") & (rows["driver"] == "container")].iloc[0]
    raw = summary[(summary["metric"] == "cpu.latency_ms") & (summary["driver"] == "container")].iloc[0]
    assert lat["speed"] == pytest.approx(1 / raw["ratio_to_native"])
    assert (lat["lo"], lat["hi"]) == pytest.approx((1 / raw["ratio_ci_high"], 1 / raw["ratio_ci_low"]))
    eps = rows[(rows["metric"] == "cpu.events_per_s") & (rows["driver"] == "vm")].iloc[0]
    assert eps["speed"] < 1  # a slower guest is below native whichever way the metric points
    assert (rows["lo"] <= rows["speed"]).all() and (rows["speed"] <= rows["hi"]).all()


def test_ratio_chart_labels_are_short_and_say_the_direction(
    make_samples: Callable[..., list[Sample]], tmp_path: Path
) -> None:
    s = []
    for d, f in {"host": 1.0, "container": 0.9, "vm": 0.3}.items():
        for storage in ("root", "volume"):
            for qd in (1, 32):
                params = {"storage": storage, "rw": "randread", "bs": "4k", "iodepth": qd, "direct": True}
                s += make_samples(
                    d, "disk", "disk.rand_read.iops", [1000 * f * qd] * 3, "ops_per_second", "higher", params
                )
                s += make_samples(
                    d,
                    "disk",
                    "disk.rand_read.bandwidth",
                    [4e6 * f * qd] * 3,
                    "bytes_per_second",
                    "higher",
                    params,
                )
    cells = group_cells(s)
    (plot,) = ratio_bars(summary_table(s, cells=cells), cells, tmp_path)
    assert "bs=4k" in plot.caption and "n = 3" in plot.caption
    assert "rand_read.bandwidth" not in plot.caption  # same figure as IOPS, drawn once


def test_interference_is_degradation_percent_and_pass_fail(results: Results, tmp_path: Path) -> None:
    (plot,) = interference_chart(group_cells(results), tmp_path)
    assert "not to native" in plot.caption and "n = 1" in plot.caption
    assert plot.path.read_bytes().startswith(b"\x89PNG")


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure saved while the test runs."""
    figures: list[Figure] = []
    save = Figure.savefig

    def keep(fig: Figure, *args: object, **kwargs: object) -> None:
        figures.append(fig)
        save(fig, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def test_startup_timeline_has_a_panel_per_kind(results: Results, tmp_path: Path, drawn: list[Figure]) -> None:
    cells = group_cells(results)
    orders = {"host": ["create", "ready"], "container": ["create", "namespaces", "rootfs", "ready"]}
    (plot,) = startup_timeline(summary_table(results, cells=cells), cells, tmp_path, PhaseLayout(orders, {}))
    assert "own linear time axis" in plot.caption and "n = 10" in plot.caption
    assert plot.path.read_bytes().startswith(b"\x89PNG")
    # every panel has a legend of its own phases only, in the drivers' order
    (fig,) = drawn
    assert len(fig.axes) >= 2
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None
        listed = [t.get_text() for t in legend.get_texts()]
        drawn_here = {c.get_label() for c in ax.containers if not c.get_label().startswith("_")}
        assert set(listed) == drawn_here and len(listed) == len(drawn_here)


def test_phase_layout_keeps_each_drivers_order_and_the_median_offset() -> None:
    def phase(driver: str, name: str, offset: object, workload: str = "startup") -> Sample:
        meta = {} if offset is None else {"offset_s": offset}
        return Sample(
            "r", driver, workload, f"startup.phase.{name}", 1e-3, "seconds", 0, phase=name, metadata=meta
        )

    layout = PhaseLayout.of(
        [
            phase("container", "cgroup", 0.0),
            phase("container", "spawn", 0.001),
            phase("container", "spawn", 0.003),
            phase("container", "spawn", float("nan")),
            phase("container", "cgroup", None),
            phase("host", "ready", 0.0),
            phase("host", "other", 5.0, workload="cpu"),
        ]
    )
    assert layout.orders == {"container": ["cgroup", "spawn"], "host": ["ready"]}
    assert layout.offsets == {
        ("container", "", "cgroup"): 0.0,
        ("container", "", "spawn"): 0.002,
        ("host", "", "ready"): 0.0,
    }


def test_phases_that_ran_side_by_side_in_most_starts_get_lanes() -> None:
    def start(rep: int, **spans: tuple[float, float]) -> list[Sample]:
        return [
            Sample(
                "r",
                "container",
                "startup",
                f"startup.phase.{p}",
                w,
                "seconds",
                rep,
                phase=p,
                metadata={"offset_s": o},
            )
            for p, (o, w) in spans.items()
        ]

    # The helper clones while the runner makes the cgroup (2 of 3 starts); the wait sits inside the
    # cgroup's time; create holds everything.
    samples = [
        *start(0, create=(0.0, 6.0), clone=(2.0, 1.0), cgroup=(2.5, 1.0), wait=(3.0, 0.4)),
        *start(1, create=(0.0, 6.0), clone=(2.0, 1.0), cgroup=(2.8, 0.6), wait=(3.1, 0.3)),
        *start(2, create=(0.0, 6.0), clone=(2.0, 1.0), cgroup=(3.0, 0.5), wait=(3.1, 0.3)),
    ]
    layout = PhaseLayout.of(samples)
    assert layout.concurrent[("container", "")] == {frozenset({"clone", "cgroup"})}
    spans = [("create", 0.0, 6.0), ("clone", 2.0, 1.0), ("cgroup", 2.8, 0.6), ("wait", 3.1, 0.3)]
    assert lanes(spans, layout.concurrent[("container", "")]) == [0, 0, 1, 0]
    assert lanes(spans, ()) == [0, 0, 0, 0]


def test_a_phase_holding_others_is_hatched_where_it_shows(
    results: Results, tmp_path: Path, drawn: list[Figure]
) -> None:
    # A guest's "ready" holds its kernel phase; the half second before the kernel prints is in
    # "ready" only, and must not read as a phase of its own.
    spans = {"create": (0.0, 1.0), "ready": (1.0, 3.0), "kernel": (1.5, 2.0), "destroy": (4.0, 0.5)}
    samples = [
        Sample(
            "r", "vm", "startup", f"startup.phase.{p}", w, "seconds", rep, phase=p, metadata={"offset_s": o}
        )
        for rep in range(3)
        for p, (o, w) in spans.items()
    ]
    run = Results(run=results.run, samples=samples)
    cells = group_cells(run)
    (plot,) = startup_timeline(summary_table(run, cells=cells), cells, tmp_path, PhaseLayout.of(samples))
    assert "hatched" in plot.caption
    (fig,) = drawn
    hatches = {c.get_label(): c.patches[0].get_hatch() for ax in fig.axes for c in ax.containers}
    assert hatches == {"create": None, "ready": "////", "kernel": None, "destroy": None}


def test_startup_panels_splitsplit_by_scale_so_no_bar_is_a_sliver() -> None:
    # The medians of the real quick run: 3.7 ms native, 58-343 ms containers, 8.6-10.5 s guests.
    ends = {"host": 0.0037, "container": 0.058, "bwrap": 0.078, "runc": 0.343, "vm": 8.6, "qemu": 10.5}
    end_of = {(d, ""): v for d, v in ends.items()}
    procs = [(d, "") for d in ("host", "container", "runc", "bwrap")]
    assert split_by_scale(procs, end_of) == [[("host", "")], [("container", ""), ("runc", ""), ("bwrap", "")]]
    assert split_by_scale([("vm", ""), ("qemu", "")], end_of) == [[("vm", ""), ("qemu", "")]]


def _io_samples(make_samples: Callable[..., list[Sample]]) -> list[Sample]:
    s: list[Sample] = []
    for d, f in {"host": 1.0, "container": 0.95, "vm": 0.2}.items():
        for storage in ("root", "volume"):
            for qd in (1, 32):
                p = {"storage": storage, "rw": "randread", "bs": "4k", "iodepth": qd, "direct": True}
                s += make_samples(
                    d, "disk", "disk.rand_read.iops", [7200 * f * qd] * 3, "ops_per_second", "higher", p
                )
                s += make_samples(
                    d, "disk", "disk.rand_read.latency.p99", [2e-3 / f] * 3, "seconds", "lower", p
                )
        p = {"protocol": "tcp", "placement": "cross-cpu"}
        s += make_samples(
            d, "network", "network.tcp_throughput", [4.5e8 * f] * 3, "bytes_per_second", "higher", p
        )
        s += make_samples(d, "network", "network.tcp_rtt.p50", [6.8e-5 / f] * 3, "seconds", "lower", p)
    return s


def test_no_figure_shows_e_notation_or_raw_bytes(
    results: Results,
    make_samples: Callable[..., list[Sample]],
    tmp_path: Path,
    drawn: list[Figure],
) -> None:
    from isobench.reports.plots import all_plots

    samples = [*results.samples, *_io_samples(make_samples)]
    run = Results(run=results.run, samples=samples)
    cells = group_cells(run)
    plots, errors = all_plots(summary_table(run, cells=cells), cells, tmp_path, run)
    assert errors == []
    assert {"disk-disk.png", "network-network.png", "memory-overhead.png"} <= {p.path.name for p in plots}
    assert len(drawn) == len(plots)
    for fig in drawn:
        labels = [
            t.get_text()
            for ax in fig.axes
            for t in (*ax.get_xticklabels(), *ax.get_yticklabels())
            if t.get_text()
        ]
        assert labels
        assert not [t for t in labels if re.search(r"\de[+-]?\d|10\^|\$", t)], labels
        assert not [t for t in labels if re.fullmatch(r"\d{6,}", t)], labels  # raw bytes or ops
    for p in plots:
        assert re.search(r"n = \d", p.caption), p.title


def test_a_zero_width_or_unknown_interval_draws_no_whisker() -> None:
    from isobench.reports.plots._base import ci_err

    err = ci_err([1.0, 2.0, 3.0], [0.5, 2.0, float("nan")], [1.5, 2.0, 3.5])
    assert err[:, 0].tolist() == [0.5, 0.5]
    assert all(math.isnan(v) for v in err[:, 1:].ravel())  # NaN: not drawn
