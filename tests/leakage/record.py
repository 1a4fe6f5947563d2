"""Record the fixtures in tests/leakage/data on a real host (root): not a test, a tool.

    .venv/bin/python tests/leakage/record.py static [--driver host|container] OUT.json
    .venv/bin/python tests/leakage/record.py corr --load cpu [--driver host|container|runc] [--noload]
        [--period 0.25 --periods 8] OUT.json
    .venv/bin/python tests/leakage/record.py repeat [--driver container] [--times 3] OUTDIR

``repeat`` records every load at quick and at full settings, ``--times`` times over, in one sandbox,
one ``corr``-format file each (``DRIVER-LOAD-quick|full-K-EPOCH.json``): how
``data/margins.json`` and ``data/corr_ctr_disk_*.json`` were recorded.

``static`` stores the host's readings, what the probe script printed inside (sections and exit
statuses) and the canaries; ``corr`` stores one sampling exec's raw dump with the host's pattern
(``--noload`` drives no load, for "the pattern explains nothing" fixtures). The container driver
runs the built image with hardening on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from isobench.drivers.base import DriverContext, Sandbox, SandboxSpec, get_driver
from isobench.leakage import (
    CORRELATION_PROBES,
    STATIC_PROBES,
    CorrelationSettings,
    Facts,
    HostView,
    env_canary,
    planted_canaries,
)
from isobench.leakage import series as s
from isobench.leakage.catalogue import first_disk
from isobench.leakage.loads import LOAD_KINDS, running_load
from isobench.leakage.runner import parse_sections, static_script


@contextlib.contextmanager
def _sandbox(driver: str, run_id: str, work: Path) -> Iterator[tuple[Sandbox, SandboxSpec]]:
    ctx = DriverContext(Path("/var/lib/isobench"), work, run_id)
    spec = SandboxSpec(name=f"isobench-{run_id}-leak", run_id=run_id, options={"hardening": True})
    if driver != "container":
        spec = replace(spec, options={})
    drv: Any = get_driver(driver, ctx)
    sb = drv.create(spec)
    try:
        yield sb, spec
    finally:
        sb.destroy()
        drv.gc(run_id)


def _static(driver: str) -> dict[str, Any]:
    run_id = f"rec{uuid.uuid4().hex[:6]}"
    hv = HostView()
    with (
        tempfile.TemporaryDirectory() as work,
        env_canary(run_id),
        _sandbox(driver, run_id, Path(work)) as (sb, spec),
        planted_canaries(run_id) as canaries,
    ):
        facts = Facts(
            canaries, run_id, spec.name, 1, spec.memory_mib, host_disk=first_disk(hv.read("proc/partitions"))
        )
        host = {p.name: p.host(hv, facts) for p in STATIC_PROBES}
        res = sb.exec(["sh", "-c", static_script(STATIC_PROBES, facts)], timeout=120)
    sections = parse_sections(res.stdout)
    c = asdict(canaries)
    return {
        "recorded": f"{time.strftime('%Y-%m-%d')} driver={driver}",
        "canaries": c,
        "run_id": run_id,
        "sandbox_name": spec.name,
        "host_disk": facts.host_disk,
        "host": host,
        "inside": {k: text for k, (text, _rc) in sections.items()},
        "statuses": {k: rc for k, (_text, rc) in sections.items()},
        "exec_seconds": res.seconds,
    }


def _corr(driver: str, load: str, noload: bool, period: float, periods: int) -> dict[str, Any]:
    run_id = f"rec{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as work, _sandbox(driver, run_id, Path(work)) as (sb, _spec):
        return _record(sb, Path(work), driver, load, noload, period, periods)


def _repeat(driver: str, times: int, out: Path) -> None:
    run_id = f"rec{uuid.uuid4().hex[:6]}"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work, _sandbox(driver, run_id, Path(work)) as (sb, _spec):
        for k in range(times):
            for mode, st in (("quick", CorrelationSettings.quick()), ("full", CorrelationSettings())):
                for load in LOAD_KINDS:
                    # the runner's floor for the memory load's period (runner._MIN_PERIOD)
                    period = max(st.period, 0.5 if load == "memory" else 0.0)
                    rec = _record(sb, Path(work), driver, load, False, period, st.periods)
                    name = f"{driver}-{load}-{mode}-{k}-{int(time.time())}.json"
                    (out / name).write_text(json.dumps(rec) + "\n")
                    print(name, flush=True)


def _record(
    sb: Sandbox, work: Path, driver: str, load: str, noload: bool, period: float, periods: int
) -> dict[str, Any]:
    st = replace(CorrelationSettings(), period=period, periods=periods)
    paths = sorted({p.path for p in CORRELATION_PROBES if p.load == load})
    script = s.sampler_script(paths, st.lead + st.period * st.periods + st.tail, st.interval)
    t0 = time.clock_gettime(time.CLOCK_BOOTTIME)
    start = t0 + st.lead
    ctx = contextlib.nullcontext() if noload else running_load(load, start, st.period, st.periods, work)  # type: ignore[arg-type]
    with ctx:
        res = sb.exec(["sh", "-c", script], timeout=120)
        t1 = time.clock_gettime(time.CLOCK_BOOTTIME)
    return {
        "recorded": f"{time.strftime('%Y-%m-%d %H:%M:%S')} driver={driver} load={load}"
        + (" (not driven)" if noload else ""),
        "load": load,
        "exec_start": t0,
        "exec_end": t1,
        "pattern": {"start": start, "period": st.period, "periods": st.periods},
        "stdout": res.stdout,
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("static", "corr", "repeat"))
    ap.add_argument("out", type=Path)
    ap.add_argument("--driver", default="host", choices=("host", "container", "runc"))
    ap.add_argument("--times", type=int, default=3)
    ap.add_argument("--load", default="cpu")
    ap.add_argument("--noload", action="store_true")
    ap.add_argument("--period", type=float, default=0.25)
    ap.add_argument("--periods", type=int, default=8)
    a = ap.parse_args(argv)
    if a.kind == "repeat":
        _repeat(a.driver, a.times, a.out)
        return 0
    rec = _static(a.driver) if a.kind == "static" else _corr(a.driver, a.load, a.noload, a.period, a.periods)
    a.out.write_text(json.dumps(rec, indent=None) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
