"""The ``qemu`` driver: qemu-system-x86_64 launched directly, no libvirt, same guest as ``vm``.

Same kernel, initramfs, root disk and in-guest agent as the ``vm`` driver, and the same accel
decision (isobench.drivers.vm.accel), so ``vm`` minus ``qemu`` is what libvirt costs. The machine
type is ``microvm`` when this qemu has it *and* the image's guest really boots on it (a probe boot,
cached per host/qemu/image in ``<state_dir>/qemu/``), else ``q35``.

Resources, all named after the run: the qemu process ``-name isobench-qemu-<run_id>-<sandbox>-<n>``
(gc() finds it in /proc by that name), the guest directory ``<work_dir>/<sandbox>-<n>/`` (qcow2
overlay, agent and QMP sockets, console log, pidfile), and with a network a tap per guest on a
bridge per run (see network.py). destroy() asks the agent to power off, then QMP ``quit``, then
SIGKILLs; every path ends in :meth:`QemuDriver.teardown`, which removes the tap and directory.

Phases (host CLOCK_MONOTONIC; guest readings mapped through the agent's ready frame):
``overlay`` (qemu-img), ``spawn`` (exec -> QMP greeting answered: qemu is up and vCPUs run),
``create`` (start -> spawn end), ``firmware`` (-> guest kernel clock zero), ``kernel`` (-> /init),
``initramfs`` (-> switch_root), ``agent`` (-> ready frame), ``ready`` (spawn end -> ready),
``boot_total``, and at teardown ``shutdown`` (poweroff request -> qemu exited) and ``destroy``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.base import (
    Availability,
    DriverContext,
    ExecResult,
    OptionTypes,
    PhaseClock,
    SandboxSpec,
)
from isobench.drivers.qemu.command import (
    AGENT_SOCKET,
    CONSOLE_LOG,
    OVERLAY,
    QMP_SOCKET,
    Accel,
    Machine,
    NetDevice,
    QemuConfig,
    cpu_arg,
    machine_types,
    qemu_argv,
)
from isobench.drivers.qemu.network import (
    LINK_PREFIX,
    GuestNic,
    IpRunner,
    RunNetwork,
    ip_command,
    list_links,
    net_tag,
)
from isobench.drivers.qemu.procscan import find_guests
from isobench.drivers.qemu.qmp import QmpClient
from isobench.drivers.vm.accel import AccelProbe, probe_accel
from isobench.drivers.vm.agent import AgentChannel, AgentReady
from isobench.drivers.vm.datadisk import CMDLINE_FLAG as DATA_CMDLINE_FLAG
from isobench.drivers.vm.datadisk import DEFAULT_SIZE_MIB as DATA_DISK_MIB
from isobench.drivers.vm.datadisk import VOLUME_DESCRIPTION, make_data_disk
from isobench.drivers.vm.driver import DEFAULT_CMDLINE, GUEST_OPTIONS, check_image
from isobench.drivers.vm.memory import guest_used_bytes, meminfo_kib, qemu_process_stats
from isobench.errors import CellTimeout, DriverUnavailable, SandboxError, UsageError
from isobench.images import Image, find_image
from isobench.model import PhaseTiming
from isobench.procs import run_command

log = logging.getLogger(__name__)

__all__ = ["MachineChoice", "QemuDriver", "QemuSandbox", "boot_phases", "tsc_khz_from_dmesg"]

PREFIX = "isobench-qemu"
QEMU_LOG = "qemu.log"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_UNIX_PATH_MAX = 107


def _safe(s: str) -> str:
    return _SAFE.sub("_", s)


@dataclass(frozen=True)
class MachineChoice:
    machine: Machine
    reason: str
    #: microvm under TCG: the guest TSC rate given via ``tsc_early_khz=`` (see tsc_khz_from_dmesg).
    tsc_khz: int | None = None
    cached: bool = False


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


#: (state_dir, accel) -> AccelProbe; the real one is the vm driver's probe boot (cached per host).
AccelProber = Callable[[Path, str], AccelProbe]


def _real_accel_probe(state_dir: Path, uri: str) -> AccelProbe:
    return probe_accel(state_dir, uri)


def _real_run(argv: Sequence[str]) -> tuple[int, str, str]:
    try:
        res = run_command(argv, timeout=30)
    except SandboxError as err:
        return 127, "", str(err)
    return res.exit_code, res.stdout, res.stderr


@dataclass
class _Guest:
    """What one guest owns, filled in as creation proceeds, so teardown removes exactly that."""

    name: str
    dir: Path
    spec: SandboxSpec
    proc: subprocess.Popen[bytes] | None = None
    qmp: QmpClient | None = None
    channel: AgentChannel | None = None
    nic: GuestNic | None = None
    files_made: bool = False
    #: the volume's image, in the volume directory (outside ``dir``)
    data_disk: Path | None = None


@contextlib.contextmanager
def _sock_path(directory: Path, name: str) -> Iterator[str]:
    """A connectable path to ``directory/name`` even when it exceeds sun_path (107 bytes)."""
    full = str(directory / name)
    if len(full.encode()) <= _UNIX_PATH_MAX:
        yield full
        return
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


class QemuSandbox:
    def __init__(
        self,
        driver: QemuDriver,
        guest: _Guest,
        ready: AgentReady,
        clock: PhaseClock,
        memavail_before_kib: int,
    ) -> None:
        self._driver = driver
        self._guest = guest
        self._ready = ready
        self._clock = clock
        self._memavail_before_kib = memavail_before_kib
        self._destroyed = False

    @property
    def name(self) -> str:
        return self._guest.spec.name

    @property
    def guest_name(self) -> str:
        return self._guest.name

    @property
    def pid(self) -> int | None:
        return self._guest.proc.pid if self._guest.proc is not None else None

    @property
    def phases(self) -> Sequence[PhaseTiming]:
        return tuple(self._clock.phases)

    @property
    def workdir(self) -> str:
        return self._ready.workdir

    @property
    def address(self) -> str | None:
        return self._guest.nic.address if self._guest.nic is not None else None

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        if self._destroyed or self._guest.channel is None:
            raise SandboxError(f"sandbox {self.name} is destroyed")
        return self._guest.channel.exec(argv, timeout=timeout, env=env, stdin=stdin, cwd=self._ready.workdir)

    def stats(self) -> Mapping[str, float]:
        """The same metrics as the vm driver, so the two compare key by key."""
        pid = self.pid
        guest_ram = self._guest.spec.memory_mib << 20
        out = {} if pid is None else qemu_process_stats(self._driver.proc_root / str(pid), guest_ram)
        if self._guest.channel is not None and not self._destroyed:
            with contextlib.suppress(SandboxError, CellTimeout):
                res = self._guest.channel.exec(["cat", "/proc/meminfo"], timeout=30)
                used = guest_used_bytes(res.stdout) if res.ok else None
                if used is not None:
                    out["vm.guest_used_bytes"] = used
        avail = self._driver.host_memavailable_kib()
        if avail is not None:
            out["vm.host_memavailable_delta_bytes"] = float((self._memavail_before_kib - avail) * 1024)
        return out

    def destroy(self) -> None:
        if self._destroyed:
            return
        self._destroyed = True
        g = self._guest
        with self._clock.phase("destroy"):
            try:
                start = time.monotonic_ns()
                how = "kill"
                acked = g.channel is not None and g.channel.poweroff(time.monotonic() + 5)
                if acked and _wait_exit(g.proc, self._driver.shutdown_timeout):
                    how = "poweroff"
                    self._clock.add("shutdown", start, time.monotonic_ns())
                if how == "kill" and g.qmp is not None and g.proc is not None and g.proc.poll() is None:
                    with contextlib.suppress(SandboxError):
                        g.qmp.execute("quit", time.monotonic() + 5)
                    if _wait_exit(g.proc, 5):
                        how = "qmp-quit"
                log.debug("guest %s stopped by %s", g.name, how)
            finally:
                self._driver.teardown(g)


def _wait_exit(proc: subprocess.Popen[bytes] | None, seconds: float) -> bool:
    if proc is None:
        return True
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


class QemuDriver:
    name: ClassVar[str] = "qemu"
    description: ClassVar[str] = (
        "qemu-system-x86_64 launched directly (no libvirt): microvm or q35, same guest as vm"
    )
    option_types: ClassVar[OptionTypes] = {
        **GUEST_OPTIONS,
        "binary": (str,),
        "qemu_img": (str,),
        "machine": (str,),
        "spawn_timeout": (int, float),
        "probe_timeout": (int, float),
        "probe_attempts": (int,),
        "probe_boots": (int,),
        "bios": (str,),
        "accel_uri": (str,),
    }

    def __init__(
        self,
        ctx: DriverContext,
        *,
        which: Callable[[str], str | None] = shutil.which,
        run: Callable[[Sequence[str]], tuple[int, str, str]] = _real_run,
        accel_probe: AccelProber = _real_accel_probe,
        ip: IpRunner = ip_command,
    ) -> None:
        self._ctx = ctx
        opts = ctx.options
        self.binary: str = str(opts.get("binary", "qemu-system-x86_64"))
        self.qemu_img: str = str(opts.get("qemu_img", "qemu-img"))
        self.accel_option: str = str(opts.get("accel", "auto"))
        if self.accel_option not in ("auto", "kvm", "tcg"):
            raise UsageError(f"drivers.qemu.accel must be auto, kvm or tcg, not {self.accel_option!r}")
        self.machine_option: str = str(opts.get("machine", "auto"))
        if self.machine_option not in ("auto", "microvm", "q35"):
            raise UsageError(
                f"drivers.qemu.machine must be auto, microvm or q35, not {self.machine_option!r}"
            )
        self.image_name: str = str(opts.get("image", "default"))
        self.boot_timeout: float = float(opts.get("boot_timeout", 120))
        self.spawn_timeout: float = float(opts.get("spawn_timeout", 30))
        self.shutdown_timeout: float = float(opts.get("shutdown_timeout", 10))
        #: A microvm guest that is not ready by then is taken as "does not boot here".
        self.probe_timeout: float = float(opts.get("probe_timeout", 30))
        self.probe_attempts: int = int(opts.get("probe_attempts", 3))
        self.probe_boots: int = int(opts.get("probe_boots", 3))
        self.cmdline: str = str(opts.get("cmdline", DEFAULT_CMDLINE))
        self.cpu_model: str | None = opts.get("cpu_model")
        self.data_disk_mib: int = int(opts.get("data_disk_mib", DATA_DISK_MIB))
        bios = opts.get("bios")
        self.bios: Path | None = Path(bios) if bios else None
        #: libvirt URI the shared accel probe boots through (the same cached answer as the vm driver).
        self.accel_uri: str = str(opts.get("accel_uri", "qemu:///system"))
        self.proc_root: Path = Path(opts.get("proc_root", "/proc"))
        self.run_id = _safe(ctx.run_id)
        self._which = which
        self._run = run
        self._accel_probe = accel_probe
        self._ip = ip
        self._net = RunNetwork(self.run_id, ip)
        self._probe: AccelProbe | None = None
        self._accel: Accel | None = None
        self._machine: MachineChoice | None = None
        self._version: str | None = None
        self._seq = 0

    # -- host facts ------------------------------------------------------------------------
    def host_memavailable_kib(self) -> int | None:
        try:
            return meminfo_kib((self.proc_root / "meminfo").read_text()).get("MemAvailable")
        except OSError:
            return None

    def qemu_version(self) -> str:
        if self._version is None:
            code, out, _ = self._run([self.binary, "-version"])
            self._version = out.splitlines()[0].strip() if code == 0 and out.strip() else ""
        return self._version

    def _image(self, spec: SandboxSpec | None = None) -> Image:
        if spec is not None and spec.image is not None:
            root = spec.image
            name, _, digest = root.name.rpartition("-")
            return Image(name=name or root.name, digest=digest, root=root)
        return find_image(self._ctx.state_dir, self.image_name)

    # -- accelerator (the vm driver's probe and cache) ---------------------------------------
    def accel(self) -> Accel:
        if self._accel is not None:
            return self._accel
        if self.accel_option == "tcg":
            self._accel = "tcg"
            return "tcg"
        self._probe = self._accel_probe(self._ctx.state_dir, self.accel_uri)
        if self._probe.usable:
            self._accel = "kvm"
        elif self.accel_option == "kvm":
            raise DriverUnavailable(
                f"KVM was requested but is unusable here: {self._probe.reason}; use accel=auto or tcg"
            )
        else:
            log.info("qemu driver: KVM unusable (%s); guests run under TCG", self._probe.reason)
            self._accel = "tcg"
        return self._accel

    # -- machine type ----------------------------------------------------------------------
    def _machine_cache(self, img: Image, accel: str) -> Path:
        try:
            kernel = (self.proc_root / "sys/kernel/osrelease").read_text().strip()
        except OSError:
            kernel = platform.release()
        qemu = self._which(self.binary) or self.binary
        try:
            qemu_id = str(int(os.stat(qemu).st_mtime))
        except OSError:
            qemu_id = "0"
        host = platform.node() or "host"
        return self._ctx.state_dir / "qemu" / f"machine-{host}-{kernel}-{qemu_id}-{img.digest}-{accel}.json"

    def machine(self) -> MachineChoice:
        """microvm when asked for, or (auto) when this qemu has it and a probe guest booted on it."""
        if self._machine is not None:
            return self._machine
        code, out, err = self._run([self.binary, "-machine", "help"])
        if code != 0:
            raise DriverUnavailable(f"`{self.binary} -machine help` failed: {(err or out).strip()[:200]}")
        types = machine_types(out)
        if self.machine_option != "auto":
            if self.machine_option not in types:
                raise DriverUnavailable(
                    f"{self.binary} has no {self.machine_option} machine type; set drivers.qemu.machine=auto"
                )
            self._machine = MachineChoice(
                "microvm" if self.machine_option == "microvm" else "q35", "configured"
            )
            return self._machine
        if "microvm" not in types:
            self._machine = MachineChoice("q35", f"{self.binary} has no microvm machine type")
            return self._machine
        img = self._image()
        accel = self.accel()
        cache = self._machine_cache(img, accel)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            d = json.loads(cache.read_text())
            self._machine = MachineChoice(d["machine"], d["reason"], d.get("tsc_khz"), cached=True)
            return self._machine
        self._machine = self._probe_microvm(accel)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            c = self._machine
            tmp.write_text(json.dumps({"machine": c.machine, "reason": c.reason, "tsc_khz": c.tsc_khz}))
            tmp.rename(cache)
        except OSError as err_:
            log.warning("cannot cache the machine probe in %s: %s", cache, err_)
        return self._machine

    def _probe_microvm(self, accel: Accel) -> MachineChoice:
        """Boot the image on microvm until it is known to boot reliably; otherwise q35.

        Under TCG: boot (up to ``probe_attempts`` tries) to learn the TSC rate from the guest's
        dmesg, then ``probe_boots`` boots with ``tsc_early_khz`` must all be ready in time. Under
        KVM the guest has kvmclock, so only the verification boots run.
        """
        spec = SandboxSpec(name="microvm-probe", run_id=self.run_id, memory_mib=256)
        tsc_khz: int | None = None
        failures: list[str] = []
        if accel == "tcg":
            for _ in range(self.probe_attempts):
                try:
                    sb = self._launch(spec, MachineChoice("microvm", "probe"), self.probe_timeout)
                except (SandboxError, UsageError) as err:
                    failures.append(str(err)[:160])
                    continue
                try:
                    res = sb.exec(["dmesg"], timeout=30)
                    tsc_khz = tsc_khz_from_dmesg(res.stdout)
                except (SandboxError, CellTimeout) as err:
                    failures.append(str(err)[:160])
                finally:
                    sb.destroy()
                if tsc_khz is not None:
                    break
            if tsc_khz is None:
                why = failures[-1] if failures else "the guest printed no TSC rate"
                log.warning("qemu driver: microvm does not boot reliably here (%s); using q35", why)
                return MachineChoice("q35", f"microvm probe: no TSC rate learned ({why})")
        choice = MachineChoice("microvm", "probe", tsc_khz)
        took: list[float] = []
        for i in range(self.probe_boots):
            t0 = time.monotonic()
            try:
                sb = self._launch(spec, choice, self.probe_timeout)
            except (SandboxError, UsageError) as err:
                log.warning("qemu driver: microvm probe boot %d failed (%s); using q35", i + 1, err)
                return MachineChoice("q35", f"microvm probe boot {i + 1} failed: {str(err)[:200]}")
            took.append(time.monotonic() - t0)
            sb.destroy()
        extra = f" with tsc_early_khz={tsc_khz}" if tsc_khz else ""
        return MachineChoice(
            "microvm",
            f"{len(took)} microvm probe guests{extra} were ready in {min(took):.1f}-{max(took):.1f}s",
            tsc_khz,
        )

    # -- protocol --------------------------------------------------------------------------
    def availability(self) -> Availability:
        for tool in (self.binary, self.qemu_img):
            if self._which(tool) is None:
                return Availability(
                    ok=False,
                    reason=f"{tool} is not installed; run `apt-get install qemu-system-x86 qemu-utils`",
                )
        try:
            img = self._image()
            check_image(img)
            accel = self.accel()
            choice = self.machine()
        except (DriverUnavailable, UsageError) as err:
            return Availability(ok=False, reason=str(err))
        details: dict[str, Any] = {
            "accel": accel,
            "machine": choice.machine,
            "machine_reason": choice.reason,
            "guest_tsc_khz": choice.tsc_khz,
            "image": img.digest,
            "qemu": self.qemu_version(),
        }
        if self._probe is not None:
            details["kvm_usable"] = self._probe.usable
            details["kvm_probe"] = self._probe.reason
        return Availability(ok=True, details=details)

    def metadata(self) -> Mapping[str, Any]:
        accel = self.accel()
        md: dict[str, Any] = {"isolation": "vm", "launcher": "qemu (no libvirt)", "accel": accel}
        if self._probe is not None:
            md["accel_reason"] = self._probe.reason
        with contextlib.suppress(DriverUnavailable, UsageError):
            choice = self.machine()
            md["machine"] = choice.machine
            md["machine_reason"] = choice.reason
            if choice.tsc_khz:
                md["guest_tsc_khz"] = choice.tsc_khz
            md["cpu_model"] = cpu_arg(accel, self.cpu_model)
        md["qemu_version"] = self.qemu_version()
        md["disk"] = "virtio-blk, qcow2 overlay over the raw image, cache=none, aio=native"
        md["volume"] = VOLUME_DESCRIPTION
        with contextlib.suppress(UsageError):
            md["image"] = self._image().digest
        return md

    def create(self, spec: SandboxSpec) -> QemuSandbox:
        return self._launch(spec, self.machine(), self.boot_timeout)

    def _launch(self, spec: SandboxSpec, choice: MachineChoice, boot_timeout: float) -> QemuSandbox:
        machine = choice.machine
        clock = PhaseClock()
        t_create = time.monotonic_ns()
        img = self._image(spec)
        check_image(img)
        if spec.volume is not None and not spec.volume.is_dir():
            raise UsageError(f"volume {spec.volume} is not a directory; create it first")
        accel = self.accel()
        avail = self.host_memavailable_kib() or 0
        if avail and spec.memory_mib * 1024 > avail:
            raise SandboxError(
                f"sandbox {spec.name}: the host has {avail // 1024} MiB available, cannot give"
                f" {spec.memory_mib} MiB; lower memory_mib"
            )
        self._seq += 1
        leaf = f"{_safe(spec.name)}-{self._seq}"
        g = _Guest(name=f"{PREFIX}-{self.run_id}-{leaf}", dir=self._ctx.work_dir / leaf, spec=spec)
        try:
            self._ctx.work_dir.mkdir(parents=True, exist_ok=True)
            try:
                g.dir.mkdir()
            except FileExistsError:
                raise SandboxError(
                    f"{g.dir} already exists: a dead run with this run id left it; run `isobench gc`"
                ) from None
            g.files_made = True
            with clock.phase("overlay"):
                res = run_command(
                    [self.qemu_img, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(img.disk), OVERLAY],
                    timeout=30,
                    cwd=g.dir,
                )
            if not res.ok:
                raise SandboxError(f"qemu-img could not create the overlay in {g.dir}: {res.stderr.strip()}")
            cmdline = self.cmdline
            if choice.tsc_khz:
                cmdline += f" tsc_early_khz={choice.tsc_khz}"
            if spec.volume is not None:
                with clock.phase("data_disk"):
                    g.data_disk = make_data_disk(spec.volume, f"{self.run_id}-{leaf}", self.data_disk_mib)
                cmdline += f" {DATA_CMDLINE_FLAG}"
            if spec.network:
                g.nic = self._net.add_guest()
                cmdline += f" isobench.ip={g.nic.address}/{g.nic.prefix}"
            cfg = QemuConfig(
                name=g.name,
                machine=machine,
                accel=accel,
                memory_mib=spec.memory_mib,
                vcpus=spec.vcpus,
                kernel=img.kernel,
                initrd=img.initrd,
                cmdline=cmdline,
                cpu_model=self.cpu_model,
                net=NetDevice(g.nic.tap, g.nic.mac) if g.nic is not None else None,
                data_disk=g.data_disk,
                bios=self.bios,
                binary=self.binary,
            )
            argv = qemu_argv(cfg)
            if spec.cpuset:
                # taskset execs qemu, so every thread qemu later starts (vCPUs included) inherits
                # the mask; setting it on the pid afterwards would miss threads already running.
                argv = ["taskset", "-c", ",".join(str(c) for c in sorted(set(spec.cpuset))), *argv]
            t_spawn = time.monotonic_ns()
            with (g.dir / QEMU_LOG).open("wb") as qlog:
                try:
                    # Own session: a terminal Ctrl-C reaches the runner, which destroys the guest in
                    # order, instead of killing qemu under it.
                    g.proc = subprocess.Popen(
                        argv,
                        cwd=g.dir,
                        stdin=subprocess.DEVNULL,
                        stdout=qlog,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                except OSError as err:
                    raise SandboxError(f"cannot run {argv[0]}: {err.strerror}") from err
            proc = g.proc
            with _sock_path(g.dir, QMP_SOCKET) as qmp_path:
                g.qmp = _connect_qmp(qmp_path, proc, time.monotonic() + self.spawn_timeout, g.dir)
            t_up = time.monotonic_ns()
            clock.add("spawn", t_spawn, t_up)
            clock.add("create", t_create, t_up)
            deadline = time.monotonic() + boot_timeout
            with _sock_path(g.dir, AGENT_SOCKET) as agent_path:
                g.channel = AgentChannel.connect(agent_path, time.monotonic() + 10)
            try:
                ready, ready_ns = g.channel.wait_ready(deadline)
            except TimeoutError:
                raise SandboxError(
                    f"guest {g.name} ({machine}) was not ready within {boot_timeout:.0f}s; last console line:"
                    f" {_last_line(g.dir / CONSOLE_LOG)!r}"
                ) from None
            except SandboxError as err:
                raise SandboxError(
                    f"guest {g.name} ({machine}) died before ready ({err}); qemu said"
                    f" {_last_line(g.dir / QEMU_LOG)!r}, console {_last_line(g.dir / CONSOLE_LOG)!r}"
                ) from err
            boot_phases(clock, t_up, ready, ready_ns)
            clock.add("ready", t_up, ready_ns)
            clock.add("boot_total", t_create, ready_ns)
            return QemuSandbox(self, g, ready, clock, avail)
        except BaseException:
            self.teardown(g)
            raise

    def teardown(self, g: _Guest) -> None:
        """Kill what is left of ``g`` and remove its tap and directory; never raises for missing parts."""
        for closer in (g.channel, g.qmp):
            if closer is not None:
                with contextlib.suppress(OSError):
                    closer.close()
        if g.proc is not None and g.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g.proc.pid, signal.SIGKILL)  # start_new_session: the group is qemu's pid
            with contextlib.suppress(subprocess.TimeoutExpired):
                g.proc.wait(10)
        if g.nic is not None:
            with contextlib.suppress(SandboxError):
                self._net.delete_link(g.nic.tap)
        if g.files_made:
            shutil.rmtree(g.dir, ignore_errors=True)
        if g.data_disk is not None:
            with contextlib.suppress(OSError):
                g.data_disk.unlink(missing_ok=True)

    def close(self) -> None:
        """End of run: remove the run's bridge (and taps a crash left), then the empty work dir."""
        try:
            self._net.close()
        finally:
            with contextlib.suppress(OSError):
                self._ctx.work_dir.rmdir()

    # -- gc --------------------------------------------------------------------------------
    def gc(self, run_id: str | None = None) -> list[str]:
        """Kill qemu processes, remove taps, bridges and guest dirs of ``run_id`` (or every run but
        this driver's own when None: gc passes None only when no run is alive)."""
        gone: list[str] = []
        want = _safe(run_id) if run_id is not None else None
        prefix = f"{PREFIX}-{want}-" if want is not None else f"{PREFIX}-"
        own = f"{PREFIX}-{self.run_id}-"
        victims = [
            (pid, name)
            for pid, name in find_guests(self.proc_root, prefix)
            if want is not None or not name.startswith(own)
        ]
        for pid, name in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            gone.append(f"process {pid} {name}")
        for pid, _ in victims:
            end = time.monotonic() + 10
            while (self.proc_root / str(pid)).exists() and time.monotonic() < end:
                # A SIGKILLed child of ours stays a zombie until reaped.
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.01)
        link_prefix = f"{LINK_PREFIX}{net_tag(want)}" if want is not None else LINK_PREFIX
        own_links = f"{LINK_PREFIX}{net_tag(self.run_id)}"
        try:
            links = [
                n
                for n in list_links(self._ip, link_prefix)
                if want is not None or not n.startswith(own_links)
            ]
        except SandboxError as err:
            log.warning("qemu gc: cannot list links: %s", err)
            links = []
        # Taps before bridges: a bridge goes more cleanly once its ports are gone.
        for name in sorted(links, key=lambda n: n.endswith("br")):
            if self._net.delete_link(name):
                gone.append(f"link {name}")
        if want is not None and want == self.run_id and self._ctx.work_dir.is_dir():
            for d in self._ctx.work_dir.iterdir():
                if d.is_dir() and ((d / OVERLAY).exists() or (d / QEMU_LOG).exists()):
                    shutil.rmtree(d, ignore_errors=True)
                    gone.append(f"dir {d}")
        return gone


