"""What a budgeted run's record says in words: the summary, the terminal's digest, and how much of
the budget the first pass left for precision."""

from typing import Any

from isobench.reports.budget import budget_digest, budget_summary, first_pass_note


def _unit(driver: str, workload: str, n: int, status: str, *half_widths: float | None) -> dict[str, Any]:
    figures = [
        {"metric": f"{workload}.f{i}", "variant": "", "n": n, "median": 1.0, "half_width": hw, "met": False}
        for i, hw in enumerate(half_widths)
    ]
    return {
        "driver": driver,
        "workload": workload,
        "variant": None,
        "n": n,
        "status": status,
        "figures": figures,
    }


def _budgeted(units: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "budget": {
            "seconds": 1080.0,
            "spent": 1080.0,
            "precision": 0.05,
            "stopped": "budget spent",
            "figures_counted": 40,
            "figures_met": 3,
            "cells_skipped": 2,
            "units": units,
        }
    }


def test_the_budget_summary_names_what_missed_the_target() -> None:
    startup = _unit("host", "startup", 9, "below target", 0.03, 0.4)
    startup["figures"][0]["met"] = True
    disk = _unit("vm", "disk", 1, "below target", None) | {"variant": "B"}
    run = _budgeted([startup, disk, _unit("vm", "leakage", 1, "no counted figures")])
    run["budget"] |= {"seconds": 900.0, "spent": 899.6, "figures_counted": 3, "figures_met": 1}
    lines = budget_summary(run)
    assert lines[0] == (
        "budget: spent 15:00 of 15:00 (budget spent); 1 of 3 counted figures have a 95% CI half-width "
        "<= 5% of the median; 2 cells not started for lack of time"
    )
    assert lines[1:] == [
        "  startup on host: below target, n=9: worst startup.f1 ±40.0%",
        "  disk on vm [B]: below target, n=1: disk.f0 not judged",
    ]
    assert budget_summary({}) == []
    run["budget"]["cells_skipped"] = 1
    assert budget_summary(run)[0].endswith("; 1 cell not started for lack of time")


def test_the_terminal_digest_keeps_the_widest_and_groups_the_rest() -> None:
    drivers = ("host", "container", "vm")
    units = [_unit(d, w, 1, "below target", None) for d in drivers for w in ("disk", "network")]
    units += [_unit(d, "overlay", 7, "below target", 0.1 * (i + 1), 0.01) for i, d in enumerate(drivers)]
    units += [_unit("vm", "cpu", 3, "below target", None), _unit("container", "cpu", 9, "met", 0.01)]
    units += [_unit(d, "density", 0, "below its minimum n (budget)") for d in ("container", "vm")]
    units.append(_unit("host", "leakage", 1, "no counted figures"))
    run = _budgeted(units)
    full = budget_summary(run)
    assert len(full) == 1 + 6 + 3 + 1 + 2  # one line a cell that fell short
    digest = budget_digest(run, most=2)
    assert digest == [
        full[0],
        "  below target (the 2 widest of 3 cells):",
        "    overlay on vm, n=7: worst overlay.f0 ±30.0%",
        "    overlay on container, n=7: worst overlay.f0 ±20.0%",
        "  too few repetitions to judge (n < 6): disk, network on every driver; cpu on vm",
        "  never measured (no time left): density on container, vm",
        "    to measure just those, once: isobench run --quick -n 1 --workloads density --drivers container,vm"
        " (and this run's other options)",
        "  (the report's Warnings list every cell)",
    ]


def test_a_short_list_or_an_ab_run_is_not_digested() -> None:
    run = _budgeted(
        [_unit("host", "cpu", 6, "below target", 0.2), _unit("vm", "disk", 1, "below target", None)]
    )
    assert budget_digest(run) == budget_summary(run)
    assert budget_digest({}) == []


def test_the_first_pass_is_named_when_it_took_most_of_the_budget() -> None:
    # The 05:10 default run of 2026-12-02: 1178 s of 1200 went to every cell at its minimum n.
    assert first_pass_note({"seconds": 1200.0, "first_pass_s": 1178.4}) == (
        "the first pass (every cell at its minimum n) took 19:38 of the 20:00 budget, leaving 0:22 "
        "for the extra rounds that buy precision"
    )
    assert first_pass_note({"seconds": 1200.0, "first_pass_s": 1199.8}) == (
        "the first pass (every cell at its minimum n) took 20:00 of the 20:00 budget, leaving no time "
        "for extra rounds that buy precision"
    )
    # A workload's first cell is started unpredicted, so a small budget can be overrun.
    assert first_pass_note({"seconds": 90.0, "first_pass_s": 104.2}) == (
        "the first pass (every cell at its minimum n) took 1:44, past the 1:30 budget (a workload's "
        "first cell cannot be predicted), leaving no time for extra rounds that buy precision"
    )
    # The default budget runs the first pass whole (results schema 14).
    assert first_pass_note({"seconds": 1200.0, "first_pass_s": 1302.5, "first_pass_grace_s": 1200.0}) == (
        "the first pass (every cell at its minimum n) took 21:42, past the 20:00 default budget, which "
        "lets it run to 40:00, leaving no time for extra rounds that buy precision"
    )
    # Half the budget or less left for the rounds is worth a line; less than half taken is not.
    assert first_pass_note({"seconds": 1200.0, "first_pass_s": 600.0}) is not None
    assert first_pass_note({"seconds": 1200.0, "first_pass_s": 599.0}) is None
    # A run written before results schema 11 did not record it.
    assert first_pass_note({"seconds": 1200.0}) is None


def test_the_digest_and_the_summary_say_how_long_the_first_pass_took() -> None:
    small = _budgeted([_unit("host", "cpu", 6, "below target", 0.2)])
    small["budget"]["first_pass_s"] = 1000.0
    assert budget_summary(small)[1:] == ["  cpu on host: below target, n=6: worst cpu.f0 ±20.0%"]
    digest = budget_digest(small)
    assert digest[1] == (
        "  the first pass (every cell at its minimum n) took 16:40 of the 18:00 budget, leaving 1:20 "
        "for the extra rounds that buy precision"
    )
    assert digest[2:] == budget_summary(small)[1:]
    drivers = ("host", "container", "vm", "runc")
    big = _budgeted([_unit(d, w, 1, "below target", 0.3) for d in drivers for w in ("disk", "network")])
    big["budget"]["first_pass_s"] = 1070.0
    digest = budget_digest(big, most=2)
    assert digest[0] == budget_summary(big)[0] and digest[1].startswith("  the first pass ")
    assert digest[2] == "  below target (the 2 widest of 8 cells):"
