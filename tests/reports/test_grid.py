"""Tables that fit a window: drivers as rows, few columns, parameters stated once."""

from __future__ import annotations

from isobench.reports.cells import group_cells
from isobench.reports.grid import MAX_COLUMNS, question_tables
from isobench.results import Results


def test_disk_columns_are_labelled_by_what_varies(real_results: Results) -> None:
    tables = question_tables(group_cells(real_results))
    (disk,) = tables["disk"]
    assert disk.title == "rand_read.iops"
    assert disk.columns == ("root QD1", "root QD32", "volume QD1", "volume QD32")
    assert disk.params == "bs=4k, direct=true, rw=randread"
    host = dict(disk.rows)["host"][0]
    assert host is not None and host.text.endswith("k IOPS")
    assert [label for label, _ in disk.rows] == ["host", "container", "runc", "bwrap", "vm", "qemu"]


def test_what_one_driver_alone_has_labels_its_row(real_results: Results) -> None:
    (leak,) = question_tables(group_cells(real_results))["leakage"]
    labels = [label for label, _ in leak.rows]
    assert "container (hardening=true)" in labels and "container (hardening=false)" in labels
    assert (leak.title, leak.columns) == ("score", ("median",))  # single probes are detail, not a column


def test_tables_stay_narrow_and_hide_detail_metrics(real_results: Results) -> None:
    tables = question_tables(group_cells(real_results))
    for ts in tables.values():
        for t in ts:
            assert 0 < len(t.columns) <= MAX_COLUMNS
            assert all(len(figs) == len(t.columns) for _, figs in t.rows)
    # phases are in the timeline and the full table
    (start,) = tables["startup"]
    assert start.columns == ("to_exit", "to_ready")  # the headline's figure first


def test_interference_is_a_table_per_figure_with_stressors_as_columns(real_results: Results) -> None:
    tables = question_tables(group_cells(real_results))["interference"]
    assert [t.title for t in tables] == [
        "victim cpu: throughput lost next to each stressor",
        "stressor contained",
    ]
    loss, contained = tables
    assert loss.columns == ("cpu", "fork_bomb") and loss.params == "duration_s=2.0"
    # degradations are percentages with no ratio to native (they can be zero or negative)
    fig = dict(loss.rows)["qemu"][0]
    assert fig is not None and fig.text == "+5.0%" and fig.verdict == "none"
    # containment is pass/fail
    assert [f.text for f in dict(contained.rows)["qemu"] if f] == ["pass", "FAIL"]
