"""Deciding between KVM and TCG by booting, not by guessing.

``/dev/kvm`` existing proves little: on kvm-pvm hosts it opens fine and every guest then dies with
"KVM internal error: emulation failure". So the decision is a PROBE BOOT of the host's kernel under
``qemu-system-x86_64 -accel kvm`` (no libvirt: both guest drivers share it, and the ``qemu`` driver
must work where libvirt is absent) with a deadline, cached per host + host kernel + qemu in
``<state_dir>/guest/``. A probe that only ran out of time is no verdict and is cached briefly
(probecache.py). ``isobench doctor`` shows the frozen :class:`AccelProbe`, with a cached
negative's age, through the drivers' availability details.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from isobench.drivers.guest import probecache
from isobench.drivers.guest.probecache import Outcome
from isobench.drivers.guest.process import kill_qemu, one_line, spawn_qemu
from isobench.errors import DriverUnavailable, SandboxError, UsageError
from isobench.hostsys import HostProbe

log = logging.getLogger(__name__)

__all__ = [
    "Accel",
    "AccelChoice",
    "AccelProbe",
    "choose_accel",
    "host_tsc_khz",
    "probe_accel",
    "qemu_probe_boot",
    "tcg_tsc_args",
]

#: The accelerator a guest runs under: the one definition both guest drivers use.
Accel = Literal["kvm", "tcg"]

#: deadline seconds -> (ok, failed or timeout, reason)
BootProbe = Callable[[float], tuple[Outcome, str]]

#: The probe guest's ``-name``: the qemu driver's gc() finds a leftover by its ``isobench-qemu-``.
PROBE_NAME = "isobench-qemu-accelprobe"
#: how long qemu gets to finish writing a KVM internal error once its first line is in the log
ERROR_GRACE_S = 0.5


@dataclass(frozen=True)
class AccelProbe:
    usable: bool  # KVM really runs guests here
    accel: Accel  # what the guest drivers use under accel=auto
    reason: str
    cached: bool = False
    checked_at: float = 0.0
    #: ok, failed (a verdict) or timeout (none: cached briefly, then probed again)
    outcome: Outcome = "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def described(self, now: float | None = None) -> str:
        """The reason, and for a negative answer its age and when it is asked again."""
        note = probecache.describe(self.outcome, self.checked_at, cached=self.cached, now=now)
        return f"{self.reason} ({note})" if note else self.reason


def _cache_path(state_dir: Path, proc: Path, binary: str) -> Path:
    try:
        kernel = (proc / "sys/kernel/osrelease").read_text().strip()
    except OSError:
        kernel = platform.release()
    host = platform.node() or "host"
    qemu = shutil.which(binary) or "none"
    try:
        qemu_id = f"{int(os.stat(qemu).st_mtime)}"
    except OSError:
        qemu_id = "0"
    return state_dir / "guest" / f"accel-{host}-{kernel}-{qemu_id}.json"


def probe_accel(
    state_dir: Path,
    *,
    host: HostProbe | None = None,
    binary: str = "qemu-system-x86_64",
    boot: BootProbe | None = None,
    refresh: bool = False,
    deadline_s: float = 10.0,
) -> AccelProbe:
    """Whether KVM works on ``host`` (/dev/kvm, /sys/module and /proc under its root); cached, so the
    probe boot runs once per host, kernel and qemu."""
    host = host or HostProbe()
    cache = _cache_path(state_dir, host.proc, binary)
    hit = None if refresh else probecache.load(cache)
    if hit is not None:
        try:
            f = hit.fields
            return AccelProbe(
                bool(f["usable"]), f["accel"], str(f["reason"]), True, hit.checked_at, hit.outcome
            )
        except KeyError:
            log.warning("ignoring incomplete accel cache %s", cache)

    def qemu_boot(deadline: float) -> tuple[Outcome, str]:
        return qemu_probe_boot(deadline, binary=binary)

    result = _probe(host.path("/dev/kvm"), host.sys, boot or qemu_boot, deadline_s)
    fields = {"usable": result.usable, "accel": result.accel, "reason": result.reason}
    probecache.save(cache, fields, outcome=result.outcome, checked_at=result.checked_at)
    return result


def _probe(dev_kvm: Path, sys_root: Path, boot: BootProbe, deadline_s: float) -> AccelProbe:
    now = time.time()
    if not dev_kvm.exists():
        return AccelProbe(
            False,
            "tcg",
            f"{dev_kvm} is missing (no KVM module or not exposed here)",
            checked_at=now,
            outcome="failed",
        )
    try:
        fd = os.open(dev_kvm, os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
    except PermissionError:
        return AccelProbe(
            False, "tcg", f"permission denied opening {dev_kvm}", checked_at=now, outcome="failed"
        )
    except OSError as err:
        return AccelProbe(
            False, "tcg", f"cannot open {dev_kvm}: {err.strerror}", checked_at=now, outcome="failed"
        )
    pvm = (sys_root / "module/kvm_pvm").exists()
    outcome, why = boot(deadline_s)
    if outcome == "ok":
        return AccelProbe(
            True, "kvm", f"a KVM probe guest booted{' (kvm-pvm)' if pvm else ''}", checked_at=now
        )
    prefix = "kvm-pvm: " if pvm else ""
    return AccelProbe(False, "tcg", f"{prefix}KVM probe boot failed: {why}", checked_at=now, outcome=outcome)


def probe_argv(binary: str, kernel: Path) -> list[str]:
    """A kernel and a serial port under KVM, nothing else. The CPU is the host's minus
    arch-capabilities: with it qemu aborts on MSR 0x10a on some hosts before the guest runs, which
    would hide the real answer (the guest drivers drop it too)."""
    return [
        binary,
        "-name", f"{PROBE_NAME}-{os.getpid()}",
        "-machine", "q35",
        "-accel", "kvm",
        "-cpu", "host,-arch-capabilities",
        "-m", "256",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(kernel),
        "-append", "console=ttyS0 panic=-1",
        "-serial", "file:console.log",
    ]  # fmt: skip


def qemu_probe_boot(
    deadline_s: float, *, binary: str = "qemu-system-x86_64", kernel: Path | None = None
) -> tuple[Outcome, str]:
    """Boot ``kernel`` (the host's cloud kernel) under KVM without a root disk; wait for it to print.

    ``ok`` is the kernel banner on the serial console; ``failed`` is qemu reporting a KVM internal
    error (kvm-pvm's "emulation failure": qemu then pauses the guest and stays up, so the log is
    read while it runs) or qemu exiting; ``timeout`` is silence until the deadline, which a loaded
    host can cause too, so it decides this run only.
    """
    if kernel is None:
        from isobench.images.recipe import host_kernel

        try:
            kernel, _ = host_kernel()
        except UsageError as err:
            return "failed", str(err)
    with tempfile.TemporaryDirectory(prefix="isobench-accel-probe-") as tmp:
        work = Path(tmp)
        console, qlog = work / "console.log", work / "qemu.log"
        try:
            proc = spawn_qemu(probe_argv(binary, kernel), work, qlog)
        except SandboxError as err:
            return "failed", str(err)
        try:
            end = time.monotonic() + deadline_s
            # qemu writes a KVM internal error line by line ("KVM internal error. Suberror: 1",
            # then "emulation failure", then registers): once its first line is seen, give the
            # rest a moment so the verdict does not depend on where the read fell
            error_seen: float | None = None
            while True:
                if "Linux version" in _read(console):
                    return "ok", "kernel banner seen"
                said = _read(qlog)
                if "KVM internal error" in said or "emulation failure" in said:
                    if error_seen is None:
                        error_seen = time.monotonic()
                    done = proc.poll() is not None or time.monotonic() - error_seen >= ERROR_GRACE_S
                    if "emulation failure" in said or done:
                        return "failed", _kvm_error(_read(qlog) if done else said)
                    time.sleep(0.02)
                    continue
                if proc.poll() is not None:
                    said = _read(qlog)  # all it wrote before it exited
                    return (
                        "failed",
                        f"qemu exited with {proc.returncode} before the kernel printed: {one_line(said[-300:])}",
                    )
                if time.monotonic() >= end:
                    return "timeout", f"no kernel output within {deadline_s:g}s"
                time.sleep(0.05)
        finally:
            kill_qemu(proc)


def _kvm_error(said: str) -> str:
    if "emulation failure" in said:
        return "KVM internal error: emulation failure"
    at = said.find("KVM internal error")
    return one_line(said[max(at, 0) :])


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-4000:]
    except OSError:
        return ""


def choose_accel(
    driver: str, option: str, probe: Callable[[], AccelProbe]
) -> tuple[Accel, AccelProbe | None]:
    """The accelerator under ``[drivers.<driver>] accel = option`` (auto, kvm or tcg), and the probe
    it was decided by (None when ``tcg`` was asked for: no probe runs)."""
    if option == "tcg":
        return "tcg", None
    result = probe()
    if result.usable:
        return "kvm", result
    if option == "kvm":
        raise DriverUnavailable(
            f"KVM was requested but is unusable here: {result.reason}; use accel=auto or tcg"
        )
    # info, not warning: the commands say it where users look (the run's TCG warning, doctor's
    # KVM row, the worker's banner), once for all guest drivers rather than once per driver
    log.info("%s driver: KVM unusable (%s); guests run under TCG emulation (slow)", driver, result.reason)
    return "tcg", result


class AccelChoice:
    """One driver's accelerator: decided on first use (:func:`choose_accel`), then fixed, with the
    facts it was decided by for ``isobench doctor`` and every sample's metadata."""

    def __init__(self, driver: str, option: str, probe: Callable[[], AccelProbe]) -> None:
        self._driver = driver
        self._option = option
        self._run_probe = probe
        self._accel: Accel | None = None
        self.probe: AccelProbe | None = None

    def __call__(self) -> Accel:
        if self._accel is None:
            self._accel, self.probe = choose_accel(self._driver, self._option, self._run_probe)
        return self._accel

    def details(self) -> dict[str, Any]:
        """For a driver's availability: the accelerator and the probe's verdict when one ran."""
        out: dict[str, Any] = {"accel": self()}
        if self.probe is not None:
            out["kvm_usable"] = self.probe.usable
            out["kvm_probe"] = self.probe.described()
            out["kvm_reason"] = self.probe.reason  # without the age: the same verdict reads the same
        return out

    def metadata(self) -> dict[str, Any]:
        """For every sample: a guest, its accelerator and why."""
        out: dict[str, Any] = {"isolation": "vm", "accel": self()}
        if self.probe is not None:
            out["accel_reason"] = self.probe.reason
        return out


def host_tsc_khz(proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys")) -> int | None:
    """The host's TSC rate in kHz, when the host kernel knows it exactly (pure over the two roots).

    Under TCG the guest's TSC is the host's (qemu's rdtsc reads the host counter), so this is the
    ``tsc_early_khz`` a TCG guest needs, without a probe guest having to calibrate it first (which
    fails on a loaded host, the reason it is needed). Trusted only with ``constant_tsc`` and
    ``tsc_known_freq`` and no cpufreq driver: "cpu MHz" is then the kernel's tsc_khz.
    """
    try:
        text = (proc_root / "cpuinfo").read_text()
    except OSError:
        return None
    flags = re.search(r"^flags\s*:(.*)$", text, re.M)
    mhz = re.search(r"^cpu MHz\s*:\s*(\d+)\.(\d+)", text, re.M)
    if flags is None or mhz is None or (sys_root / "devices/system/cpu/cpu0/cpufreq").exists():
        return None
    if not {"constant_tsc", "tsc_known_freq"} <= set(flags.group(1).split()):
        return None
    return int(mhz.group(1)) * 1000 + int(mhz.group(2).ljust(3, "0")[:3])


def tcg_tsc_args(khz: int) -> str:
    """Kernel arguments for a TCG guest on a machine without HPET or PM timer (microvm): its TSC is
    the host's constant TSC, so give its rate (no calibration against a PIT that a loaded host
    starves) and trust it (``tsc=reliable``: otherwise the clocksource watchdog, whose only
    reference there is the jiffies count, sees a loaded host's late ticks as TSC skew, falls back to
    jiffies, and the guest's clock runs slow: iperf3 in the guest measured 1.72 s of 2)."""
    return f"tsc_early_khz={khz} tsc=reliable"
