"""What a run prints while it runs, on a terminal and in a log."""

from __future__ import annotations

import io

import pytest
from isobench.cli.output import RichProgress, progress_bar, took_text
from isobench.schedule import Cell
from rich.console import Console


def _progress(terminal: bool) -> tuple[RichProgress, io.StringIO]:
    buf = io.StringIO()
    bar = progress_bar()
    bar.live.console = Console(file=buf, force_terminal=terminal, width=200)
    return RichProgress(bar), buf


def test_a_log_gets_one_line_per_finished_cell() -> None:
    progress, buf = _progress(terminal=False)
    progress.start(2)
    first = Cell(round=0, repetition=1, warmup=False, driver="container", workload="startup")
    progress.cell_started(first, 0, budget_left=600.0)
    progress.cell_finished(first, [])
    second = Cell(round=0, repetition=1, warmup=False, driver="vm", workload="cpu", variant="B")
    progress.cell_started(second, 1)
    progress.cell_finished(second, [])
    lines = [line for line in buf.getvalue().splitlines() if line.startswith("[")]
    assert lines[0].startswith("[1/2] startup on container (rep 1) ")
    assert lines[0].endswith("s, budget left 10:00")
    # a variant's brackets are text, not markup
    assert lines[1].startswith("[2/2] cpu on vm [B] (rep 1) ")


@pytest.mark.parametrize(
    ("left", "says"),
    [
        (-75.0, "1:15 past the budget, finishing the first pass"),  # the default budget's first pass
        # seen in a default run: "startup on container (rep 43) 0.0 s, 0:00 past the budget, ..."
        (0.3, "budget left 0:00"),
    ],
)
def test_a_cell_started_at_or_past_the_budgets_end_says_which(left: float, says: str) -> None:
    progress, buf = _progress(terminal=False)
    progress.start(1)
    cell = Cell(round=2, repetition=0, warmup=False, driver="vm", workload="density")
    progress.cell_started(cell, 0, budget_left=left)
    progress.cell_finished(cell, [])
    assert buf.getvalue().splitlines()[-1].endswith(f"s, {says}")


def test_a_terminal_gets_the_bar_not_a_line_per_cell() -> None:
    progress, buf = _progress(terminal=True)
    progress.start(1)
    cell = Cell(round=0, repetition=1, warmup=False, driver="host", workload="cpu")
    progress.cell_started(cell, 0)
    progress.cell_finished(cell, [])
    assert "[1/1]" not in buf.getvalue()


def test_a_log_on_stderr_keeps_a_cells_line_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # an 18:57 default run's log: "[424/534] startup on container (rep 43) 0.0 s, ... finishing \nthe first pass"
    from isobench.cli.output import _console

    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    line = "[424/534] startup on container (rep 43) 0.0 s, 1:15 past the budget, finishing the first pass"
    _console(stderr=True).print(line, highlight=False)
    assert log.getvalue() == line + "\n"
    # 12-03 01:05's run banner broke at column 200: "... workloads startup, ..., interference, \nlimits, density"
    banner = "run 1: drivers host; workloads " + ", ".join(f"workload-{i}" for i in range(30))
    log.truncate(0)
    log.seek(0)
    _console(stderr=True).print(banner, highlight=False)
    assert len(banner) > 200 and log.getvalue() == banner + "\n"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.44, "4.4 s"), (1.0, "1.0 s"), (0.0934, "93 ms"), (0.00934, "9.3 ms"), (0.0004, "0.4 ms")],
)
def test_a_cells_time_is_in_a_unit_that_shows_it(seconds: float, text: str) -> None:
    # a default run's log said "startup on container (rep 4) 0.0 s" for every ~9 ms start
    assert took_text(seconds) == text
