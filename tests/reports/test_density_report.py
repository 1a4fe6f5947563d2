"""Density figures and the limit-fidelity table, from synthetic samples shaped like a real run's."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from isobench.model import Sample
from isobench.reports import render
from isobench.reports.cells import group_cells
from isobench.reports.limits_table import limits_table
from isobench.reports.plots.density import density_plots, density_series, stop_notes
from isobench.reports.units import NA
from isobench.results import Results
from matplotlib.figure import Figure

MiB = float(2**20)


def _density(make: Callable[..., list[Sample]]) -> list[Sample]:
    s: list[Sample] = []
    for driver, steps, mem, start in (
        ("container", (1, 5, 20), 3 * MiB, 0.03),
        ("qemu", (1, 2), 230 * MiB, 9.0),
    ):
        for n in steps:
            p = {"n": n}
            s += make(
                driver, "density", "density.memavailable_drop_per_instance", [mem * 1.2], "bytes", params=p
            )
            s += make(driver, "density", "density.attributable_per_instance", [mem], "bytes", params=p)
            s += make(
                driver, "density", "density.start_latency_nth", [start * (1 + n / 50)], "seconds", params=p
            )
            for mode, total in (("sequential", start * n), ("concurrent", start * n / 1.5)):
                s += make(
                    driver, "density", "density.ready_all", [total], "seconds", params={"n": n, "start": mode}
                )
        s += make(
            driver,
            "density",
            "density.n_reached",
            [steps[-1]],
            "sandboxes",
            metadata={"stopped": "done" if driver == "container" else "memory"},
        )
    # a drop lost in host noise: negative, cannot sit on a log axis
    s += make(
        "host", "density", "density.memavailable_drop_per_instance", [-2 * MiB], "bytes", params={"n": 1}
    )
    return s


def _limits(make: Callable[..., list[Sample]]) -> list[Sample]:
    s: list[Sample] = []
    q = {"requested_cpus": 0.5}
    s += make(
        "container",
        "limits",
        "limits.cpu.delivered",
        [0.49, 0.5, 0.51],
        "CPUs",
        params=q,
        metadata={"host_other_cpus": 1.25, "host_cpus": 2},
    )
    s += make("container", "limits", "limits.cpu.fidelity", [0.98, 1.0, 1.02], "ratio", params=q)
    s += make("container", "limits", "limits.cpu.host_accounted", [0.5] * 3, "CPUs", params=q)
    one = {"requested_cpus": 1.0}
    s += make(
        "vm", "limits", "limits.cpu.delivered", [0.9], "CPUs", params=one, metadata={"not_expressible": [0.5]}
    )
    s += make("vm", "limits", "limits.cpu.fidelity", [0.9], "ratio", params=one)
    m = {"requested_mib": 512}
    s += make(
        "container",
        "limits",
        "limits.memory.stopped_at",
        [507 * MiB],
        "bytes",
        params=m,
        metadata={"stopped_by": "cgroup OOM kill"},
    )
    s += make("container", "limits", "limits.memory.fidelity", [0.99], "ratio", params=m)
    p = {"requested_pids": 128}
    s += make(
        "host",
        "limits",
        "limits.pids.forks",
        [512],
        "processes",
        params=p,
        metadata={"stopped_by": "not stopped: reached the probe's cap of 512 (no limit enforced)"},
    )
    s += make("host", "limits", "limits.pids.fidelity", [4.0078], "ratio", params=p)
    c = {"requested_cpuset": "1"}
    s += make(
        "runc", "limits", "limits.cpuset.fidelity", [1.0], "ratio", params=c, metadata={"seen_cpus": [1]}
    )
    s += make("container", "limits", "limits.memory.host_probe_max", [0.004], "seconds", params=m)
    s += make("container", "limits", "limits.memory.neighbour_throughput", [0.97], "ratio", params=m)
    s += make("container", "limits", "limits.memory.neighbour_latency_max", [0.012], "seconds", params=m)
    io = {"requested_bps": 20 * 2**20}
    limited = {"size_mib": 40}
    s += make(
        "runc",
        "limits",
        "limits.io.write.delivered",
        [20.5 * MiB],
        "bytes_per_second",
        params=io,
        metadata=limited,
    )
    s += make("runc", "limits", "limits.io.write.fidelity", [1.025], "ratio", params=io)
    unlimited = {"size_mib": 40, "not_expressible": True}
    s += make(
        "bwrap",
        "limits",
        "limits.io.read.delivered",
        [900 * MiB],
        "bytes_per_second",
        params=io,
        metadata=unlimited,
    )
    return s


def test_density_series_and_stop_notes(make_samples: Callable[..., list[Sample]]) -> None:
    samples = _density(make_samples)
    series, _ = density_series(group_cells(samples))
    assert series[("container", "density.ready_all", "concurrent")][20] == 0.03 * 20 / 1.5
    assert set(series[("qemu", "density.attributable_per_instance", "")]) == {1, 2}
    assert stop_notes(samples) == {"container": "container N=20 (all steps)", "qemu": "qemu N=2 (memory)"}


def test_density_plots_are_log_log_with_human_ticks(
    make_samples: Callable[..., list[Sample]], tmp_path: Path
) -> None:
    samples = _density(make_samples)
    drawn: list[Figure] = []
    save = Figure.savefig

    def keep(fig: Figure, *args: object, **kwargs: object) -> None:
        drawn.append(fig)
        save(fig, *args, **kwargs)  # type: ignore[arg-type]

    Figure.savefig = keep  # type: ignore[method-assign]
    try:
        plots = density_plots(group_cells(samples), tmp_path, samples)
    finally:
        Figure.savefig = save  # type: ignore[method-assign]
    assert [p.path.name for p in plots] == ["density-memory.png", "density-startup.png"]
    assert "1 value(s) at or below zero" in plots[0].caption
    assert "qemu N=2 (memory)" in plots[0].caption
    for fig in drawn:
        for ax in fig.axes:
            assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
            labels = [t.get_text() for t in (*ax.get_xticklabels(), *ax.get_yticklabels()) if t.get_text()]
            assert not [t for t in labels if re.search(r"\de[+-]?\d|10\^|\$", t)], labels
    memory = drawn[0].axes[0]
    lines = {line.get_gid(): line for line in memory.get_lines()}
    assert list(lines["qemu|density.attributable_per_instance|"].get_ydata()) == [230 * MiB, 230 * MiB]
    assert "host|density.memavailable_drop_per_instance|" not in lines


def test_no_density_data_no_figure(tmp_path: Path) -> None:
    assert density_plots({}, tmp_path) == []


def test_limits_table_rows(make_samples: Callable[..., list[Sample]]) -> None:
    table = limits_table(_limits(make_samples))
    rows = {(r["driver"], r["limit"], r["requested"]): r for r in table.to_dict("records")}
    cpu = rows[("container", "CPU quota", "0.500 CPUs")]
    assert cpu["delivered"] == "0.500 CPUs" and cpu["ratio"] == "\u00d71.00" and cpu["n"] == 3
    assert "host accounted 0.500 CPUs" in cpu["stopped by / note"]
    assert "other work kept 1.25 of the host's 2 CPUs busy" in cpu["stopped by / note"]
    assert rows[("vm", "CPU quota", "0.500 CPUs")]["delivered"] == "not expressible by this driver's spec"
    mem = rows[("container", "memory", "512 MiB")]
    assert mem["delivered"] == "507 MiB"
    assert mem["stopped by / note"] == (
        "cgroup OOM kill; host probe worst 4.00 ms; neighbour ran at \u00d70.970 of its pace alone,"
        " exec worst +12.0 ms"
    )
    disk = rows[("runc", "disk write", "20.0 MiB/s")]
    assert (disk["delivered"], disk["ratio"], disk["stopped by / note"]) == (
        "20.5 MiB/s",
        "\u00d71.02",
        "dd, O_DIRECT, 40 MiB",
    )
    free = rows[("bwrap", "disk read", "20.0 MiB/s")]
    assert free["ratio"] == NA and "not expressible" in free["stopped by / note"]
    pids = rows[("host", "pids", "128 processes")]
    assert pids["delivered"] == "513 processes" and pids["ratio"] == "\u00d74.01"
    assert rows[("runc", "cpuset", "CPU 1")]["delivered"] == "ran on CPU 1"
    assert list(table["driver"]).index("host") < list(table["driver"]).index("vm")


def test_report_shows_density_figures_and_the_limits_table(
    results: Results, make_samples: Callable[..., list[Sample]], tmp_path: Path
) -> None:
    run = Results(
        run=results.run, samples=[*results.samples, *_density(make_samples), *_limits(make_samples)]
    )
    paths = render(run, tmp_path)
    html = paths.html.read_text()
    assert 'id="fig-density"' in html and 'id="limits"' in html
    assert "Limit fidelity" in html and "cgroup OOM kill" in html
    assert (tmp_path / "tables" / "limits.csv").exists()
    assert "Density" not in ", ".join(paths.empty_sections)
    # density and limits have their own figures and table; a ratio to native means nothing for them
    names = {p.name for p in paths.plots}
    assert {"density-memory.png", "density-startup.png"} <= names
    assert not {"ratio-density.png", "ratio-limits.png"} & names
    # their per-workload entries, which hold only the table of every figure, point there
    tables = html[html.index('id="tables"') : html.index('id="figures"')]
    density = tables[tables.index('id="table-density"') : tables.index('id="table-disk"')]
    assert '<a href="#fig-density">Density: sandboxes per host (figures)</a>' in density
    limits = tables[tables.index('id="table-limits"') :]
    assert '<a href="#limits">Limit fidelity: requested vs delivered</a>' in limits.split("<h3", 1)[0]


def test_a_run_without_density_does_not_call_it_missing(results: Results, tmp_path: Path) -> None:
    paths = render(results, tmp_path)
    assert all("Density" not in s for s in paths.empty_sections)
    assert 'id="limits"' not in paths.html.read_text()