def _connect_qmp(path: str, proc: subprocess.Popen[bytes], deadline: float, gdir: Path) -> QmpClient:
    """QMP answering means qemu finished machine setup; if qemu exits first, say why."""
    while True:
        if proc.poll() is not None:
            raise SandboxError(
                f"qemu exited with {proc.returncode} at start: {_last_line(gdir / QEMU_LOG)!r}"
            )
        try:
            return QmpClient.connect(path, min(deadline, time.monotonic() + 0.2))
        except SandboxError:
            if time.monotonic() >= deadline:
                raise SandboxError(
                    f"qemu did not bring up QMP within the spawn timeout: {_last_line(gdir / QEMU_LOG)!r}"
                ) from None


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-200:] if lines else ""


def boot_phases(clock: PhaseClock, started_ns: int, ready: AgentReady, ready_ns: int) -> None:
    """Map guest clock readings onto the host timeline: guest boottime 0 = kernel start."""
    kernel_start = ready_ns - ready.boottime_ns
    clock.add("firmware", started_ns, max(started_ns, kernel_start))
    marks = [max(started_ns, kernel_start)]
    for up in (ready.init_uptime_s, ready.switch_uptime_s):
        if up is not None:
            marks.append(max(marks[-1], kernel_start + int(up * 1e9)))
    names = ["kernel", "initramfs"]
    for i in range(len(marks) - 1):
        clock.add(names[i], marks[i], marks[i + 1])
    clock.add("agent", marks[-1], max(marks[-1], ready_ns))
