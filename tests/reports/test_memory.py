"""The idle memory overhead: disjoint parts from one repetition that add up to its measured total."""

from __future__ import annotations

from isobench.model import Sample
from isobench.reports.memory import CGROUP_PART, idle_overhead

MiB = 2.0**20


def _s(driver: str, metric: str, value: float, rep: int) -> Sample:
    return Sample(
        run_id="r",
        driver=driver,
        workload="idle-memory",
        metric=metric,
        value=value,
        unit="bytes",
        repetition=rep,
    )


def _guest(rep: int, pss: float, ram: float, delta: float) -> list[Sample]:
    return [
        _s("vm", "idle-memory.host_view", (pss + ram) * MiB, rep),
        _s("vm", "idle-memory.host_view.vm.qemu_pss_bytes", pss * MiB, rep),
        _s("vm", "idle-memory.host_view.vm.qemu_uss_bytes", pss * 0.9 * MiB, rep),
        _s("vm", "idle-memory.host_view.vm.guest_ram_rss_bytes", ram * MiB, rep),
        _s("vm", "idle-memory.host_view.vm.host_memavailable_delta_bytes", delta * MiB, rep),
        _s("vm", "idle-memory.host_view.vm.guest_used_bytes", 40 * MiB, rep),
        _s("vm", "idle-memory.inside_used", 40 * MiB, rep),
    ]


def test_guest_parts_are_disjoint_and_from_the_median_repetition() -> None:
    samples = _guest(0, 60, 180, 300) + _guest(1, 70, 190, 310) + _guest(2, 50, 150, 290)
    got = idle_overhead(samples)["vm"]
    # the median repetition by total is rep 0 (240 MiB of 200, 240, 260)
    assert got.total == 240 * MiB
    assert dict(got.parts) == {
        "hypervisor process (excl. guest RAM)": 60 * MiB,
        "guest RAM backed by the host": 180 * MiB,
    }
    assert sum(v for _, v in got.parts) <= got.total
    assert got.memavailable_delta == 300 * MiB
    assert got.totals == (200 * MiB, 240 * MiB, 260 * MiB)


def test_container_limit_peak_and_inside_view_are_not_overhead() -> None:
    samples = []
    for rep, used in enumerate((0.75, 0.7, 0.8)):
        samples += [
            _s("runc", "idle-memory.host_view", used * MiB, rep),
            _s("runc", "idle-memory.host_view.memory_limit_bytes", 512 * MiB, rep),
            _s("runc", "idle-memory.host_view.memory_peak_bytes", 3 * MiB, rep),
            _s("runc", "idle-memory.inside_used", 1100 * MiB, rep),
        ]
    got = idle_overhead(samples)["runc"]
    assert got.parts == ((CGROUP_PART, 0.75 * MiB),)
    assert got.total == 0.75 * MiB
    assert got.memavailable_delta is None


def test_native_and_unmeasured_drivers_have_no_entry() -> None:
    samples = [
        _s("host", "idle-memory.inside_used", 900 * MiB, 0),
        _s("bwrap", "idle-memory.inside_used", 900 * MiB, 0),
        _s("host", "idle-memory.host_view", 1.0, 0),
    ]
    assert idle_overhead(samples) == {}
