"""The qemu driver and the guest core work where libvirt-python is absent: proved in a fresh
interpreter whose import system refuses ``libvirt``."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

BLOCK_LIBVIRT = """
import importlib.abc, json, sys

class NoLibvirt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "libvirt" or name.startswith(("libvirt.", "libvirtmod")):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, NoLibvirt())
"""

PROBE = """
import pkgutil
import isobench.drivers.guest as guest
import isobench.drivers.qemu as qemu
from isobench.drivers.base import all_drivers

core = sorted(m.name for m in pkgutil.iter_modules(guest.__path__))
for name in core:
    __import__(f"isobench.drivers.guest.{name}")
try:
    import libvirt  # noqa: F401
    blocked = False
except ModuleNotFoundError:
    blocked = True
drivers = all_drivers()
print(json.dumps({
    "blocked": blocked,
    "core": core,
    "qemu_driver": qemu.DRIVER.name,
    "registry": sorted(drivers),
    "loaded": sorted(m for m in sys.modules if m.startswith(("libvirt", "isobench.drivers.vm"))),
}))
"""


def _run_without_libvirt(code: str) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-c", BLOCK_LIBVIRT + code], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def test_qemu_driver_and_guest_core_import_without_libvirt() -> None:
    got = _run_without_libvirt(PROBE)
    assert got["blocked"] is True  # the finder really hides libvirt
    assert {"accel", "agent", "datadisk", "image", "memory", "options", "phases", "sandbox"} <= set(
        got["core"]
    )
    assert got["qemu_driver"] == "qemu"
    # The registry still offers qemu (and every other driver but vm, which needs libvirt) ...
    assert "qemu" in got["registry"] and "vm" not in got["registry"]
    # ... and nothing of libvirt or of the vm driver stayed loaded.
    assert got["loaded"] == []
