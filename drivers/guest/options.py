"""The options of the guest both guest drivers boot (``vm`` through libvirt, ``qemu`` directly):
declared once, with the same meaning and defaults in both, and parsed into a frozen value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from isobench.drivers.guest.datadisk import DEFAULT_SIZE_MIB, MIN_SIZE_MIB
from isobench.drivers.guest.flavour import KernelFlavour
from isobench.drivers.options import DriverOptions, option

__all__ = ["DEFAULT_CMDLINE", "AccelOption", "GuestOptions"]

DEFAULT_CMDLINE = "console=ttyS0 quiet panic=-1 i8042.noaux i8042.nokbd"

AccelOption = Literal["auto", "kvm", "tcg"]


@dataclass(frozen=True)
class GuestOptions(DriverOptions):
    """The options every guest driver's dataclass starts with."""

    accel: AccelOption = "auto"
    #: The built image's name (``isobench image build``).
    image: str = "default"
    #: ``stock``: the image's Debian cloud kernel; ``micro``: the minimal kernel (drivers/guest/flavour.py).
    kernel: KernelFlavour = "stock"
    #: Create -> agent ready, seconds.
    boot_timeout: float = option(120.0, gt=0)
    #: How long destroy() waits for qemu to exit before it kills harder.
    shutdown_timeout: float = option(10.0, gt=0)
    cmdline: str = DEFAULT_CMDLINE
    #: None: qemu64 under TCG, the host's CPU under KVM (each driver spells that its own way).
    cpu_model: str | None = None
    data_disk_mib: int = option(DEFAULT_SIZE_MIB, ge=MIN_SIZE_MIB)

    def __post_init__(self) -> None:
        if self.cpu_model == "":
            object.__setattr__(self, "cpu_model", None)  # an empty string means the default too
