"""The ``qemu`` driver: qemu-system-x86_64 launched directly, no libvirt, same guest as ``vm``.

Same image, root disk, in-guest agent and accel decision as the ``vm`` driver (all in the guest
core, isobench.drivers.guest). By default it boots the micro kernel (``kernel = "micro"``:
vmlinux through PVH, everything built in, drivers/guest/flavour.py), so a default run shows both
ends of the VM side: ``vm`` the stock distro guest, ``qemu`` the best start a VM here has. With
``kernel = "stock"`` it boots the same kernel as ``vm``, and ``vm`` minus ``qemu`` is what libvirt
costs. This module is the launcher: a command line (command.py), a process and its teardown. The
machine type is ``microvm`` where the guest really boots on it, else ``q35`` (machine.py); the micro
kernel's devices are virtio-mmio there (no PCI bus), the stock kernel's virtio-pci.

Resources, all named after the run: the qemu process ``-name isobench-qemu-<run_id>-<sandbox>-<n>``
(gc() finds it in /proc by that name), the guest directory ``<work_dir>/<sandbox>-<n>/`` (qcow2
overlay, agent and QMP sockets, console log, pidfile), and with a network a tap per guest on a
bridge per run (see network.py). destroy() asks the agent to power off, then QMP ``quit``, then
SIGKILLs; every path ends in :meth:`QemuDriver.teardown`, which removes the tap and directory.

Phases (host CLOCK_MONOTONIC; guest readings mapped by drivers/guest/phases.py):
``overlay`` (qemu-img), ``spawn`` (exec -> QMP greeting answered: qemu is up and vCPUs run),
``create`` (start -> spawn end), ``firmware`` (-> guest kernel clock zero), ``kernel`` (-> /init),
``initramfs`` (-> switch_root), ``agent`` (-> ready frame), ``ready`` (spawn end -> ready),
``boot_total``, and at teardown ``shutdown`` (poweroff request -> qemu exited) and ``destroy``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

from isobench.drivers.base import (
    Availability,
    Capabilities,
    DriverContext,
    DriverOptions,
    LayerStackKind,
    PhaseClock,
    SandboxSpec,
)
from isobench.drivers.guest.accel import AccelChoice, AccelProbe, host_tsc_khz, probe_accel, tcg_tsc_args
from isobench.drivers.guest.agent import AgentChannel, AgentReady
from isobench.drivers.guest.boot import BootTimeout, wait_for_agent
from isobench.drivers.guest.datadisk import make_guest_data_disk
from isobench.drivers.guest.flavour import KernelFlavour, guest_boot
from isobench.drivers.guest.image import guest_image, make_overlay
from isobench.drivers.guest.launcher import checked_guest, guest_metadata
from isobench.drivers.guest.memory import reserve_host_memory
from isobench.drivers.guest.options import GuestOptions
from isobench.drivers.guest.phases import record_boot
from isobench.drivers.guest.process import kill_qemu, last_line, spawn_qemu, wait_exit
from isobench.drivers.guest.sandbox import GuestSandbox
from isobench.drivers.naming import safe_chars as _safe
from isobench.drivers.options import option
from isobench.drivers.qemu.command import (
    AGENT_SOCKET,
    CONSOLE_LOG,
    OVERLAY,
    QMP_SOCKET,
    NetDevice,
    QemuConfig,
    cpu_arg,
    machine_types,
    qemu_argv,
)
from isobench.drivers.qemu.machine import (
    MachineChoice,
    MicrovmProbe,
    cache_path,
    load_choice,
    save_choice,
)
from isobench.drivers.qemu.network import (
    GuestNic,
    RunNetwork,
    run_prefix,
)
from isobench.drivers.qemu.procscan import find_guests
from isobench.drivers.qemu.qmp import QmpClient
from isobench.errors import DriverUnavailable, GcIncomplete, SandboxError, UsageError
from isobench.hostsys.links import Links
from isobench.procs import run_command, running

log = logging.getLogger(__name__)

__all__ = ["QemuDriver", "QemuSandbox"]

PREFIX = "isobench-qemu"
QEMU_LOG = "qemu.log"
_UNIX_PATH_MAX = 107


#: (state_dir, qemu binary) -> AccelProbe; the real one is the guest core's cached probe boot.
AccelProber = Callable[[Path, str], AccelProbe]


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


class QemuSandbox(GuestSandbox):
    """A qemu process booted into the agent; exec and stats are the guest core's."""

    def __init__(
        self,
        driver: QemuDriver,
        guest: _Guest,
        channel: AgentChannel,
        ready: AgentReady,
        clock: PhaseClock,
        memavail_before_kib: int,
    ) -> None:
        super().__init__(
            guest.spec,
            channel,
            ready,
            clock,
            address=guest.nic.address if guest.nic is not None else None,
            proc_root=driver.host.proc,
            memavail_before_kib=memavail_before_kib,
        )
        self._driver = driver
        self._guest = guest

    def qemu_pid(self) -> int | None:
        return self._guest.proc.pid if self._guest.proc is not None else None

    def _stop(self) -> None:
        g = self._guest
        try:
            start = time.monotonic_ns()
            how = "kill"
            acked = self._channel.poweroff(time.monotonic() + 5)
            if acked and wait_exit(g.proc, self._driver.opts.shutdown_timeout):
                how = "poweroff"
                self._clock.add("shutdown", start, time.monotonic_ns())
            if how == "kill" and g.qmp is not None and g.proc is not None and g.proc.poll() is None:
                with contextlib.suppress(SandboxError):
                    g.qmp.execute("quit", time.monotonic() + 5)
                if wait_exit(g.proc, 5):
                    how = "qmp-quit"
            log.debug("guest %s stopped by %s", g.name, how)
        finally:
            self._driver.teardown(g)


