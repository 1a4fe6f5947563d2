"""A guest's boot phases: the agent's clock readings mapped onto the host's CLOCK_MONOTONIC.

The agent's ready frame says how long the guest had been up (its boottime clock) when it became
ready, and when /init and switch_root ran; the host knows when the ready frame arrived. Guest
boottime 0 is therefore ``ready_ns - boottime_ns`` on the host timeline: the kernel start. From the
moment qemu was up (``started_ns``) the phases are ``firmware`` (-> kernel start: firmware and
kernel decompression), ``kernel`` (-> initramfs /init), ``initramfs`` (-> switch_root) and
``agent`` (-> ready frame). Clock skew between guest and host can place a guest mark before the
previous one; every mark is clamped so no phase is negative.
"""

from __future__ import annotations

from isobench.drivers.base import PhaseClock
from isobench.drivers.guest.agent import AgentReady

__all__ = ["boot_phases", "record_boot"]


def boot_phases(clock: PhaseClock, started_ns: int, ready: AgentReady, ready_ns: int) -> None:
    """Add firmware, kernel, initramfs and agent (the last two only as far as the agent knows)."""
    kernel_start = ready_ns - ready.boottime_ns
    clock.add("firmware", started_ns, max(started_ns, kernel_start))
    marks = [max(started_ns, kernel_start)]
    for up in (ready.init_uptime_s, ready.switch_uptime_s):
        if up is not None:
            marks.append(max(marks[-1], kernel_start + int(up * 1e9)))
    names = ["kernel", "initramfs"]
    for i in range(len(marks) - 1):
        clock.add(names[i], marks[i], marks[i + 1])
    clock.add("agent", marks[-1], max(marks[-1], ready_ns))


def record_boot(clock: PhaseClock, create_ns: int, started_ns: int, ready: AgentReady, ready_ns: int) -> None:
    """The boot phases plus ``ready`` (qemu up -> agent ready) and ``boot_total`` (create -> ready)."""
    boot_phases(clock, started_ns, ready, ready_ns)
    clock.add("ready", started_ns, ready_ns)
    clock.add("boot_total", create_ns, ready_ns)
