"""Tables that fit a window: drivers as rows, few columns, parameters stated once."""

from __future__ import annotations

from isobench.reports.cells import group_cells
from isobench.reports.grid import MAX_COLUMNS, question_tables
from isobench.results import Results


def test_disk_columns_are_labelled_by_what_varies(real_results: Results) -> None:
    tables = question_tables(group_cells(real_results))
    (disk,) = tables["disk"]
    assert disk.columns == ("rand_read.iops root QD1", "rand_read.iops root QD32",
                            "rand_read.iops volume QD1", "rand_read.iops volume QD32")  # fmt: skip
    assert disk.params == "bs=4k, direct=true, rw=randread"
    assert [label for label, _ in disk.rows] == ["host", "container", "runc", "bwrap", "vm", "qemu"]


def test_what_one_driver_alone_has_labels_its_row(real_results: Results) -> None:
    (leak,) = question_tables(group_cells(real_results))["leakage"]
    labels = [label for label, _ in leak.rows]
    assert "container (hardening=true)" in labels and "container (hardening=false)" in labels
    assert leak.columns == ("score",)  # single probes are detail, not a column


def test_tables_stay_narrow_and_hide_detail_metrics(real_results: Results) -> None:
    tables = question_tables(group_cells(real_results))
    for ts in tables.values():
        for t in ts:
            assert 0 < len(t.columns) <= MAX_COLUMNS
            assert all(len(figs) == len(t.columns) for _, figs in t.rows)
    startup_cols = [c for t in tables["startup"] for c in t.columns]
    assert startup_cols == ["to_ready"]  # phases are in the timeline and the full table


def test_degradations_are_percentages_without_a_ratio(real_results: Results) -> None:
    (t,) = question_tables(group_cells(real_results))["interference"]
    i = t.columns.index("cpu.cpu.d_mean")
    fig = dict(t.rows)["qemu"][i]
    assert fig is not None and fig.text == "+5.0%" and fig.verdict == "none"
