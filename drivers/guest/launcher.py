"""What both launchers do alike around their own part: which image and kernel a guest boots,
refused before anything is made when broken, and what every sample records about the guest.

``vm`` (libvirt) and ``qemu`` (direct) differ in how a guest is started and stopped; the image
they boot, the checks before a create and the figures' guest metadata are the same, so they are
written here once.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from isobench.drivers.base import SandboxSpec
from isobench.drivers.guest.accel import AccelChoice
from isobench.drivers.guest.datadisk import VOLUME_DESCRIPTION, check_volume
from isobench.drivers.guest.flavour import GuestBoot, guest_boot
from isobench.drivers.guest.image import OVERLAY_DESCRIPTION, check_image, guest_image
from isobench.drivers.guest.options import GuestOptions
from isobench.errors import UsageError
from isobench.images import Image

__all__ = ["checked_guest", "guest_metadata"]


def checked_guest(
    state_dir: Path, opts: GuestOptions, spec: SandboxSpec | None = None
) -> tuple[Image, GuestBoot]:
    """The image a guest boots (the spec's, else the configured one) and the kernel it boots from
    it; UsageError for a broken image, a kernel not built, or a spec's volume a guest cannot take."""
    img = guest_image(state_dir, opts.image, spec.image if spec is not None else None)
    check_image(img)
    boot = guest_boot(state_dir, img, opts.kernel)
    if spec is not None and spec.volume is not None:
        check_volume(spec.volume, layers=spec.layers)
    return img, boot


def guest_metadata(accel: AccelChoice, state_dir: Path, opts: GuestOptions) -> dict[str, Any]:
    """The metadata both guest drivers give every sample: the accelerator and why, the root disk
    and volume, and the image and kernel (as far as they are built); a driver adds its launcher's."""
    md = accel.metadata()
    md["disk"] = OVERLAY_DESCRIPTION
    md["volume"] = VOLUME_DESCRIPTION
    with contextlib.suppress(UsageError):
        img = guest_image(state_dir, opts.image)
        md["image"] = img.digest
        md.update(guest_boot(state_dir, img, opts.kernel).metadata())
    md.setdefault("kernel_flavour", opts.kernel)
    return md
