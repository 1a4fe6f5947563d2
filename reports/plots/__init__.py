"""PNG figures, one question each, drawn with matplotlib's Agg canvas (no pyplot).

Every maker writes zero or more PNGs into ``plots_dir`` and returns what it wrote; data that is
absent gives no figure, so the report can say so. Each caption says what the figure shows and how
many measurements stand behind each mark.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd
from isobench.model import Sample
from isobench.results import Results

from ..cells import Cell, CellKey
from ._base import OPTIONAL_SECTIONS, SECTIONS, Plot
from .absolute import absolute_plots
from .density import density_plots
from .interference_chart import interference_chart
from .layers import layers_plots
from .leakage_chart import leakage_heatmap
from .memory_chart import memory_chart
from .ratios import ratio_bars
from .startup import PhaseLayout, startup_distribution, startup_timeline

log = logging.getLogger(__name__)

__all__ = ["OPTIONAL_SECTIONS", "SECTIONS", "Plot", "all_plots"]


def all_plots(
    summary: pd.DataFrame,
    cells: Mapping[CellKey, Cell],
    plots_dir: Path,
    samples: Results | Iterable[Sample] = (),
) -> tuple[list[Plot], list[str]]:
    """Every figure the data allows; returns (plots, errors). One broken figure never costs the
    rest of the report: its error is returned for the report's warnings. ``samples`` (the run's
    samples) feed the figures that need single repetitions or their metadata, such as the memory
    overhead and where each startup phase began."""
    samples = list(samples.measured() if isinstance(samples, Results) else samples)
    makers: list[tuple[str, Callable[[], list[Plot]]]] = [
        ("startup timeline", lambda: startup_timeline(summary, cells, plots_dir, PhaseLayout.of(samples))),
        ("startup distribution", lambda: startup_distribution(summary, cells, plots_dir)),
        ("memory", lambda: memory_chart(samples, plots_dir)),
        ("relative to native", lambda: ratio_bars(summary, cells, plots_dir)),
        ("disk", lambda: absolute_plots(summary, cells, plots_dir, "disk")),
        ("network", lambda: absolute_plots(summary, cells, plots_dir, "network")),
        ("leakage", lambda: leakage_heatmap(cells, plots_dir)),
        ("interference", lambda: interference_chart(cells, plots_dir)),
        ("density", lambda: density_plots(cells, plots_dir, samples)),
        ("layers", lambda: layers_plots(cells, plots_dir)),
    ]
    plots: list[Plot] = []
    errors: list[str] = []
    for name, make in makers:
        try:
            plots.extend(make())
        except Exception as err:  # a plotting bug must not hide the tables and other figures
            log.exception("plot %s failed", name)
            errors.append(f"plot {name!r} failed: {type(err).__name__}: {err}")
    return plots, errors
