"""The limits workload: its probes' parsers, how a memory stop is classified, and a whole cell
through a fake driver whose sandboxes answer like the real probes did on this host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from isobench.drivers.base import Capabilities, SandboxSpec
from isobench.errors import UsageError, WorkloadError
from isobench.model import Measurement
from isobench.testing import Reply, Rule
from isobench.workloads._common import resolve_params
from isobench.workloads._limit_probes import (
    BURN,
    EAT,
    FORK,
    NEIGHBOUR,
    classify_memory_stop,
    new_log_lines,
    parse_burn,
    parse_cpu_list,
    parse_dd,
    parse_forks,
    parse_neighbour,
)
from isobench.workloads.limits import LimitsParams, LimitsWorkload, quota_overrides

from .conftest import make_context  # type: ignore[import-not-found]
from .fleet_fakes import CONTAINER, WHOLE_CPUS, FleetDriver, fake_proc, fleet_driver  # type: ignore[import-not-found]

MIB = 1 << 20

# Printed by BURN (2 burners, 2 s) in a container with a 0.5 CPU quota on this host.
BURN_OUT = "allowed 0-1\non 1\non 0\non 1\non 1\nwall 9712.31 9714.36\ncpu 0.9 0.42\n"
# FORK in a container with pids.max = 128, and on the host (no limit: the probe's cap).
FORK_REFUSED = "forks 125\nrefused: Resource temporarily unavailable\n"
FORK_CAPPED = "forks 512\ncap\n"
# GNU dd's summary (stderr) for the disk probe's 40 MiB at 20 MiB/s, write and read.
DD_WRITE = "40+0 records in\n40+0 records out\n41943040 bytes (42 MB, 40 MiB) copied, 2.04518 s, 20.5 MB/s\n"
DD_READ = "40+0 records in\n40+0 records out\n41943040 bytes (42 MB, 40 MiB) copied, 1.99655 s, 21.0 MB/s\n"
NEIGHBOUR_OUT = "units 30 wall 100.00 100.30\n"


def test_parse_burn() -> None:
    b = parse_burn(BURN_OUT)
    assert b.wall_s == pytest.approx(2.05)
    assert b.cpu_s == pytest.approx(1.32)
    assert b.cpus == pytest.approx(1.32 / 2.05)
    assert b.allowed == (0, 1)
    assert b.seen == {1: 3, 0: 1}


def test_parse_burn_refuses_output_cut_short() -> None:
    with pytest.raises(WorkloadError, match="no wall/cpu"):
        parse_burn("allowed 1\non 1\n")


def test_parse_cpu_list() -> None:
    assert parse_cpu_list("0-2,5") == (0, 1, 2, 5)
    assert parse_cpu_list("3\n") == (3,)
    with pytest.raises(WorkloadError):
        parse_cpu_list("a-b")


def test_parse_dd() -> None:
    w = parse_dd(DD_WRITE)
    assert (w.bytes, w.seconds) == (40 * MIB, 2.04518)
    assert w.bps == pytest.approx(40 * MIB / 2.04518)
    busybox = parse_dd("41943040 bytes (40.0MB) copied, 2.000427 seconds, 20.0MB/s\n")
    assert busybox.seconds == 2.000427
    assert parse_dd("1048576 bytes (1,0 MB, 1,0 MiB) copied, 0,5 s, 2,1 MB/s").seconds == 0.5
    with pytest.raises(WorkloadError, match="no summary"):
        parse_dd("dd: failed to open '/data/x': Invalid argument\n")


def test_parse_neighbour() -> None:
    assert parse_neighbour(NEIGHBOUR_OUT) == pytest.approx(100.0)
    with pytest.raises(WorkloadError):
        parse_neighbour("units 3 wall 5.0 5.0\n")
    with pytest.raises(WorkloadError):
        parse_neighbour("")


def test_parse_forks() -> None:
    refused = parse_forks(FORK_REFUSED)
    assert (refused.count, refused.refused) == (125, True)
    capped = parse_forks(FORK_CAPPED)
    assert (capped.count, capped.refused, capped.why) == (512, False, "cap")
    with pytest.raises(WorkloadError):
        parse_forks("")


@pytest.mark.parametrize(
    ("kw", "by", "enforced"),
    [
        ({"stdout": "1\n2\ncap 2\n"}, "reached the eater's own cap", False),
        ({"stdout": "1\n185\n", "stderr": "Out of memory!\n", "exit_code": 1}, "allocation failure", True),
        ({"stdout": "1\n507\n", "exit_code": 137, "oom_kills_delta": 1.0}, "cgroup OOM kill", True),
        (
            {
                "stdout": "507\n",
                "exit_code": -9,
                "host_log": ["[ 1.0] Memory cgroup out of memory: Killed process 12 (perl)"],
            },
            "cgroup OOM kill",
            True,
        ),
        (
            {"stdout": "420\n", "exit_code": 137, "guest_log": ["Out of memory: Killed process 99 (perl)"]},
            "guest OOM killer",
            True,
        ),
        ({"stdout": "3\n", "exit_code": -9}, "no OOM line found", True),
        ({"stdout": "3\n", "exit_code": 2}, "exited with 2", True),
    ],
)
def test_classify_memory_stop(kw: dict[str, Any], by: str, enforced: bool) -> None:
    args: dict[str, Any] = {
        "exit_code": 0,
        "stdout": "",
        "stderr": "",
        "oom_kills_delta": None,
        "host_log": [],
    }
    stop = classify_memory_stop(**{**args, **kw})
    assert by in stop.by
    assert stop.enforced is enforced
    last = int(kw["stdout"].split()[-1])
    assert stop.bytes == last * MIB


def test_new_log_lines_survive_a_full_ring_buffer() -> None:
    before = ["a", "b", "c"]
    assert new_log_lines(before, ["a", "b", "c", "d"]) == ["d"]
    # the oldest lines fell out while new ones came in: same length, still two new lines
    assert new_log_lines(before, ["c", "oom", "e"]) == ["oom", "e"]
    assert new_log_lines([], ["x"]) == ["x"]
    assert new_log_lines(before, ["x", "y"]) == ["x", "y"]  # everything rotated out


def test_the_probes_are_perl_without_modules() -> None:
    # the guest image and every host have perl-base; nothing may need a module from elsewhere
    for script in (BURN, EAT, FORK, NEIGHBOUR):
        assert "use " not in script and "require" not in script


def _script(mem_exit: int, mem_out: str, fork_out: str, neighbour: Any = NEIGHBOUR_OUT) -> list[Rule]:
    """The probes answered as they were on this host; the rules match a line of each script."""
    return [
        (r"Cpus_allowed_list", BURN_OUT),
        (r"^dd if=/dev/zero ", Reply(stderr=DD_WRITE)),
        (r"^dd if=", Reply(stderr=DD_READ)),
        (r"^rm -f ", ""),
        (r"units \$n", neighbour),
        (r"getppid", fork_out),
        (r"push @hold", Reply(stdout=mem_out, exit_code=mem_exit)),
        (r"^dmesg$", ""),
        (r"^true$", ""),
    ]


def _run(
    driver: FleetDriver, tmp_path: Path, log: list[str] | None = None, **params: Any
) -> list[Measurement]:
    spec = SandboxSpec(name="isobench-t-fake", run_id="t", memory_mib=512)
    ctx = make_context(driver, spec, quick=True, timeout=120.0, params=params)
    lines = log or []
    wl = LimitsWorkload(proc_root=fake_proc(tmp_path / "proc"), kernel_log=lambda: list(lines))
    return list(wl.run(ctx))


def _one(ms: list[Measurement], metric: str, **params: Any) -> Measurement:
    found = [m for m in ms if m.metric == metric and all(m.params.get(k) == v for k, v in params.items())]
    assert len(found) == 1, (metric, params, [m.metric for m in ms])
    return found[0]


def test_a_container_cell(tmp_path: Path) -> None:
    driver = fleet_driver(
        stats={"cpu_seconds": 1.0, "oom_kills": 0.0},
        script=_script(137, "1\n506\n507\n", FORK_REFUSED),
    )
    ms = _run(driver, tmp_path, cpuset=[0])
    assert _one(ms, "limits.cpu.delivered", requested_cpus=0.5).value == pytest.approx(1.32 / 2.05)
    assert _one(ms, "limits.cpu.fidelity", requested_cpus=0.5).value == pytest.approx(1.32 / 2.05 / 0.5)
    assert _one(ms, "limits.cpuset.outside_share").value == pytest.approx(0.75)
    assert _one(ms, "limits.cpuset.held").value == 0.0
    forks = _one(ms, "limits.pids.forks")
    assert forks.value == 125 and forks.metadata["enforced"] is True
    assert _one(ms, "limits.pids.fidelity").value == pytest.approx(126 / 128)
    stop = _one(ms, "limits.memory.stopped_at")
    assert stop.value == 507 * MIB
    assert "no OOM line" in stop.metadata["stopped_by"]  # the fake's oom_kills never moves
    # the 0.5 CPU quota went to the driver as a CPU-time quota in the spec
    quotas = [s for s in driver.specs if s.name.endswith("-cpu0.5")]
    assert quotas and quotas[0].cpu_quota == 0.5 and quotas[0].vcpus == 1 and quotas[0].cpuset is None
    limited = [s for s in driver.specs if s.name.endswith("-lim")]
    assert limited[0].cpuset == (0,) and limited[0].pids_limit == 128
    # disk bandwidth: 20 MiB/s asked through the spec, 40 MiB each way with O_DIRECT, then removed
    assert limited[0].io_bps == 20 * MIB
    wrote = _one(ms, "limits.io.write.delivered", requested_bps=20 * MIB)
    assert wrote.value == pytest.approx(40 * MIB / 2.04518) and wrote.unit == "bytes_per_second"
    assert _one(ms, "limits.io.read.fidelity").value == pytest.approx(40 / 1.99655 / 20)
    dd = [c for c in driver.commands() if c.startswith("dd ")]
    assert "oflag=direct" in dd[0] and "count=40" in dd[0] and "iflag=direct" in dd[1]
    assert any(c.startswith("rm -f ") and c.endswith("isobench-limits-io.bin") for c in driver.commands())
    # the neighbour: a sandbox of its own, unlimited disk, steady loop -> unaffected
    neighbours = [s for s in driver.specs if s.name.endswith("-nbr")]
    assert len(neighbours) == 1 and neighbours[0].io_bps is None and neighbours[0].cpuset is None
    for probe in ("pids", "memory"):
        assert _one(ms, f"limits.{probe}.neighbour_throughput").value == pytest.approx(1.0)
        assert _one(ms, f"limits.{probe}.neighbour_latency_max").unit == "seconds"
    assert driver.leaked == []


def test_a_driver_that_cannot_limit_disk_bandwidth(tmp_path: Path) -> None:
    """bwrap and host: the same dd, unlimited, reported as not expressible, with no fidelity."""
    driver = FleetDriver.like(
        Capabilities.container(order=1), name="bwrap", script=_script(0, "cap 2\n", FORK_CAPPED)
    )
    ms = _run(driver, tmp_path)  # type: ignore[arg-type]
    wrote = _one(ms, "limits.io.write.delivered")
    assert wrote.metadata["not_expressible"] is True
    assert not [m for m in ms if m.metric.startswith("limits.io.") and m.metric.endswith("fidelity")]
    assert all(s.io_bps is None for s in driver.specs)  # type: ignore[attr-defined]


def test_a_neighbour_slowed_down_by_the_bomb(tmp_path: Path) -> None:
    rounds = iter([NEIGHBOUR_OUT, NEIGHBOUR_OUT])  # the quick baseline: two rounds alone

    def neighbour(argv: tuple[str, ...]) -> Reply:
        # after the baseline: a quarter of the throughput, and 0.2 s more than the loop's round
        return Reply(stdout=next(rounds, "units 30 wall 100.00 101.20\n"), seconds=float(argv[-1]) + 0.2)

    driver = fleet_driver(script=_script(137, "1\n506\n", FORK_REFUSED, neighbour))
    ms = _run(driver, tmp_path, neighbour_round_s=0.05)
    nb = _one(ms, "limits.pids.neighbour_throughput")
    assert nb.value == pytest.approx(0.25)
    assert nb.metadata["baseline_units_per_s"] == 100.0
    assert _one(ms, "limits.memory.neighbour_latency_max").value >= 0.2


def test_a_guest_cannot_express_half_a_cpu(tmp_path: Path) -> None:
    driver = fleet_driver(guest=True, script=_script(137, "420\n", FORK_CAPPED))
    ms = _run(driver, tmp_path, log=[])
    delivered = [m for m in ms if m.metric == "limits.cpu.delivered"]
    assert [m.params["requested_cpus"] for m in delivered] == [1.0]
    assert delivered[0].metadata["not_expressible"] == [0.5]
    assert "cap of 512" in _one(ms, "limits.pids.forks").metadata["stopped_by"]
    # a guest's dmesg was asked for after the eater died, to find the guest's OOM killer
    assert "dmesg" in driver.commands()
    assert driver.leaked == []


def test_sandboxes_are_destroyed_when_a_probe_fails(tmp_path: Path) -> None:
    driver = fleet_driver(script=[(r"^perl", Reply(exit_code=1, stderr="perl: not found"))])
    with pytest.raises(WorkloadError, match="CPU burner failed"):
        _run(driver, tmp_path)
    assert driver.leaked == []


def test_quota_overrides_ask_the_capability_not_the_name() -> None:
    # named like a driver without the capability: the capability decides
    quota = FleetDriver.like(CONTAINER, name="bwrap")
    assert quota_overrides(quota, 0.5) == {"vcpus": 1, "cpu_quota": 0.5}
    assert quota_overrides(quota, 1.5) == {"vcpus": 2, "cpu_quota": 1.5}
    whole = FleetDriver.like(WHOLE_CPUS, name="container")
    assert quota_overrides(whole, 1.0) == {"vcpus": 1}
    assert quota_overrides(whole, 2.0) == {"vcpus": 2}
    assert quota_overrides(whole, 0.5) is None


def test_params_are_validated(tmp_path: Path) -> None:
    assert resolve_params(LimitsParams, True, {}, "limits").cpu_seconds == 2.0
    with pytest.raises(UsageError, match="host_memory_fraction"):
        resolve_params(LimitsParams, True, {"host_memory_fraction": 0.9}, "limits")
    with pytest.raises(UsageError, match="cpu_quotas must not be empty"):
        resolve_params(LimitsParams, True, {"cpu_quotas": []}, "limits")
    with pytest.raises(UsageError, match="not available"):
        _run(fleet_driver(script=_script(0, "cap 2\n", FORK_CAPPED)), tmp_path, cpuset=[4096])


def test_a_neighbour_that_cannot_run_its_loop_leaves_only_its_figures_out(tmp_path: Path) -> None:
    driver = fleet_driver(
        script=_script(137, "1\n506\n", FORK_REFUSED, Reply(exit_code=2, stderr="perl: not found"))
    )
    ms = _run(driver, tmp_path)
    assert not [m for m in ms if "neighbour" in m.metric]
    assert _one(ms, "limits.pids.forks").value == 125 and _one(ms, "limits.memory.stopped_at")
    assert driver.leaked == []
