"""Which machine type the qemu driver boots: ``microvm`` when this qemu has it *and* the image's
guest really boots on it (probe boots, cached per host/qemu/image in ``<state_dir>/qemu/``), else
``q35``.

Only a probe that failed for a reason (qemu exited, the guest printed no TSC rate) makes q35 the
lasting answer; probe guests that merely were not ready in time (a loaded host) decide this run
and are probed again later (see drivers/guest/probecache.py): one slow probe once cost every later
run ~0.6 s a boot on q35.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from isobench.drivers.base import Sandbox, SandboxSpec
from isobench.drivers.guest import probecache
from isobench.drivers.guest.accel import Accel
from isobench.drivers.guest.boot import BootTimeout
from isobench.drivers.guest.probecache import Outcome
from isobench.drivers.qemu.command import Machine
from isobench.errors import CellTimeout, SandboxError, UsageError

log = logging.getLogger(__name__)

__all__ = [
    "MachineChoice",
    "MicrovmProbe",
    "load_choice",
    "save_choice",
    "tsc_khz_from_dmesg",
]


@dataclass(frozen=True)
class MachineChoice:
    machine: Machine
    reason: str
    #: microvm under TCG: the guest TSC rate given via ``tsc_early_khz=`` (see tsc_khz_from_dmesg).
    tsc_khz: int | None = None
    cached: bool = False
    #: ok, failed (a verdict) or timeout (no verdict: probed again after probecache.TIMEOUT_TTL_S)
    outcome: Outcome = "ok"
    checked_at: float = 0.0
    #: The cache file this answer is (or will be) kept in, for doctor's "delete it to re-probe".
    source: Path | None = None

    def described(self, now: float | None = None) -> str:
        """The reason, and for a probed q35 its age and when microvm is tried again."""
        note = probecache.describe(
            self.outcome, self.checked_at, cached=self.cached, path=self.source, now=now
        )
        return f"{self.reason} ({note})" if note else self.reason


_TSC_LINE_DETECTED = re.compile(r"tsc: Detected (\d+)\.(\d+) MHz processor")


def tsc_khz_from_dmesg(text: str) -> int | None:
    """The guest kernel's TSC rate in kHz, preferring the refined calibration (pure, tested).

    Why it matters: microvm has no HPET and no ACPI PM timer. Under TCG the kernel calibrates the
    TSC against the PIT, which fails when the host is busy; with no other reference the TSC is then
    marked unstable and the guest hangs early in boot (about one boot in five here). Passing the
    rate as ``tsc_early_khz=`` skips that calibration. Under TCG the guest TSC is the host's.
    """
    refined = re.search(r"tsc: Refined TSC clocksource calibration: (\d+)\.(\d+) MHz", text)
    m = refined or _TSC_LINE_DETECTED.search(text)
    if m is None:
        return None
    return int(m.group(1)) * 1000 + int(m.group(2).ljust(3, "0")[:3])


def cache_path(state_dir: Path, proc_root: Path, qemu: str, digest: str, accel: Accel) -> Path:
    try:
        kernel = (proc_root / "sys/kernel/osrelease").read_text().strip()
    except OSError:
        kernel = platform.release()
    try:
        qemu_id = str(int(os.stat(qemu).st_mtime))
    except OSError:
        qemu_id = "0"
    host = platform.node() or "host"
    return state_dir / "qemu" / f"machine-{host}-{kernel}-{qemu_id}-{digest}-{accel}.json"


def load_choice(cache: Path, now: float | None = None) -> MachineChoice | None:
    """The cached probe answer, unless absent, of the old format, or an expired timeout."""
    hit = probecache.load(cache, now=now)
    if hit is None:
        return None
    f = hit.fields
    machine = f.get("machine")
    if machine not in ("microvm", "q35"):
        return None
    tsc = f.get("tsc_khz")
    return MachineChoice(
        machine,
        str(f.get("reason", "")),
        tsc if isinstance(tsc, int) else None,
        cached=True,
        outcome=hit.outcome,
        checked_at=hit.checked_at,
        source=cache,
    )


def save_choice(cache: Path, c: MachineChoice) -> MachineChoice:
    """Store ``c`` (stamped now when it carries no time) and return it as stored."""
    c = replace(c, checked_at=c.checked_at or time.time(), source=cache)
    fields = {"machine": c.machine, "reason": c.reason, "tsc_khz": c.tsc_khz}
    probecache.save(cache, fields, outcome=c.outcome, checked_at=c.checked_at)
    return c


#: (spec, machine, boot timeout) -> a ready guest; raises BootTimeout if it was not ready in time,
#: SandboxError/UsageError if it failed.
Launch = Callable[[SandboxSpec, MachineChoice, float], Sandbox]


@dataclass(frozen=True)
class MicrovmProbe:
    """How hard to try microvm before settling for q35 (the ``probe_*`` driver options)."""

    timeout: float = 30.0
    attempts: int = 3
    boots: int = 3
    #: The host's exact TSC rate (host_tsc_khz): under TCG no learning boot is needed then.
    host_tsc_khz: int | None = None

    def run(self, launch: Launch, accel: Accel, run_id: str) -> MachineChoice:
        """Boot the image on microvm until it is known to boot reliably; otherwise q35.

        Under TCG: boot (up to ``attempts`` tries) to learn the TSC rate from the guest's dmesg,
        then ``boots`` boots with ``tsc_early_khz`` must all be ready in time. Under KVM the guest
        has kvmclock, so only the verification boots run. A q35 answer's outcome is ``timeout``
        when every failure was a guest not ready in time, else ``failed``.
        """
        spec = SandboxSpec(name="microvm-probe", run_id=run_id, memory_mib=256)
        tsc_khz: int | None = self.host_tsc_khz if accel == "tcg" else None
        failures: list[str] = []
        timeouts = 0
        if accel == "tcg" and tsc_khz is None:
            for _ in range(self.attempts):
                try:
                    sb = launch(spec, MachineChoice("microvm", "probe"), self.timeout)
                except (SandboxError, UsageError) as err:
                    failures.append(str(err)[:160])
                    timeouts += isinstance(err, BootTimeout)
                    continue
                try:
                    res = sb.exec(["dmesg"], timeout=30)
                    tsc_khz = tsc_khz_from_dmesg(res.stdout)
                    if tsc_khz is None:
                        failures.append("the guest printed no TSC rate")
                except CellTimeout as err:
                    failures.append(str(err)[:160])
                    timeouts += 1
                except SandboxError as err:
                    failures.append(str(err)[:160])
                finally:
                    sb.destroy()
                if tsc_khz is not None:
                    break
            if tsc_khz is None:
                why = failures[-1] if failures else "the guest printed no TSC rate"
                outcome: Outcome = "timeout" if failures and timeouts == len(failures) else "failed"
                log.warning("qemu driver: microvm does not boot reliably here (%s); using q35", why)
                return MachineChoice("q35", f"microvm probe: no TSC rate learned ({why})", outcome=outcome)
        choice = MachineChoice("microvm", "probe", tsc_khz)
        took: list[float] = []
        for i in range(self.boots):
            t0 = time.monotonic()
            try:
                sb = launch(spec, choice, self.timeout)
            except (SandboxError, UsageError) as err:
                log.warning("qemu driver: microvm probe boot %d failed (%s); using q35", i + 1, err)
                return MachineChoice(
                    "q35",
                    f"microvm probe boot {i + 1} failed: {str(err)[:200]}",
                    outcome="timeout" if isinstance(err, BootTimeout) else "failed",
                )
            took.append(time.monotonic() - t0)
            sb.destroy()
        extra = f" with tsc_early_khz={tsc_khz}" if tsc_khz else ""
        return MachineChoice(
            "microvm",
            f"{len(took)} microvm probe guests{extra} were ready in {min(took):.1f}-{max(took):.1f}s",
            tsc_khz,
        )
