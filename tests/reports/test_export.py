from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from isobench.errors import UsageError
from isobench.reports.export import benchmark_stats, pytest_benchmark_json, write_samples
from isobench.results import Results
from pytest_benchmark.stats import Stats

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 10, 13, 20])
def test_stats_match_pytest_benchmark(n: int) -> None:
    data = list(np.random.default_rng(n).lognormal(0, 0.3, n))
    data[0] *= 5  # an outlier, so the outlier counters are exercised
    ours = benchmark_stats(data)
    theirs = Stats()
    for v in data:
        theirs.update(v)
    for field, value in theirs.as_dict().items():
        assert ours[field] == pytest.approx(value), field
    assert ours["data"] == data


def test_export_has_time_metrics_only_in_seconds(results: Results) -> None:
    doc = pytest_benchmark_json(results)
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(doc)
    names = {b["name"] for b in doc["benchmarks"]}
    assert "startup.total[vm]" in names
    assert "cpu.latency_ms[container]" in names  # ms, converted
    assert not any(n.startswith(("cpu.events_per_s", "disk.", "leakage.")) for n in names)
    lat = next(b for b in doc["benchmarks"] if b["name"] == "cpu.latency_ms[container]")
    assert lat["stats"]["median"] == pytest.approx(1.5e-3)
    assert lat["stats"]["rounds"] == 10
    assert doc["machine_info"]["release"] == "6.1.0-56-cloud-amd64"
    json.dumps(doc)  # serialisable as is


def test_pytest_benchmark_compare_reads_the_export(results: Results, tmp_path: Path) -> None:
    path = tmp_path / "0001_isobench.json"
    path.write_text(json.dumps(pytest_benchmark_json(results)))
    out_csv = tmp_path / "cmp"
    proc = subprocess.run(
        [str(BIN / "pytest-benchmark"), "compare", str(path), "--csv", str(out_csv)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Failed to load" not in proc.stdout + proc.stderr
    assert "startup.total[vm]" in proc.stdout
    rows = list(csv.DictReader(next(tmp_path.glob("cmp*.csv")).open()))
    by_name = {r["name"]: r for r in rows}
    assert float(by_name["isobench::startup::startup.total[vm]"]["rounds"]) == 10
    assert float(by_name["isobench::startup::startup.total[vm]"]["median"]) == pytest.approx(2.37, rel=0.05)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_samples_export_round_trips(results: Results, tmp_path: Path, suffix: str) -> None:
    path = write_samples(results, tmp_path / f"samples{suffix}")
    df = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert len(df) == len(results.samples)
    failed = df[df["error"].notna()]
    assert len(failed) == 1 and "fio exited 1" in failed["error"].iloc[0]
    assert df["warmup"].sum() == 1
    disk = df[df["metric"] == "disk.read_mib_s"].iloc[0]
    assert json.loads(disk["params"])["storage"] in {"rootfs", "volume"}
    assert list(tmp_path.iterdir()) == [path]


def test_unknown_export_format_is_a_usage_error(results: Results, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\.csv or \.parquet"):
        write_samples(results, tmp_path / "samples.xlsx")
