"""Memory overhead of a guest, three ways, each its own metric.

- ``vm.qemu_pss_bytes`` / ``vm.qemu_uss_bytes``: PSS and USS of the qemu process from
  ``/proc/<pid>/smaps``, *excluding* the guest-RAM mapping. The guest RAM is the anonymous mapping
  whose size equals the configured memory (qemu allocates one RAMBlock; q35 only aliases it below
  and above 4 GiB), so what remains is what the hypervisor itself costs: device models, TCG's
  translation cache, libraries, heap. ``vm.guest_ram_rss_bytes`` is how much of the guest RAM the
  host has actually backed so far (guests touch RAM lazily).
- ``vm.guest_used_bytes``: MemTotal - MemAvailable as the guest kernel sees it (``/proc/meminfo``
  read by the agent), i.e. what the workload's environment uses from inside.
- ``vm.host_memavailable_delta_bytes``: host MemAvailable before the guest was created minus now.
  This is the all-in cost as the host sees it, but it also moves with anything else on the host,
  so it is only meaningful when sandboxes are measured one at a time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import SandboxError
from isobench.procs import cpu_seconds, split_stat

__all__ = [
    "QemuMemory",
    "guest_used_bytes",
    "host_memavailable_kib",
    "meminfo_kib",
    "parse_smaps",
    "qemu_process_stats",
    "reserve_host_memory",
]


@dataclass(frozen=True)
class QemuMemory:
    pss_bytes: int
    uss_bytes: int
    guest_ram_rss_bytes: int
    guest_ram_found: bool


def parse_smaps(text: str, guest_ram_bytes: int) -> QemuMemory:
    """PSS/USS of a qemu process excluding the mapping(s) that back guest RAM."""
    pss = uss = ram_rss = 0
    found = False
    in_ram = False
    for line in text.splitlines():
        first = line.split(" ", 1)[0]
        if "-" in first and not first.endswith(":"):
            # A mapping header: "start-end perms offset dev inode [path]".
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            size = end - start
            anonymous = len(parts) < 6 or parts[5] == ""
            # Some qemu versions pad the RAMBlock by up to 2 MiB for huge-page alignment.
            in_ram = anonymous and guest_ram_bytes <= size <= guest_ram_bytes + (4 << 20)
            found = found or in_ram
            continue
        key, _, rest = line.partition(":")
        if key not in ("Pss", "Private_Clean", "Private_Dirty", "Rss"):
            continue
        kib = int(rest.split()[0])
        if in_ram:
            if key == "Rss":
                ram_rss += kib * 1024
            continue
        if key == "Pss":
            pss += kib * 1024
        elif key in ("Private_Clean", "Private_Dirty"):
            uss += kib * 1024
    return QemuMemory(pss, uss, ram_rss, found)


def meminfo_kib(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            out[key] = int(words[0])
    return out


def qemu_process_stats(proc: Path, guest_ram_bytes: int) -> dict[str, float]:
    """The host's view of one qemu process (``proc`` is its /proc/<pid>): what the hypervisor costs
    without the guest RAM, the guest RAM backed so far, and CPU time. Missing files give no key."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        mem = parse_smaps((proc / "smaps").read_text(), guest_ram_bytes)
        out["vm.qemu_pss_bytes"] = float(mem.pss_bytes)
        out["vm.qemu_uss_bytes"] = float(mem.uss_bytes)
        out["vm.guest_ram_rss_bytes"] = float(mem.guest_ram_rss_bytes)
        out["memory_bytes"] = float(mem.pss_bytes + mem.guest_ram_rss_bytes)
    with contextlib.suppress(OSError):
        cpu = cpu_seconds(split_stat((proc / "stat").read_text()))
        if cpu is not None:
            out["cpu_seconds"] = cpu
    return out


def guest_used_bytes(meminfo_text: str) -> float | None:
    """MemTotal - MemAvailable from a guest's /proc/meminfo, or None when either is missing."""
    mi = meminfo_kib(meminfo_text)
    if "MemTotal" not in mi or "MemAvailable" not in mi:
        return None
    return float((mi["MemTotal"] - mi["MemAvailable"]) * 1024)


def host_memavailable_kib(proc_root: Path) -> int | None:
    """The host's MemAvailable in KiB, or None when /proc/meminfo cannot be read."""
    try:
        return meminfo_kib((proc_root / "meminfo").read_text()).get("MemAvailable")
    except OSError:
        return None


def reserve_host_memory(sandbox: str, memory_mib: int, proc_root: Path) -> int:
    """Refuse a guest the host cannot hold; return MemAvailable now in KiB (0 when unknown), the
    baseline of ``vm.host_memavailable_delta_bytes``."""
    avail = host_memavailable_kib(proc_root) or 0
    if avail and memory_mib * 1024 > avail:
        raise SandboxError(
            f"sandbox {sandbox}: the host has {avail // 1024} MiB available, cannot give"
            f" {memory_mib} MiB; lower memory_mib"
        )
    return avail
