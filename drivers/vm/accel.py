"""Deciding between KVM and TCG by booting, not by guessing.

``/dev/kvm`` existing proves little: on kvm-pvm hosts it opens fine and every guest then dies with
"KVM internal error: emulation failure". So the decision is a PROBE BOOT of a tiny KVM domain with
a deadline, cached per host + host kernel + qemu in ``<state_dir>/vm/``. ``isobench doctor`` calls
:func:`probe_accel` and shows the frozen :class:`AccelProbe` it returns.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

__all__ = ["AccelProbe", "libvirt_probe_boot", "probe_accel"]

Accel = Literal["kvm", "tcg"]

#: (uri, state_dir, deadline seconds) -> (kvm booted?, reason)
BootProbe = Callable[[str, Path, float], tuple[bool, str]]


@dataclass(frozen=True)
class AccelProbe:
    usable: bool  # KVM really runs guests here
    accel: Accel  # what the vm driver will use under accel=auto
    reason: str
    cached: bool = False
    checked_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cache_path(state_dir: Path, proc: Path) -> Path:
    try:
        kernel = (proc / "sys/kernel/osrelease").read_text().strip()
    except OSError:
        kernel = platform.release()
    host = platform.node() or "host"
    qemu = shutil.which("qemu-system-x86_64") or "none"
    try:
        qemu_id = f"{int(os.stat(qemu).st_mtime)}"
    except OSError:
        qemu_id = "0"
    return state_dir / "vm" / f"accel-{host}-{kernel}-{qemu_id}.json"


def probe_accel(
    state_dir: Path,
    uri: str = "qemu:///system",
    *,
    dev_kvm: Path = Path("/dev/kvm"),
    sys_root: Path = Path("/sys"),
    proc: Path = Path("/proc"),
    boot: BootProbe | None = None,
    refresh: bool = False,
    deadline_s: float = 10.0,
) -> AccelProbe:
    """Whether KVM works here; cached, so the probe boot runs once per host, kernel and qemu."""
    cache = _cache_path(state_dir, proc)
    if not refresh and cache.exists():
        try:
            d = json.loads(cache.read_text())
            return AccelProbe(d["usable"], d["accel"], d["reason"], cached=True, checked_at=d["checked_at"])
        except (OSError, ValueError, KeyError):
            log.warning("ignoring unreadable accel cache %s", cache)
    result = _probe(uri, state_dir, dev_kvm, sys_root, boot or libvirt_probe_boot, deadline_s)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result.to_dict()))
        tmp.rename(cache)
    except OSError as err:
        log.warning("cannot cache the accel probe in %s: %s", cache, err)
    return result


def _probe(
    uri: str, state_dir: Path, dev_kvm: Path, sys_root: Path, boot: BootProbe, deadline_s: float
) -> AccelProbe:
    now = time.time()
    if not dev_kvm.exists():
        return AccelProbe(
            False, "tcg", f"{dev_kvm} is missing (no KVM module or not exposed here)", checked_at=now
        )
    try:
        fd = os.open(dev_kvm, os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
    except PermissionError:
        return AccelProbe(False, "tcg", f"permission denied opening {dev_kvm}", checked_at=now)
    except OSError as err:
        return AccelProbe(False, "tcg", f"cannot open {dev_kvm}: {err.strerror}", checked_at=now)
    pvm = (sys_root / "module/kvm_pvm").exists()
    ok, why = boot(uri, state_dir, deadline_s)
    if ok:
        return AccelProbe(
            True, "kvm", f"a KVM probe guest booted{' (kvm-pvm)' if pvm else ''}", checked_at=now
        )
    prefix = "kvm-pvm: " if pvm else ""
    return AccelProbe(False, "tcg", f"{prefix}KVM probe boot failed: {why}", checked_at=now)


def libvirt_probe_boot(uri: str, state_dir: Path, deadline_s: float) -> tuple[bool, str]:
    """Boot the host's cloud kernel under type='kvm' without a root disk and wait for it to print.

    Success is the kernel banner on the serial console; failure is the domain pausing or dying
    (kvm-pvm's "emulation failure"), libvirt refusing to start it, or silence until the deadline.
    """
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions

    from isobench.drivers.vm.domain import probe_domain_xml
    from isobench.images.recipe import host_kernel

    kernel, _ = host_kernel()
    name = f"isobench-probe-{os.getpid()}"
    work = state_dir / "vm-runs" / name
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    console = work / "console.log"
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as err:
        shutil.rmtree(work, ignore_errors=True)
        return False, f"cannot connect to {uri}: {err.get_error_message()}"
    dom = None
    try:
        dom = conn.defineXML(probe_domain_xml(name, kernel, console))
        try:
            dom.create()
        except libvirt.libvirtError as err:
            return False, f"libvirt could not start a KVM guest: {_one_line(err.get_error_message())}"
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            text = console.read_text(errors="replace") if console.exists() else ""
            if "Linux version" in text:
                return True, "kernel banner seen"
            state, _ = dom.state()
            if state != libvirt.VIR_DOMAIN_RUNNING:
                qlog = _qemu_log_tail(name)
                if "emulation failure" in qlog:
                    return False, "KVM internal error: emulation failure"
                return (
                    False,
                    f"guest stopped (state {state}) before the kernel printed: {_one_line(qlog[-300:])}",
                )
            time.sleep(0.1)
        qlog = _qemu_log_tail(name)
        if "emulation failure" in qlog:
            return False, "KVM internal error: emulation failure"
        return False, f"no kernel output within {deadline_s:.0f}s"
    finally:
        if dom is not None:
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError as err:
                log.warning("removing probe domain %s failed: %s", name, err)
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
        (Path("/var/log/libvirt/qemu") / f"{name}.log").unlink(missing_ok=True)


def _one_line(msg: str) -> str:
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    return " / ".join(lines)[:300]


def _qemu_log_tail(name: str, log_dir: Path = Path("/var/log/libvirt/qemu")) -> str:
    try:
        return (log_dir / f"{name}.log").read_text(errors="replace")[-4000:]
    except OSError:
        return ""
