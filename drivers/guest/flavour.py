"""Which kernel a guest boots: the image's ``stock`` Debian cloud kernel (compressed bzImage, its
virtio drivers as modules loaded by the initramfs), or the ``micro`` kernel (vm-images/kernel.py:
tinyconfig plus what the agent and the workloads need, everything built in, the uncompressed
``vmlinux`` entered through PVH, an initramfs holding only a static /init: no shell, no modules). Both guest drivers take the choice
as ``kernel = "stock" | "micro"``; every sample's metadata says which (``kernel_flavour``).

What the micro kernel cannot do is stated here once, so a workload that meets it fails with a reason
and the metadata carries it, instead of a figure silently missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from isobench.errors import UsageError
from isobench.images import Image
from isobench.images.kernel import config_hz, find_micro_kernel, micro_initrd

__all__ = [
    "APIC_BUS_HZ",
    "MICRO_CMDLINE",
    "MICRO_LACKS",
    "GuestBoot",
    "KernelFlavour",
    "guest_boot",
    "micro_cmdline",
]

KernelFlavour = Literal["stock", "micro"]

#: What a tinyconfig-based kernel built for start-up does not have (vm-images/micro-kernel.config
#: says why each is left out). Recorded in the metadata of every micro-guest sample.
MICRO_LACKS = (
    "loadable modules (/proc/modules)",
    "cgroups (no /proc/cgroups, no /sys/fs/cgroup in the guest)",
    "namespaces",
    "perf events",
    "IPv6",
    "transparent hugepages, KSM, hugetlbfs, swap",
    "/proc/kallsyms, /proc/kcore, /proc/config.gz, /proc/keys, /proc/sched_debug, /proc/pressure,"
    " /proc/sysrq-trigger",
)

#: Kernel arguments only the micro guest gets, each skipping a boot-time cost that is large under
#: TCG and buys a VM nothing: ``noreplace-smp``: a 1-vCPU kernel otherwise rewrites every lock prefix
#: in its text to the UP form, one text_poke (two page-table switches, each a TCG TLB flush) per
#: site; ``no_timer_check``: the IO-APIC timer check spins 40e9/HZ TSC cycles (~65 ms here).
MICRO_CMDLINE = "noreplace-smp no_timer_check"

#: The local APIC timer's input clock in qemu (TCG's emulated APIC) and in KVM's in-kernel one: both
#: count at 1 GHz (``apic=verbose`` on this host: "host bus clock speed is 1000.0000 MHz",
#: "calibration result: 4000000" at HZ=250).
APIC_BUS_HZ = 1_000_000_000


def micro_cmdline(hz: int) -> str:
    """:data:`MICRO_CMDLINE` plus ``lapic_timer_period`` (APIC bus clocks per tick, what the
    kernel's calibration would measure): the micro kernel's patch (vm-images/micro-kernel.patch)
    reads it and skips the calibration, which waits HZ/10 ticks, 100 ms of every boot. A build from
    before the patch ignores it (and hands it to /init's environment, which the agent does not get)."""
    return f"{MICRO_CMDLINE} lapic_timer_period={APIC_BUS_HZ // hz}"


@dataclass(frozen=True)
class GuestBoot:
    """The kernel and initramfs a guest is booted from, and what to record about them."""

    flavour: KernelFlavour
    kernel: Path
    initrd: Path
    #: The build the kernel comes from: the image's digest (stock) or the micro kernel's.
    kernel_build: str
    #: Added to the driver's kernel command line (GuestConfig.for_spec).
    cmdline: str = ""

    def metadata(self) -> dict[str, object]:
        md: dict[str, object] = {"kernel_flavour": self.flavour, "kernel_build": self.kernel_build}
        if self.flavour == "micro":
            md["kernel_boot"] = "vmlinux via PVH, initramfs with a static /init (no shell, no modules)"
            md["kernel_lacks"] = list(MICRO_LACKS)
            md["kernel_args"] = self.cmdline
        else:
            md["kernel_boot"] = "bzImage, virtio modules from the initramfs"
        return md


def guest_boot(state_dir: Path, img: Image, flavour: KernelFlavour) -> GuestBoot:
    """The boot files of ``flavour`` for ``img``; the micro initramfs is written on first use."""
    if flavour == "stock":
        return GuestBoot("stock", img.kernel, img.initrd, img.digest)
    kernel = find_micro_kernel(state_dir)
    with kernel.vmlinux.open("rb") as f:
        if f.read(4) != b"\x7fELF":
            raise UsageError(
                f"{kernel.vmlinux} is not an ELF kernel; rebuild it with `isobench image build --force`"
            )
    try:
        hz = config_hz(kernel.config.read_text())
    except OSError as err:
        raise UsageError(
            f"cannot read {kernel.config} ({err.strerror}); rebuild it with `isobench image build --force`"
        ) from err
    return GuestBoot("micro", kernel.vmlinux, micro_initrd(kernel), kernel.digest, micro_cmdline(hz))
