"""Tables with pandas: the per-cell summary and the Felter-et-al.-style comparison across drivers."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
from isobench.results import Results
from isobench.stats import ratio_ci, summarize

from .cells import NATIVE, PAIRED_RATIOS, Cell, CellKey, driver_order, group_cells, is_leak_probe, variant_of
from .leak_rank import leak_intervals
from .units import human_ci, human_ratio, plain

__all__ = [
    "NA",
    "SUMMARY_COLUMNS",
    "TIMES",
    "detail_table",
    "failures_table",
    "fmt",
    "fmt_ci",
    "fmt_interval",
    "fmt_ratio",
    "leakage_left_out",
    "leakage_table",
    "summary_table",
    "wide_table",
]

#: Shown for a missing value (en dash) and before a ratio (multiplication sign).
NA = "\u2013"
TIMES = "\u00d7"

SUMMARY_COLUMNS = (
    "workload",
    "metric",
    "variant",
    "driver",
    "unit",
    "better",
    "n",
    "median",
    "ci_low",
    "ci_high",
    "ci_confidence",
    "cov",
    "noisy",
    "ratio_to_native",
    "ratio_ci_low",
    "ratio_ci_high",
    "host_steal",
)


def summary_table(results: Results, *, cells: Mapping[CellKey, Cell] | None = None) -> pd.DataFrame:
    """One row per (workload, metric, params variant, driver): n, median with its exact interval
    (at least 95%; ``ci_confidence`` is what it achieves, less at n <= 5, NaN at n=1),
    CoV, the noisy flag, the ratio of medians to the native driver with its CI (NaN where there
    is no native cell to compare with or the figure has no direction, and for the native driver
    itself ratio 1; a paired ratio (PAIRED_RATIOS) is its own), and the median share of CPU time the host lost to steal while it was measured."""
    cells = group_cells(results) if cells is None else cells
    rows: list[dict[str, object]] = []
    for key, cell in cells.items():
        s = summarize(cell.values)
        native = cells.get(CellKey(key.workload, key.metric, key.variant, NATIVE))
        # A figure with no direction is no cost: a guest's own memory use over the host's, or a
        # CPU quota delivered over an unlimited host, is a quotient, not a ratio a reader can act on.
        if key.metric in PAIRED_RATIOS and key.driver != NATIVE:
            pairs = summarize(cell.pairs)  # the interval over every pair
            r_val, r_lo, r_hi = pairs.median, pairs.ci_low, pairs.ci_high
        elif native is None or cell.better == "none":
            r_val = r_lo = r_hi = math.nan
        elif key.driver == NATIVE:
            r_val = r_lo = r_hi = 1.0
        else:
            r = ratio_ci(cell.values, native.values)
            r_val, r_lo, r_hi = r.value, r.ci_low, r.ci_high
        rows.append(
            {
                "workload": key.workload,
                "metric": key.metric,
                "variant": key.variant,
                "driver": key.driver,
                "unit": cell.unit,
                "better": cell.better,
                "n": s.n,
                "median": s.median,
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
                "ci_confidence": s.ci_confidence,
                "cov": s.cov,
                "noisy": s.noisy,
                "ratio_to_native": r_val,
                "ratio_ci_low": r_lo,
                "ratio_ci_high": r_hi,
                "host_steal": cell.host_steal,
            }
        )
    df = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return df.astype({"n": "int64", "noisy": "bool"})


def fmt(v: float) -> str:
    """A bare number with up to 4 significant digits, never in e-notation."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NA
    short = f"{float(v):.4g}"
    return plain(float(v), 4) if "e" in short or "inf" in short else short


def fmt_interval(lo: float, hi: float, confidence: float = math.nan, *, nominal: float = 0.95) -> str:
    """ "[lo, hi]"; with fewer values than a 95% interval needs, the range and the confidence it
    really has ("[1.2, 1.9] range, 75%" at n=3); nothing for a single value."""
    if math.isnan(lo) or math.isnan(hi):
        return NA
    text = f"[{fmt(lo)}, {fmt(hi)}]"
    return text + _shortfall(confidence, nominal)


def _shortfall(confidence: float, nominal: float = 0.95) -> str:
    if not math.isnan(confidence) and confidence < nominal - 1e-9:
        return f" range, {confidence * 100:.3g}%"
    return ""


def fmt_ci(median: float, lo: float, hi: float, confidence: float = math.nan, unit: str = "") -> str:
    """The median with its interval; in human units when ``unit`` is given ("2.10 [1.90, 2.50] ms")."""
    if unit:
        text = human_ci(median, lo, hi, unit)
        return text if math.isnan(lo) or math.isnan(hi) else text + _shortfall(confidence)
    interval = fmt_interval(lo, hi, confidence)
    return fmt(median) if interval == NA else f"{fmt(median)} {interval}"


def fmt_ratio(v: float, lo: float, hi: float) -> str:
    return human_ratio(v, lo, hi)


