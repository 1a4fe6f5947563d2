"""The layers figure: a panel per figure vs depth, the seed's claim and the measured change beside it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from isobench.model import Sample
from isobench.reports.cells import group_cells
from isobench.reports.plots.layers import CLAIM, PANELS, depth_change, layers_plots, layers_series


def _layers(make: Callable[..., list[Sample]]) -> list[Sample]:
    s: list[Sample] = []
    for driver, base in (("container", 100e-6), ("qemu", 600e-6)):
        for depth in (1, 16):
            p = {"depth": depth}
            grow = 1 + depth / 8 if driver == "container" else 1.1
            for metric, _title, unit in PANELS:
                value = 500e6 if unit == "bytes_per_second" else base * grow
                s += make(driver, "layers", metric, [value], unit, params=p)
    s += make("host", "layers", "layers.applicable", [0], "bool")
    return s


def test_series_and_change_from_shallowest_to_deepest(make_samples: Callable[..., list[Sample]]) -> None:
    series, ns = layers_series(group_cells(_layers(make_samples)))
    assert series[("container", "layers.stat_bottom_cold")] == {1: 100e-6 * 1.125, 16: 100e-6 * 3}
    change = depth_change(series, "layers.stat_bottom_cold")
    assert list(change) == ["container", "qemu"]
    lo, hi, ratio = change["container"]
    assert (lo, hi) == (1, 16) and abs(ratio - 3 / 1.125) < 1e-9
    assert ("host", "layers.applicable") not in series and set(ns) == {1}


def test_the_figure_states_the_claim_next_to_what_was_measured(
    make_samples: Callable[..., list[Sample]], tmp_path: Path
) -> None:
    (plot,) = layers_plots(group_cells(_layers(make_samples)), tmp_path)
    assert plot.path == tmp_path / "layers-depth.png" and plot.path.stat().st_size > 0
    assert plot.caption.startswith(CLAIM)
    assert "a bottom-layer lookup took container x2.67 (1 to 16), qemu x1.00 (1 to 16)" in plot.caption
    assert layers_plots(group_cells([]), tmp_path) == []
