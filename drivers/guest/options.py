"""The options of the guest both guest drivers boot (``vm`` through libvirt, ``qemu`` directly):
declared once, with the same meaning and defaults in both, and parsed into a frozen value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from isobench.drivers.base import OptionTypes
from isobench.drivers.guest.datadisk import DEFAULT_SIZE_MIB, MIN_SIZE_MIB
from isobench.errors import UsageError

__all__ = ["DEFAULT_CMDLINE", "GUEST_OPTIONS", "AccelOption", "GuestOptions"]

DEFAULT_CMDLINE = "console=ttyS0 quiet panic=-1 i8042.noaux i8042.nokbd"

AccelOption = Literal["auto", "kvm", "tcg"]

#: Every guest driver's ``option_types`` starts with these.
GUEST_OPTIONS: OptionTypes = {
    "accel": (str,),
    "image": (str,),
    "boot_timeout": (int, float),
    "shutdown_timeout": (int, float),
    "cmdline": (str,),
    "cpu_model": (str,),
    "data_disk_mib": (int,),
}


@dataclass(frozen=True)
class GuestOptions:
    accel: AccelOption = "auto"
    #: The built image's name (``isobench image build``).
    image: str = "default"
    #: Create -> agent ready, seconds.
    boot_timeout: float = 120.0
    #: How long destroy() waits for qemu to exit before it kills harder.
    shutdown_timeout: float = 10.0
    cmdline: str = DEFAULT_CMDLINE
    #: None: qemu64 under TCG, the host's CPU under KVM (each driver spells that its own way).
    cpu_model: str | None = None
    data_disk_mib: int = DEFAULT_SIZE_MIB

    @classmethod
    def parse(cls, driver: str, opts: Mapping[str, Any]) -> GuestOptions:
        """The guest options of a ``[drivers.<driver>]`` table (types already checked by the
        registry); values out of range are one UsageError naming the option."""
        accel = str(opts.get("accel", "auto"))
        if accel not in ("auto", "kvm", "tcg"):
            raise UsageError(f"drivers.{driver}.accel must be auto, kvm or tcg, not {accel!r}")
        out = cls(
            accel=cast(AccelOption, accel),
            image=str(opts.get("image", cls.image)),
            boot_timeout=float(opts.get("boot_timeout", cls.boot_timeout)),
            shutdown_timeout=float(opts.get("shutdown_timeout", cls.shutdown_timeout)),
            cmdline=str(opts.get("cmdline", cls.cmdline)),
            cpu_model=opts.get("cpu_model") or None,
            data_disk_mib=int(opts.get("data_disk_mib", cls.data_disk_mib)),
        )
        for key in ("boot_timeout", "shutdown_timeout"):
            if getattr(out, key) <= 0:
                raise UsageError(f"drivers.{driver}.{key} must be > 0, got {getattr(out, key)}")
        if out.data_disk_mib < MIN_SIZE_MIB:
            raise UsageError(
                f"drivers.{driver}.data_disk_mib must be >= {MIN_SIZE_MIB}, got {out.data_disk_mib}"
            )
        return out
