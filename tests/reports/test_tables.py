from __future__ import annotations

import math

import pytest
from isobench.model import Sample
from isobench.reports import summary_table
from isobench.reports.tables import NA, SUMMARY_COLUMNS, TIMES, wide_table
from isobench.results import Results


def _row(df, driver: str, metric: str, variant: str = ""):  # type: ignore[no-untyped-def]
    sel = df[(df["driver"] == driver) & (df["metric"] == metric) & (df["variant"] == variant)]
    assert len(sel) == 1, (driver, metric, variant)
    return sel.iloc[0]


def test_summary_has_one_row_per_cell_with_ratio_to_native(results: Results) -> None:
    df = summary_table(results)
    assert tuple(df.columns) == SUMMARY_COLUMNS
    host = _row(df, "host", "cpu.events_per_s")
    vm = _row(df, "vm", "cpu.events_per_s")
    # Warm-up sample of 1e9 must not count.
    assert host["n"] == 10
    assert host["median"] == pytest.approx(100, rel=0.05)
    assert host["ci_low"] <= host["median"] <= host["ci_high"]
    assert host["ratio_to_native"] == 1.0
    # Synthetic vm is 10/11.5 of native throughput.
    assert vm["ratio_to_native"] == pytest.approx(10 / 11.5, rel=0.03)
    assert vm["ratio_ci_low"] < vm["ratio_to_native"] < vm["ratio_ci_high"]
    assert vm["ratio_ci_high"] < 1.0
    assert not vm["noisy"]


def test_variants_are_separate_cells_and_ratio_needs_same_variant(results: Results) -> None:
    df = summary_table(results)
    rootfs = _row(df, "vm", "disk.read_mib_s", "storage=rootfs")
    volume = _row(df, "vm", "disk.read_mib_s", "storage=volume")
    assert rootfs["median"] == pytest.approx(280, rel=0.05)
    assert volume["median"] == pytest.approx(350, rel=0.05)
    # Host measured loopback, containers veth: no like-for-like native cell, so no ratio.
    assert math.isnan(_row(df, "container", "network.tcp_gbit_s", "path=veth")["ratio_to_native"])


def test_noisy_cell_is_flagged(results: Results) -> None:
    df = summary_table(results)
    noisy = _row(df, "container", "cpu.latency_ms")
    assert noisy["noisy"]
    assert noisy["cov"] > 0.05
    assert noisy["median"] == 1.5


def test_no_host_means_no_ratios(results: Results) -> None:
    r = Results(run=results.run, samples=[s for s in results.samples if s.driver != "host"])
    df = summary_table(r)
    assert not df.empty
    assert df["ratio_to_native"].isna().all()


def test_empty_results_give_empty_table() -> None:
    df = summary_table(Results(run={"run_id": "x"}, samples=[]))
    assert df.empty
    assert tuple(df.columns) == SUMMARY_COLUMNS


def test_wide_table_orders_native_container_vm(results: Results) -> None:
    df = summary_table(results)
    wide = wide_table(df[df["workload"] == "cpu"])
    cols = list(wide.columns)
    assert cols.index("host median [95% CI]") < cols.index("container median [95% CI]")
    assert cols.index("container median [95% CI]") < cols.index("vm median [95% CI]")
    assert "host / host" not in cols
    row = wide[wide["metric"] == "cpu.events_per_s"].iloc[0]
    assert row["vm / host"].startswith(TIMES + "0.8")
    assert row["container n / CoV"].startswith("10 / ")
    latency = wide[wide["metric"] == "cpu.latency_ms"].iloc[0]
    assert latency["vm median [95% CI]"] == NA
    assert "(noisy)" in latency["container n / CoV"]


def test_detail_table_is_long_and_human(real_results: Results) -> None:
    from isobench.reports.tables import detail_table

    df = summary_table(real_results)
    detail = detail_table(df[df["workload"] == "idle-memory"])
    assert list(detail.columns) == [
        "metric", "params", "driver", "median [interval]", "n", "CoV", "/ host [95% CI]", "better",
    ]  # fmt: skip
    vm = detail[(detail["driver"] == "vm") & (detail["metric"] == "idle-memory.host_view")].iloc[0]
    # n=3: the range, with the confidence it really has, in human units
    assert vm["median [interval]"].endswith(" MiB range, 75%") and "e+" not in vm["median [interval]"]
    host = detail[detail["driver"] == "host"].iloc[0]
    assert host["/ host [95% CI]"] == ""


def test_small_n_intervals_say_what_confidence_they_have() -> None:
    from isobench.model import Sample
    from isobench.reports.tables import fmt_ci

    samples = [
        Sample(run_id="r", driver="host", workload="w", metric=f"w.n{n}", value=v, unit="s", repetition=i)
        for n in (1, 3, 10)
        for i, v in enumerate([1.0, 3.0, 2.0, 5.0, 4.0, 7.0, 6.0, 9.0, 8.0, 10.0][:n])
    ]
    df = summary_table(Results(run={"run_id": "r"}, samples=samples))
    one, three, ten = (_row(df, "host", f"w.n{n}") for n in (1, 3, 10))
    assert math.isnan(one["ci_low"]) and math.isnan(one["ci_confidence"])
    assert (three["ci_low"], three["ci_high"], three["ci_confidence"]) == (1.0, 3.0, 0.75)
    assert (ten["ci_low"], ten["ci_high"]) == (2.0, 9.0) and ten["ci_confidence"] > 0.95
    assert fmt_ci(one["median"], one["ci_low"], one["ci_high"], one["ci_confidence"]) == "1"
    assert (
        fmt_ci(three["median"], three["ci_low"], three["ci_high"], three["ci_confidence"])
        == "2 [1, 3] range, 75%"
    )
    assert fmt_ci(ten["median"], ten["ci_low"], ten["ci_high"], ten["ci_confidence"]) == "5.5 [2, 9]"


def test_a_figure_without_direction_gets_no_ratio_to_native(results: Results) -> None:
    def delivered(driver: str, cpus: float) -> Sample:
        return Sample("r", driver, "limits", "limits.cpu.delivered", cpus, "CPUs", 0, better="none")

    extra = [delivered("host", 2.0), delivered("vm", 0.5)]
    df = summary_table(Results(run=results.run, samples=[*results.samples, *extra]))
    assert math.isnan(_row(df, "vm", "limits.cpu.delivered")["ratio_to_native"])
    assert math.isnan(_row(df, "host", "limits.cpu.delivered")["ratio_to_native"])
    assert _row(df, "vm", "cpu.events_per_s")["ratio_to_native"] < 1  # directed figures keep theirs