def wide_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Felter et al.'s layout: one row per workload/metric/variant; per driver its median [95% CI]
    and, for non-native drivers, the ratio to native [95% CI]. Cells are preformatted strings."""
    if summary.empty:
        return pd.DataFrame()
    drivers = sorted(summary["driver"].unique(), key=driver_order)
    index_cols = ["workload", "metric", "variant", "unit", "better"]
    out: list[dict[str, str]] = []
    for (workload, metric, variant), grp in summary.groupby(
        ["workload", "metric", "variant"], sort=True, dropna=False
    ):
        first = grp.iloc[0]
        row: dict[str, str] = {
            "workload": str(workload),
            "metric": str(metric),
            "variant": str(variant),
            "unit": str(first["unit"]),
            "better": str(first["better"]),
        }
        by_driver = {str(r["driver"]): r for _, r in grp.iterrows()}
        for d in drivers:
            r = by_driver.get(d)
            row[f"{d} median [95% CI]"] = (
                NA
                if r is None
                else fmt_ci(r["median"], r["ci_low"], r["ci_high"], r["ci_confidence"], str(r["unit"]))
            )
            row[f"{d} n / CoV"] = (
                NA
                if r is None
                else f"{int(r['n'])} / {r['cov'] * 100:.1f}%" + (" (noisy)" if r["noisy"] else "")
            )
            if d != NATIVE:
                row[f"{d} / {NATIVE}"] = (
                    NA
                    if r is None
                    else fmt_ratio(r["ratio_to_native"], r["ratio_ci_low"], r["ratio_ci_high"])
                )
        out.append(row)
    df = pd.DataFrame(out)
    return df[index_cols + [c for c in df.columns if c not in index_cols]]


def detail_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Every figure of some workload in long form (one row per metric, params and driver), in human
    units: what the report keeps behind a <details>, narrow enough for a window."""
    if summary.empty:
        return pd.DataFrame()
    rows = []
    for r in summary.to_dict("records"):
        unit = str(r["unit"])
        ratio = (
            ""
            if r["driver"] == NATIVE
            else fmt_ratio(r["ratio_to_native"], r["ratio_ci_low"], r["ratio_ci_high"])
        )
        rows.append(
            {
                "metric": r["metric"],
                "params": r["variant"],
                "driver": r["driver"],
                "median [interval]": fmt_ci(r["median"], r["ci_low"], r["ci_high"], r["ci_confidence"], unit),
                "n": int(r["n"]),
                "CoV": f"{r['cov'] * 100:.1f}%" + (" (noisy)" if r["noisy"] else ""),
                f"/ {NATIVE} [95% CI]": ratio,
                "better": r["better"],
            }
        )
    return pd.DataFrame(rows)


def failures_table(results: Results) -> pd.DataFrame:
    """Failed cells with the error text each one recorded."""
    rows = [
        {
            "driver": s.driver,
            "workload": s.workload,
            "repetition": s.repetition,
            "metric": s.metric,
            "error": s.error or "",
        }
        for s in results.failures()
    ]
    return pd.DataFrame(rows, columns=["driver", "workload", "repetition", "metric", "error"])


def leakage_table(summary: pd.DataFrame, results: Results | None = None) -> pd.DataFrame:
    """Leak score per driver (and hardening variant): the medians of "leakage.score" and
    "leakage.count" as the workload computed them, and how many probes leaked in at least half of
    the repetitions out of how many were scored. With ``results``, also the score's interval
    (:mod:`.leak_rank`) and the probes behind it: those that could not run ("error"), those that
    could not decide ("inconclusive"), and scored ones whose evidence sits within its sampling
    error of the threshold ("near threshold"), each named, so a score is never read as covering more
    than it does."""
    leak = summary[summary["metric"].str.startswith("leakage.")]
    if leak.empty:
        return pd.DataFrame()
    left_out = leakage_left_out(results) if results is not None else {}
    intervals = leak_intervals(results) if results is not None else {}
    rows: list[dict[str, object]] = []
    for (driver, variant), grp in leak.groupby(["driver", "variant"], sort=False):
        score = grp[grp["metric"] == "leakage.score"]
        count = grp[grp["metric"] == "leakage.count"]
        probes = grp[grp["metric"].map(lambda m: is_leak_probe(str(m))).astype(bool)]
        row: dict[str, object] = {
            "driver": driver,
            "variant": variant,
            "score": float(score["median"].iloc[0]) if not score.empty else math.nan,
            "score unit": str(score["unit"].iloc[0]) if not score.empty else "",
            "count": float(count["median"].iloc[0]) if not count.empty else math.nan,
            "probes leaking": int((probes["median"] >= 0.5).sum()),
            "probes": len(probes),
        }
        if results is not None:
            iv = intervals.get((str(driver), str(variant)))
            row["interval"] = iv.text() if iv is not None else ""
            errors, undecided, uncertain = left_out.get((str(driver), str(variant)), ((), (), ()))
            row["could not run"] = ", ".join(errors)
            row["could not decide"] = ", ".join(undecided)
            row["near threshold"] = ", ".join(uncertain)
        rows.append(row)
    df = pd.DataFrame(rows)
    df["_o"] = df["driver"].map(driver_order)
    return df.sort_values(["_o", "variant"]).drop(columns="_o").reset_index(drop=True)


def leakage_left_out(
    results: Results,
) -> dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    """Per (driver, variant): the probes that could not run, those that could not decide, and the
    scored ones near their threshold in any repetition (from the metadata of "leakage.score"),
    each sorted by name."""
    found: dict[tuple[str, str], tuple[set[str], set[str], set[str]]] = {}
    for s in results.samples:
        if s.metric != "leakage.score" or s.value is None or s.warmup:
            continue
        meta = s.metadata or {}
        errors, undecided, uncertain = found.setdefault(
            (s.driver, variant_of(s.params)), (set(), set(), set())
        )
        errors.update(meta.get("errors") or {})
        undecided.update(meta.get("inconclusive") or {})
        uncertain.update(meta.get("uncertain") or {})
    return {k: (tuple(sorted(e)), tuple(sorted(u)), tuple(sorted(n))) for k, (e, u, n) in found.items()}
