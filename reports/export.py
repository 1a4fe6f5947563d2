"""Exports: pytest-benchmark JSON (so ``pytest-benchmark compare`` reads isobench runs) and every
sample as CSV or Parquet."""

from __future__ import annotations

import json
import math
import platform
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from isobench.errors import ResultsError, UsageError
from isobench.results import CSV_FIELDS, Results, atomic_write_text

from .cells import group_cells

__all__ = ["TIME_UNITS", "benchmark_stats", "pytest_benchmark_json", "samples_frame", "write_samples"]

#: Units pytest-benchmark can show: it assumes seconds, so other time units are converted.
TIME_UNITS: dict[str, float] = {"s": 1.0, "seconds": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _quartiles(data: Sequence[float]) -> tuple[float, float]:
    """Q1/Q3 exactly as pytest-benchmark computes them (its methods 2 and 3), for identical output."""
    n = len(data)
    if n == 1:
        return data[0], data[0]
    if n % 2:
        k, q = n // 4, n % 4
        if q == 1:
            return 0.25 * data[k - 1] + 0.75 * data[k], 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
        return 0.75 * data[k] + 0.25 * data[k + 1], 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]
    return statistics.median(data[: n // 2]), statistics.median(data[n // 2 :])


def benchmark_stats(values: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` object for one benchmark (fields of pytest_benchmark.stats.Stats)."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("no values")
    s = sorted(data)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if len(data) > 1 else 0.0
    q1, q3 = _quartiles(s)
    iqr = q3 - q1
    if len(s) == 1:
        ld, hd = s[0], s[0]
    else:
        ld = s[bisect_left(s, q1 - 1.5 * iqr)]
        hd = s[bisect_right(s, q3 + 1.5 * iqr) - 1]
    iqr_out = sum(1 for v in data if v < q1 - 1.5 * iqr or v > q3 + 1.5 * iqr)
    sd_out = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    total = sum(data)
    return {
        "min": s[0],
        "max": s[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": len(data),
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_out,
        "stddev_outliers": sd_out,
        "outliers": f"{sd_out};{iqr_out}",
        "ld15iqr": ld,
        "hd15iqr": hd,
        "ops": len(data) / total if total else 0,
        "total": total,
        "data": data,
        "iterations": 1,
    }


def _machine_info(run: Mapping[str, Any]) -> dict[str, Any]:
    host = run.get("host")
    if not isinstance(host, Mapping):
        host = {}
    # pytest-benchmark reads these keys when it groups or labels by machine; unknown ones are kept.
    info: dict[str, Any] = {
        "node": str(host.get("hostname", platform.node())),
        "processor": str(host.get("cpu_model", host.get("processor", ""))),
        "machine": str(host.get("machine", platform.machine())),
        "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_implementation_version": platform.python_version(),
        "python_version": platform.python_version(),
        "python_build": list(platform.python_build()),
        "release": str(host.get("kernel", platform.release())),
        "system": str(host.get("system", platform.system())),
        "cpu": {"brand_raw": str(host.get("cpu_model", "")), "count": host.get("cpus")},
        "isobench": {"run_id": run.get("run_id"), "host": dict(host)},
    }
    return info


def _commit_info(run: Mapping[str, Any]) -> dict[str, Any]:
    c = run.get("commit")
    if not isinstance(c, Mapping):
        c = {}
    return {
        "id": c.get("id", run.get("commit_id")),
        "time": c.get("time"),
        "author_time": c.get("author_time"),
        "dirty": c.get("dirty", False),
        "project": c.get("project", "isobench"),
        "branch": c.get("branch"),
    }


def _iso(ts: Any) -> str | None:
    if not isinstance(ts, int | float) or not math.isfinite(ts):
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat()


def pytest_benchmark_json(results: Results) -> dict[str, Any]:
    """The run as a pytest-benchmark document: one benchmark per time-valued cell (unit s, ms, us,
    ns; converted to seconds), named ``metric[driver,variant]`` and grouped by workload/metric."""
    benchmarks: list[dict[str, Any]] = []
    for key, cell in group_cells(results).items():
        scale = TIME_UNITS.get(cell.unit.lower())
        if scale is None or not cell.values:
            continue
        param = key.driver + (f",{key.variant}" if key.variant else "")
        params: dict[str, Any] = {"driver": key.driver, **{str(k): v for k, v in cell.params.items()}}
        benchmarks.append(
            {
                "group": f"{key.workload}/{key.metric}",
                "name": f"{key.metric}[{param}]",
                "fullname": f"isobench::{key.workload}::{key.metric}[{param}]",
                "params": json.loads(json.dumps(params, default=str)),
                "param": param,
                "extra_info": {"unit": cell.unit, "better": cell.better, "run_id": results.run_id},
                "options": {
                    "disable_gc": False,
                    "timer": "CLOCK_MONOTONIC",
                    "min_rounds": 1,
                    "max_time": 0,
                    "min_time": 0,
                    "warmup": False,
                },
                "stats": benchmark_stats([v * scale for v in cell.values]),
            }
        )
    return {
        "machine_info": _machine_info(results.run),
        "commit_info": _commit_info(results.run),
        "benchmarks": benchmarks,
        "datetime": _iso(results.run.get("started")),
        "version": "5.1.0",
    }


def samples_frame(results: Results) -> pd.DataFrame:
    """Every sample (warm-ups and failures included, flagged) as one flat table; params and metadata
    are JSON text because their value types differ between workloads."""
    rows = []
    for s in results.samples:
        d = s.to_dict()
        d["params"] = json.dumps(d["params"], sort_keys=True, default=str)
        d["metadata"] = json.dumps(d["metadata"], sort_keys=True, default=str)
        rows.append({k: d[k] for k in CSV_FIELDS})
    df = pd.DataFrame(rows, columns=list(CSV_FIELDS))
    return df.astype(
        {
            "run_id": "string",
            "driver": "string",
            "workload": "string",
            "metric": "string",
            "value": "float64",
            "unit": "string",
            "repetition": "int64",
            "better": "string",
            "phase": "string",
            "warmup": "bool",
            "error": "string",
            "timestamp": "float64",
            "params": "string",
            "metadata": "string",
        }
    )


def write_samples(results: Results, path: Path) -> Path:
    """Write every sample to ``path``: Parquet for ``.parquet``, CSV for ``.csv``."""
    df = samples_frame(results)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            atomic_write_text(path, df.to_csv(index=False))
        elif suffix == ".parquet":
            try:
                import pyarrow  # noqa: F401  (pandas needs it for Parquet; fail with a clear line)
            except ImportError:
                raise UsageError("Parquet export needs pyarrow: pip install pyarrow") from None
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                df.to_parquet(tmp, index=False, engine="pyarrow")
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            raise UsageError(f"cannot export to {path.name}: use a .csv or .parquet file name")
    except OSError as err:
        raise ResultsError(f"cannot write {path}: {err.strerror}; pick a writable path") from err
    return path
