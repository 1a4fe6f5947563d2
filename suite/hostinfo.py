"""Facts about the host recorded with every run: what a reader needs to trust or discount a figure.

Everything is read through a :class:`~isobench.hostsys.HostProbe` (the real host by default) so tests
can use a fake tree.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from isobench.hostsys import HostProbe
from isobench.hostsys.cgroups import cgroup_mode
from isobench.procs import tool_version

log = logging.getLogger(__name__)

__all__ = ["collect", "tool_versions", "virtualization"]


def virtualization(host: HostProbe) -> dict[str, Any]:
    """Are we a guest ourselves (nesting), and what does /dev/kvm claim to be."""
    cpuinfo = host.read("/proc/cpuinfo")
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    dmi = {k: host.read(f"/sys/class/dmi/id/{k}").strip() or None for k in ("sys_vendor", "product_name")}
    # /sys/module lists built-in modules too; /proc/modules only loadable ones (and may not exist).
    sys_module = host.sys / "module"
    kvm_modules = sorted(p.name for p in sys_module.glob("kvm*")) if sys_module.is_dir() else []
    return {
        "guest": "hypervisor" in flags,
        "cpu_virt_ext": "vmx" in flags or "svm" in flags,
        "dev_kvm": host.path("/dev/kvm").exists(),
        "kvm_modules": kvm_modules,
        "kvm_pvm": "kvm_pvm" in kvm_modules,
        **dmi,
    }


#: What a results file records the version of, and the program asked (``<program> --version``).
_VERSIONED: Mapping[str, str] = {
    "qemu": "qemu-system-x86_64",
    "libvirtd": "libvirtd",
    "runc": "runc",
    "dockerd": "dockerd",
    "bwrap": "bwrap",
    "fio": "fio",
    "stress-ng": "stress-ng",
    "iperf3": "iperf3",
    "sysbench": "sysbench",
}


def tool_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {name: tool_version(binary) or None for name, binary in _VERSIONED.items()}
    try:
        import libvirt

        v = libvirt.getVersion()
        out["libvirt-python"] = f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"
    except Exception:
        out["libvirt-python"] = None
    return out


def git_commit(repo: Path) -> str | None:
    try:
        p = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return p.stdout.strip() + ("-dirty" if dirty else "")


def _cpu_model(cpuinfo: str) -> str | None:
    m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return m.group(1).strip() if m else None


def _meminfo_kib(meminfo: str, key: str) -> int | None:
    m = re.search(rf"^{key}:\s+(\d+) kB", meminfo, re.M)
    return int(m.group(1)) if m else None


def collect(host: HostProbe | None = None, *, versions: bool = True) -> dict[str, Any]:
    host = host or HostProbe()
    cpuinfo = host.read("/proc/cpuinfo")
    meminfo = host.read("/proc/meminfo")
    governor = host.read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    from isobench import __version__

    info: dict[str, Any] = {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "arch": platform.machine(),
        "cpu_model": _cpu_model(cpuinfo),
        "cpus": os.cpu_count(),
        "memory_bytes": (_meminfo_kib(meminfo, "MemTotal") or 0) * 1024,
        "cgroup_mode": cgroup_mode(host),
        "cpu_governor": governor.strip() or None,
        "virtualization": virtualization(host),
        "python": platform.python_version(),
        "isobench": __version__,
        "isobench_commit": git_commit(Path(__file__).resolve().parent.parent),
    }
    if versions:
        info["versions"] = tool_versions()
    return info