@dataclass(frozen=True)
class QemuOptions(GuestOptions):
    #: The direct launcher shows the VM side's best start by default (the ``vm`` driver the stock
    #: distro guest): the micro kernel on microvm.
    kernel: KernelFlavour = "micro"
    binary: str = "qemu-system-x86_64"
    qemu_img: str = "qemu-img"
    machine: Literal["auto", "microvm", "q35"] = "auto"
    #: Seconds for qemu to create its sockets after it is started.
    spawn_timeout: float = option(30.0, gt=0)
    #: The microvm probe (see MicrovmProbe): a boot not ready by probe_timeout failed.
    probe_timeout: float = option(30.0, gt=0)
    probe_attempts: int = option(3, ge=1)
    probe_boots: int = option(3, ge=1)
    #: A firmware image for q35 (default: qemu's own SeaBIOS).
    bios: Path | None = None


class QemuDriver:
    name: ClassVar[str] = "qemu"
    description: ClassVar[str] = (
        "qemu-system-x86_64 launched directly (no libvirt): microvm or q35, same guest as vm"
    )
    capabilities: ClassVar[Capabilities] = Capabilities.vm(order=50, layer_stack=LayerStackKind.QCOW2_CHAIN)
    options_type: ClassVar[type[DriverOptions]] = QemuOptions
    #: gc(None) leaves guests and links named after a live run (``ctx.sparing``) alone.
    spares_live_runs: ClassVar[bool] = True

    def __init__(
        self,
        ctx: DriverContext,
        *,
        which: Callable[[str], str | None] = shutil.which,
        run: Callable[[Sequence[str]], tuple[int, str, str]] = _real_run,
        accel_probe: AccelProber | None = None,
        links: Links | None = None,
    ) -> None:
        self._ctx = ctx
        self.host = ctx.host
        self.opts = QemuOptions.parse(self.name, ctx.options)
        self.binary: str = self.opts.binary
        self.qemu_img: str = self.opts.qemu_img
        self.machine_option: str = self.opts.machine
        self.spawn_timeout: float = self.opts.spawn_timeout
        #: A microvm guest that is not ready by probe_timeout is taken as "does not boot here".
        self.microvm_probe = MicrovmProbe(
            timeout=self.opts.probe_timeout,
            attempts=self.opts.probe_attempts,
            boots=self.opts.probe_boots,
            host_tsc_khz=host_tsc_khz(self.host.proc, self.host.sys),
        )
        self.bios: Path | None = self.opts.bios
        self.run_id = _safe(ctx.run_id)
        self._which = which
        self._run = run
        self._accel_probe = accel_probe or self._probe_accel
        self._links = links or Links()
        self._net = RunNetwork(self.run_id, self._links)
        self.accel = AccelChoice(
            "qemu", self.opts.accel, lambda: self._accel_probe(self._ctx.state_dir, self.binary)
        )
        self._machine: MachineChoice | None = None
        #: Where the per-image empty overlay lives that each guest's is copied from (make_overlay).
        self._templates = ctx.state_dir / "guest"
        self._version: str | None = None
        self._seq = 0

    # -- host facts ------------------------------------------------------------------------
    def _probe_accel(self, state_dir: Path, binary: str) -> AccelProbe:
        return probe_accel(state_dir, host=self.host, binary=binary)

    def qemu_version(self) -> str:
        if self._version is None:
            code, out, _ = self._run([self.binary, "-version"])
            self._version = out.splitlines()[0].strip() if code == 0 and out.strip() else ""
        return self._version

    # -- machine type ----------------------------------------------------------------------
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
            if self.machine_option == "microvm":
                # under TCG a configured microvm needs the TSC rate as much as a probed one
                tsc = self.microvm_probe.host_tsc_khz if self.accel() == "tcg" else None
                self._machine = MachineChoice("microvm", "configured", tsc)
            else:
                self._machine = MachineChoice("q35", "configured")
            return self._machine
        if "microvm" not in types:
            self._machine = MachineChoice("q35", f"{self.binary} has no microvm machine type")
            return self._machine
        accel = self.accel()
        qemu = self._which(self.binary) or self.binary
        img = guest_image(self._ctx.state_dir, self.opts.image)
        # The probe's answer holds for the kernel it booted: the micro kernel's build is in the key.
        boot = guest_boot(self._ctx.state_dir, img, self.opts.kernel)
        guest = img.digest if boot.flavour == "stock" else f"{img.digest}-micro-{boot.kernel_build}"
        cache = cache_path(self._ctx.state_dir, self.host.proc, qemu, guest, accel)
        self._machine = load_choice(cache)
        if self._machine is None:
            self._machine = save_choice(cache, self.microvm_probe.run(self._launch, accel, self.run_id))
        return self._machine

    # -- protocol --------------------------------------------------------------------------
    def probed_capabilities(self) -> Capabilities:
        return self.capabilities.with_accel(self.accel())

    def availability(self) -> Availability:
        for tool in (self.binary, self.qemu_img):
            if self._which(tool) is None:
                return Availability(
                    ok=False,
                    reason=f"{tool} is not installed; run `apt-get install qemu-system-x86 qemu-utils`",
                )
        try:
            img, boot = checked_guest(self._ctx.state_dir, self.opts)
            details = self.accel.details()
            choice = self.machine()
        except (DriverUnavailable, UsageError) as err:
            return Availability(ok=False, reason=str(err))
        details.update(
            machine=choice.machine,
            machine_reason=choice.described(),
            guest_tsc_khz=choice.tsc_khz,
            image=img.digest,
            kernel_flavour=boot.flavour,
            qemu=self.qemu_version(),
        )
        return Availability(ok=True, details=details)

    def metadata(self) -> Mapping[str, Any]:
        md = guest_metadata(self.accel, self._ctx.state_dir, self.opts)
        md["launcher"] = "qemu (no libvirt)"
        with contextlib.suppress(DriverUnavailable, UsageError):
            choice = self.machine()
            md["machine"] = choice.machine
            md["machine_reason"] = choice.reason
            if choice.tsc_khz:
                md["guest_tsc_khz"] = choice.tsc_khz
            md["cpu_model"] = cpu_arg(md["accel"], self.opts.cpu_model)
        md["qemu_version"] = self.qemu_version()
        return md

    def create(self, spec: SandboxSpec) -> QemuSandbox:
        return self._launch(spec, self.machine(), self.opts.boot_timeout)

    def _launch(self, spec: SandboxSpec, choice: MachineChoice, boot_timeout: float) -> QemuSandbox:
        machine = choice.machine
        clock = PhaseClock()
        t_create = time.monotonic_ns()
        img, boot = checked_guest(self._ctx.state_dir, self.opts, spec)
        accel = self.accel()
        avail = reserve_host_memory(spec.name, spec.memory_mib, self.host.proc)
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
                make_overlay(
                    img, Path(OVERLAY), qemu_img=self.qemu_img, cwd=g.dir, template_dir=self._templates
                )
            cmdline = self.opts.cmdline
            if choice.tsc_khz:
                cmdline += f" {tcg_tsc_args(choice.tsc_khz)}"
            g.data_disk = make_guest_data_disk(
                spec,
                clock,
                leaf=f"{self.run_id}-{leaf}",
                layers_path=g.dir / "layers.qcow2",
                size_mib=self.opts.data_disk_mib,
                qemu_img=self.qemu_img,
            )
            if spec.network:
                g.nic = self._net.add_guest()
            cfg = QemuConfig.for_spec(
                g.name,
                spec,
                img,
                accel=accel,
                cmdline=cmdline,
                cpu_model=self.opts.cpu_model,
                data_disk=g.data_disk,
                data_format="raw" if spec.layers is None else "qcow2",
                ip=None if g.nic is None else f"{g.nic.address}/{g.nic.prefix}",
                boot=boot,
                machine=machine,
                virtio_mmio=machine == "microvm" and boot.flavour == "micro",
                net=NetDevice(g.nic.tap, g.nic.mac) if g.nic is not None else None,
                bios=self.bios,
                binary=self.binary,
            )
            argv = qemu_argv(cfg)
            if spec.cpuset:
                # taskset execs qemu, so every thread qemu later starts (vCPUs included) inherits
                # the mask; setting it on the pid afterwards would miss threads already running.
                argv = ["taskset", "-c", ",".join(str(c) for c in sorted(set(spec.cpuset))), *argv]
            t_spawn = time.monotonic_ns()
            g.proc = proc = spawn_qemu(argv, g.dir, g.dir / QEMU_LOG)
            with _sock_path(g.dir, QMP_SOCKET) as qmp_path:
                g.qmp = _connect_qmp(qmp_path, proc, time.monotonic() + self.spawn_timeout, g.dir)
            t_up = time.monotonic_ns()
            clock.add("spawn", t_spawn, t_up)
            clock.add("create", t_create, t_up)
            with _sock_path(g.dir, AGENT_SOCKET) as agent_path:
                channel, ready, ready_ns = wait_for_agent(
                    agent_path,
                    boot_timeout,
                    guest=f"{g.name} ({machine})",
                    console=g.dir / CONSOLE_LOG,
                    qemu_log=g.dir / QEMU_LOG,
                )
            g.channel = channel
            record_boot(clock, t_create, t_up, ready, ready_ns)
            return QemuSandbox(self, g, channel, ready, clock, avail)
        except BaseException:
            self.teardown(g)
            raise

    def teardown(self, g: _Guest) -> None:
        """Kill what is left of ``g`` and remove its tap and directory; never raises for missing parts."""
        for closer in (g.channel, g.qmp):
            if closer is not None:
                with contextlib.suppress(OSError):
                    closer.close()
        if g.proc is not None:
            kill_qemu(g.proc)
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
        """Kill qemu processes, remove taps, bridges and guest dirs of ``run_id`` (or, when None, of
        every run but this driver's own and the live ones ``ctx.sparing`` names)."""
        gone: list[str] = []
        want = _safe(run_id) if run_id is not None else None
        prefix = f"{PREFIX}-{want}-" if want is not None else f"{PREFIX}-"
        own = f"{PREFIX}-{self.run_id}-"
        sparing = self._ctx.sparing
        victims = [
            (pid, name)
            for pid, name in find_guests(self.host.proc, prefix)
            if want is not None
            or not (name.startswith(own) or sparing.spares(f"qemu guest {name}", partial(_guest_of, name)))
        ]
        for pid, name in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            gone.append(f"process {pid} {name}")
        for pid, _ in victims:
            end = time.monotonic() + 10
            while (self.host.proc / str(pid)).exists() and time.monotonic() < end:
                # A SIGKILLed child of ours stays a zombie until reaped.
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.01)
        left = [
            f"process {pid} {name} still running" for pid, name in victims if running(pid, self.host.proc)
        ]
        own_links = run_prefix(self.run_id)
        try:
            # gc of every run (want None) leaves this driver's own run alone.
            links = self._links.gc(
                run_prefix(want),
                lambda link: (
                    want is not None
                    or not (
                        link.name.startswith(own_links)
                        or sparing.spares(f"link {link.name}", lambda r: link.name.startswith(run_prefix(r)))
                    )
                ),
            )
        except SandboxError as err:
            log.warning("qemu gc: cannot list links: %s", err)
            links = []
        gone += [f"link {name}" for name in links]
        if want is not None and want == self.run_id and self._ctx.work_dir.is_dir():
            for d in self._ctx.work_dir.iterdir():
                if d.is_dir() and ((d / OVERLAY).exists() or (d / QEMU_LOG).exists()):
                    shutil.rmtree(d, ignore_errors=True)
                    gone.append(f"dir {d}")
        if left:
            raise GcIncomplete(gone, left)
        return gone


def _guest_of(name: str, run_id: str) -> bool:
    return name.startswith(f"{PREFIX}-{_safe(run_id)}-")


def _connect_qmp(path: str, proc: subprocess.Popen[bytes], deadline: float, gdir: Path) -> QmpClient:
    """QMP answering means qemu finished machine setup; if qemu exits first, say why."""
    while True:
        if proc.poll() is not None:
            raise SandboxError(f"qemu exited with {proc.returncode} at start: {last_line(gdir / QEMU_LOG)!r}")
        try:
            return QmpClient.connect(path, min(deadline, time.monotonic() + 0.2))
        except SandboxError:
            if time.monotonic() >= deadline:
                raise BootTimeout(
                    f"qemu did not bring up QMP within the spawn timeout: {last_line(gdir / QEMU_LOG)!r}"
                ) from None
