"""Where a rendering writes: its output folder, made writable or refused in one clear line."""

from __future__ import annotations

from pathlib import Path

from isobench.errors import ResultsError

__all__ = ["fresh_plots_dir"]


def fresh_plots_dir(out_dir: Path, stale: str, what: str) -> Path:
    """``out_dir/plots``, made, without the figures (``stale``, a glob) of an earlier rendering that
    may no longer apply (e.g. a re-rendered interrupted run)."""
    try:
        plots_dir = out_dir / "plots"
        plots_dir.mkdir(parents=True, exist_ok=True)
        for old in plots_dir.glob(stale):
            old.unlink()
    except OSError as err:
        raise ResultsError(
            f"cannot write the {what} into {out_dir}: {err.strerror}; pick a writable directory"
        ) from err
    return plots_dir
