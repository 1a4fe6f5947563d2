"""Boot phases: guest clock readings on the host timeline, the one (clamped) implementation."""

from __future__ import annotations

from isobench.drivers.base import PhaseClock
from isobench.drivers.guest.agent import AgentReady
from isobench.drivers.guest.phases import boot_phases, record_boot


def _ready(boottime_ns: int, init_s: float | None, switch_s: float | None) -> AgentReady:
    return AgentReady(boottime_ns, boottime_ns, boottime_ns - 100, init_s, switch_s, "k", "/var/tmp/isobench")


def test_boot_phases_map_guest_clocks_onto_the_host_timeline() -> None:
    clock = PhaseClock()
    boot_phases(
        clock, started_ns=1_000_000_000, ready=_ready(3_000_000_000, 2.5, 2.9), ready_ns=5_000_000_000
    )
    got = {p.name: (p.start_ns, p.end_ns) for p in clock.phases}
    assert got == {
        "firmware": (1_000_000_000, 2_000_000_000),
        "kernel": (2_000_000_000, 4_500_000_000),
        "initramfs": (4_500_000_000, 4_900_000_000),
        "agent": (4_900_000_000, 5_000_000_000),
    }


def test_skewed_guest_clocks_never_give_a_negative_phase() -> None:
    # The guest says it has been up longer than qemu has run, and its switch_root mark precedes
    # /init: every mark is clamped to the one before it.
    clock = PhaseClock()
    boot_phases(
        clock, started_ns=1_000_000_000, ready=_ready(2_000_000_000, 0.5, 0.2), ready_ns=2_500_000_000
    )
    assert all(p.end_ns >= p.start_ns for p in clock.phases)
    got = {p.name: (p.start_ns, p.end_ns) for p in clock.phases}
    assert got["firmware"] == (1_000_000_000, 1_000_000_000)
    assert got["kernel"] == (1_000_000_000, 1_000_000_000)  # /init at -1.5 s on the host: clamped
    assert got["initramfs"] == (1_000_000_000, 1_000_000_000)
    assert got["agent"] == (1_000_000_000, 2_500_000_000)


def test_record_boot_adds_ready_and_boot_total_and_skips_unknown_marks() -> None:
    clock = PhaseClock()
    record_boot(clock, 500, 1_000, _ready(1_000, None, None), 3_000)
    got = {p.name: (p.start_ns, p.end_ns) for p in clock.phases}
    assert got == {
        "firmware": (1_000, 2_000),
        "agent": (2_000, 3_000),
        "ready": (1_000, 3_000),
        "boot_total": (500, 3_000),
    }
