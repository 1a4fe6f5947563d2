"""The report's leak-score table names the probes left out of the score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isobench.leakage import ProbeResult, measurements, rules
from isobench.leakage.rules import Verdict
from isobench.model import Sample
from isobench.reports.tables import leakage_left_out, leakage_table, summary_table
from isobench.results import RESULTS, Results, load_results


def _results() -> Results:
    verdicts = [
        ProbeResult("boot_id", 1, "d", Verdict("equal", True, "same")),
        ProbeResult("capabilities", 3, "d", Verdict("presence", False, "none")),
        ProbeResult("seccomp", 1, "d", rules.error("presence", "no perl in the sandbox")),
        ProbeResult("loadavg", 2, "d", rules.correlation([0, 1] * 6, [5.0] * 12)),
    ]
    assert verdicts[3].verdict.status == "inconclusive", verdicts[3].verdict
    samples = [
        Sample.from_measurement(m, run_id="r1", driver="runc", workload="leakage", repetition=0)
        for m in measurements(verdicts, {})
    ]
    return Results(run={"run_id": "r1"}, samples=samples)


def test_left_out_probes_are_named_per_driver() -> None:
    assert leakage_left_out(_results()) == {("runc", ""): (("seccomp",), ("loadavg",), ())}


def test_table_scores_what_ran_and_names_the_rest() -> None:
    res = _results()
    table = leakage_table(summary_table(res), res)
    (row,) = table.to_dict("records")
    assert row["score"] == 25.0  # boot_id (1) of boot_id + capabilities (4)
    assert row["probes"] == 2  # the aggregates (count, score, errors, inconclusive) are not probes
    assert row["could not run"] == "seccomp"
    assert row["could not decide"] == "loadavg"
    # boot_id 1 of 4 scored; seccomp (1) and loadavg (2) left out: 1/7 if both closed, 4/7 if not.
    assert row["interval"] == "[14.3, 57.1]"
    assert row["near threshold"] == ""


def test_a_version_2_run_still_loads_and_renders(recorded: Any, tmp_path: Path) -> None:
    """Leakage samples of a real schema-2 run (2026-11-30, container and runc): loaded as they are;
    nothing is named as left out because version 2 did not leave anything out."""
    doc = recorded("results_v2_leakage.json")
    assert doc["schema_version"] == 2
    (tmp_path / RESULTS).write_text(json.dumps(doc))
    res = load_results(tmp_path)
    table = leakage_table(summary_table(res), res)
    rows = {(r["driver"], r["variant"]): r for r in table.to_dict("records")}
    assert rows[("runc", "")]["score"] == 38.98
    assert rows[("container", "hardening=true")]["could not decide"] == ""
