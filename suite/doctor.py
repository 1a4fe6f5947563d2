"""``isobench doctor``: what this host can do, and for everything it cannot, why and what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from isobench import hostinfo
from isobench.drivers.base import DriverContext, all_drivers
from isobench.hostsys import HostProbe
from isobench.hostsys.cgroups import cgroup_mode
from isobench.hostsys.procstat import HIGH_STEAL, steal_over

Status = Literal["ok", "warn", "fail", "info"]

__all__ = ["Check", "diagnose"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


#: How long doctor loads the host to read its steal time (it warns above HIGH_STEAL, as reports do).
STEAL_WINDOW_S = 2.0


def spin_every_cpu(seconds: float) -> None:
    """Keep every CPU this process may use busy for ``seconds``: steal accrues only to a CPU that
    wants to run, so an idle host reads none however busy its hypervisor is."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in os.sched_getaffinity(0)]
    try:
        for p in procs:
            p.wait(timeout=seconds + 30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def steal_check(
    host: HostProbe, window: float = STEAL_WINDOW_S, load: Callable[[float], None] = spin_every_cpu
) -> Check:
    """How much CPU time the hypervisor under the host takes from it now, read while every CPU
    wants to run: a held-back host measures itself, not the sandboxes."""
    _, share = steal_over(lambda: load(window), host)
    if share is None:
        return Check("CPU steal", "info", "no reading (no steal field in /proc/stat)")
    text = f"{share:.0%} of the host's CPU time over {window:g}s of load went to its hypervisor's other work"
    if share > HIGH_STEAL:
        return Check(
            "CPU steal",
            "warn",
            f"{text}: figures measured now may be the host's; run later, or compare with care",
        )
    return Check("CPU steal", "ok", text)


def host_checks(host: HostProbe | None = None, *, steal: bool = True) -> list[Check]:
    host = host or HostProbe()
    checks: list[Check] = []
    mode = cgroup_mode(host)
    checks.append(
        Check(
            "cgroups",
            "ok" if mode != "none" else "fail",
            {
                "v1": "v1 controllers only",
                "hybrid": "hybrid: v1 controllers + a cgroup2 mount",
                "unified": "unified cgroup v2",
                "none": "no cgroup filesystem mounted",
            }[mode],
        )
    )
    overlay = host.has_filesystem("overlay")
    checks.append(
        Check(
            "overlayfs",
            "ok" if overlay else "warn",
            "overlay filesystem available"
            if overlay
            else "overlay not in /proc/filesystems; `modprobe overlay`",
        )
    )
    userns = host.read("/proc/sys/user/max_user_namespaces").strip()
    ok_userns = userns.isdigit() and int(userns) > 0
    checks.append(
        Check("user namespaces", "ok" if ok_userns else "warn", f"max_user_namespaces={userns or '?'}")
    )
    virt = hostinfo.virtualization(host)
    nesting = "this host is itself a guest (nested virtualization)" if virt["guest"] else "bare metal"
    checks.append(Check("nesting", "info", nesting))
    if not virt["dev_kvm"]:
        checks.append(Check("/dev/kvm", "warn", "missing: guests will use TCG (software emulation)"))
    else:
        mods = ", ".join(virt["kvm_modules"]) or "unknown module"
        extra = " (kvm-pvm: stock guest kernels fail on it)" if virt["kvm_pvm"] else ""
        checks.append(Check("/dev/kvm", "info", f"present, provided by {mods}{extra}"))
    if steal:
        checks.append(steal_check(host))
    for tool in ("fio", "stress-ng", "iperf3", "sysbench", "qemu-system-x86_64", "runc", "dockerd", "bwrap"):
        path = shutil.which(tool)
        checks.append(Check(f"tool {tool}", "ok" if path else "warn", path or "not installed"))
    return checks


def driver_checks(state_dir: Path, only: Collection[str] | None = None) -> list[Check]:
    checks: list[Check] = []
    #: the guest drivers share one accel probe: its verdict is said once, naming every driver
    kvm: dict[tuple[bool, str], tuple[str, list[str]]] = {}
    for name, cls in all_drivers().items():
        if only is not None and name not in only:
            continue
        ctx = DriverContext(
            state_dir=state_dir, work_dir=state_dir / "runs" / "doctor" / name, run_id="doctor"
        )
        driver = cls(ctx)
        try:
            avail = driver.availability()
        except Exception as err:
            checks.append(Check(f"driver {name}", "fail", f"availability check crashed: {err}"))
            continue
        detail = avail.reason if not avail.ok else cls.description
        checks.append(Check(f"driver {name}", "ok" if avail.ok else "fail", detail))
        for key, value in avail.details.items():
            checks.append(Check(f"  {name}.{key}", "info", str(value)))
        if "kvm_usable" in avail.details:
            # keyed on the bare reason: the described one carries the verdict's age, which may
            # tick between two drivers' checks; the first driver's description is shown
            verdict = (bool(avail.details["kvm_usable"]), str(avail.details.get("kvm_reason", "")))
            described = str(avail.details.get("kvm_probe", ""))
            kvm.setdefault(verdict, (described, []))[1].append(name)
    checks += [_kvm_verdict(usable, described, names) for (usable, _), (described, names) in kvm.items()]
    return checks


def _kvm_verdict(usable: bool, reason: str, drivers: Sequence[str]) -> Check:
    """The answer users come to doctor for: will guests get KVM, and if not, why."""
    guests = f"guests ({', '.join(drivers)})"
    if usable:
        return Check("KVM", "ok", f"usable ({reason}); {guests} use accel=kvm")
    return Check("KVM", "warn", f"not usable: {reason}; {guests} use accel=tcg (software emulation)")


def diagnose(state_dir: Path) -> list[Check]:
    return host_checks() + driver_checks(state_dir)
