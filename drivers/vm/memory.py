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

from dataclasses import dataclass

__all__ = ["QemuMemory", "meminfo_kib", "parse_smaps"]


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
