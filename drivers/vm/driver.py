"""The ``vm`` driver: one libvirt domain per sandbox, booted straight into the isobench agent.

Every resource carries ``isobench-<run_id>``: domains ``isobench-<run_id>-<sandbox>`` (their
``<description>`` records run id and owner pid for gc), the per-run directory
``<state_dir>/vm-runs/isobench-<run_id>/`` (qcow2 overlays, console logs; under state_dir rather
than work_dir because libvirt's unprivileged qemu user must traverse every parent directory), and,
when a sandbox asks for a network, a libvirt network ``isobench-<run_id>`` whose bridge and taps
libvirt itself owns.

This module is the launcher: domain XML (domain.py) and a domain's lifecycle. The agent channel,
accel probe, data disk, memory accounting, image checks, boot phases and stats are the guest core's
(isobench.drivers.guest), shared with the ``qemu`` driver.

Boot phases recorded (host CLOCK_MONOTONIC; guest readings mapped by drivers/guest/phases.py):
``create`` (overlay + define + start), ``define``, ``start`` (libvirt start returned: qemu is up and
running vCPUs), ``firmware`` (start returned -> guest kernel clock zero, i.e. firmware and kernel
decompression), ``kernel`` (-> initramfs /init), ``initramfs`` (-> switch_root), ``agent``
(-> agent ready frame received), ``ready`` (create end -> agent ready), ``boot_total``, and
``destroy`` (destroy() called -> the qemu process has exited: the guest holds no CPU or memory).

Teardown skips a graceful guest shutdown: the overlay is thrown away, so there is nothing for the
guest to flush, and virDomainDestroy's SIGTERM makes qemu exit within milliseconds. What is slow is
libvirt's bookkeeping after that: qemu is double-forked, so its parent is PID 1, and libvirt polls
kill(pid, 0) every 200 ms until PID 1 has *reaped* it (this CI machine's init reaps orphans about
1.8 s late). So destroy() returns once the qemu process itself has exited (a pidfd taken at start
says so, without polling and without pid-reuse races) and the rest (reaping, cgroups, undefine,
log and overlay removal) finishes on a background thread the driver owns; ``close()``, ``gc()``
and a create() reusing the name wait for it, so nothing outlives the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import libvirt
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
from isobench.drivers.guest.boot import wait_for_agent
from isobench.drivers.guest.datadisk import make_guest_data_disk, untraversable_parent
from isobench.drivers.guest.image import make_overlay
from isobench.drivers.guest.launcher import checked_guest, guest_metadata
from isobench.drivers.guest.memory import reserve_host_memory
from isobench.drivers.guest.options import GuestOptions
from isobench.drivers.guest.phases import record_boot
from isobench.drivers.guest.sandbox import GuestSandbox
from isobench.drivers.naming import safe_chars as _safe
from isobench.drivers.vm.cgroups import remove_guest_cgroups
from isobench.drivers.vm.domain import (
    DomainConfig,
    agent_socket_of,
    domain_xml,
    owner_of,
)
from isobench.drivers.vm.hypervisor import QEMU, QEMU_MICROVM, hypervisor_for_uri
from isobench.drivers.vm.network import RunNetwork, lv_msg, remove_network
from isobench.errors import DriverUnavailable, GcIncomplete, SandboxError, UsageError

log = logging.getLogger(__name__)

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions

__all__ = ["VmDriver", "VmSandbox"]

PREFIX = "isobench"

#: Why a xen:// or esx:// URI does not run (the same API reaches them; see hypervisor.py).
NOT_MEASURED = "only KVM/TCG is measured here; the XML for Xen/ESXi is generated and validated but not run"


class VmSandbox(GuestSandbox):
    """A libvirt domain booted into the agent; exec and stats are the guest core's."""

    def __init__(
        self,
        driver: VmDriver,
        spec: SandboxSpec,
        dom: libvirt.virDomain,
        channel: AgentChannel,
        ready: AgentReady,
        clock: PhaseClock,
        files: list[Path],
        address: str | None,
        memavail_before_kib: int,
        pidfd: int | None = None,
    ) -> None:
        super().__init__(
            spec,
            channel,
            ready,
            clock,
            address=address,
            proc_root=driver.host.proc,
            memavail_before_kib=memavail_before_kib,
        )
        self._driver = driver
        self._dom = dom
        self._files = files
        self._pidfd = pidfd

    @property
    def domain_name(self) -> str:
        return str(self._dom.name())

    def qemu_pid(self) -> int | None:
        return self._driver.qemu_pid(self.domain_name)

    def _stop(self) -> None:
        self._channel.close()
        try:
            self._driver.retire(self._dom, self._files, self._pidfd)
        finally:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None


@dataclass(frozen=True)
class VmOptions(GuestOptions):
    #: The libvirt connection (default: the host probe's, qemu:///system).
    uri: str | None = None


class VmDriver:
    name: ClassVar[str] = "vm"
    description: ClassVar[str] = "libvirt/QEMU guests (KVM when it works, else TCG), direct kernel boot"
    capabilities: ClassVar[Capabilities] = Capabilities.vm(order=40, layer_stack=LayerStackKind.QCOW2_CHAIN)
    options_type: ClassVar[type[DriverOptions]] = VmOptions
    #: gc(None) leaves guests, networks and dirs of live runs (``ctx.sparing``) alone.
    spares_live_runs: ClassVar[bool] = True

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        self.host = ctx.host
        self.opts = VmOptions.parse(self.name, ctx.options)
        self.uri: str = self.opts.uri or ctx.host.libvirt_uri
        self.hypervisor = hypervisor_for_uri(self.uri)
        if self.opts.kernel == "micro" and self.hypervisor == QEMU:
            # The micro guest boots on microvm, its devices on virtio-mmio (hypervisor.py).
            self.hypervisor = QEMU_MICROVM
        self.run_id = _safe(ctx.run_id)
        self._conn: libvirt.virConnect | None = None
        self.accel = AccelChoice("vm", self.opts.accel, self._probe_accel)
        self._net = RunNetwork(self.conn, self.run_id, PREFIX)
        #: Teardowns still finishing libvirt's bookkeeping, by domain name (see the module doc).
        self._pending: dict[str, threading.Thread] = {}
        #: Domains a teardown could not destroy or undefine (close() reports them).
        self._left: list[str] = []

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self._ctx.state_dir / "vm-runs"

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / f"{PREFIX}-{self.run_id}"

    def conn(self) -> libvirt.virConnect:
        if self._conn is None:
            hv = self.hypervisor
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as err:
                if not hv.measured:
                    raise DriverUnavailable(f"drivers.vm.uri={self.uri}: {NOT_MEASURED}") from err
                raise DriverUnavailable(
                    f"cannot connect to libvirt at {self.uri}: {lv_msg(err)}; start it (`virtlogd -d; libvirtd -d`)"
                    " or set drivers.vm.uri"
                ) from err
            if not hv.measured:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
                raise DriverUnavailable(
                    f"{self.uri} answers, but isobench cannot run {hv.title} guests yet: {hv.not_run_because}"
                )
            self._conn = conn
        return self._conn

    def qemu_pid(self, domain: str) -> int | None:
        try:
            return int((self.host.libvirt_run / f"{domain}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    # -- accelerator ------------------------------------------------------------------------
    def _probe_accel(self) -> AccelProbe:
        if self.uri.startswith("test:"):  # libvirt's test driver runs no guest: nothing to probe
            kvm = self.opts.accel == "kvm"
            return AccelProbe(kvm, "kvm" if kvm else "tcg", "libvirt's test driver runs no guest")
        return probe_accel(self._ctx.state_dir, host=self.host)

    # -- protocol ---------------------------------------------------------------------------
    def probed_capabilities(self) -> Capabilities:
        return self.capabilities.with_accel(self.accel())

    def availability(self) -> Availability:
        try:
            conn = self.conn()
            img, boot = checked_guest(self._ctx.state_dir, self.opts)
            details = self.accel.details()
        except (DriverUnavailable, UsageError) as err:
            return Availability(ok=False, reason=str(err))
        details.update(
            uri=self.uri,
            image=img.digest,
            hypervisor=conn.getType(),
            kernel_flavour=boot.flavour,
            machine=self.hypervisor.machine,
        )
        return Availability(ok=True, details=details)

    def metadata(self) -> Mapping[str, Any]:
        md = guest_metadata(self.accel, self._ctx.state_dir, self.opts)
        md["uri"] = self.uri
        md["cpu_model"] = self.opts.cpu_model or ("qemu64" if md["accel"] == "tcg" else "host-model")
        with contextlib.suppress(DriverUnavailable, libvirt.libvirtError):
            md["libvirt_version"] = self.conn().getLibVersion()
            md["hypervisor_version"] = self.conn().getVersion()
        md["machine"] = self.hypervisor.machine
        return md

    def _cmdline(self, accel: str) -> str:
        """microvm has no HPET or PM timer: under TCG a guest must be told its TSC rate (the host's;
        see host_tsc_khz), or it may fail to calibrate it on a loaded host and hang."""
        khz = host_tsc_khz(self.host.proc, self.host.sys)
        if self.hypervisor.machine == "microvm" and accel == "tcg" and khz is not None:
            return f"{self.opts.cmdline} {tcg_tsc_args(khz)}"
        return self.opts.cmdline

    def create(self, spec: SandboxSpec) -> VmSandbox:
        clock = PhaseClock()
        t_create = time.monotonic_ns()
        img, boot = checked_guest(self._ctx.state_dir, self.opts, spec)
        if spec.volume is not None:
            closed = untraversable_parent(spec.volume)
            if closed is not None:
                raise UsageError(
                    f"libvirt's qemu user cannot reach the volume {spec.volume}: {closed} is not"
                    " searchable by others (chmod o+x, or put the volume under /var/lib/isobench)"
                )
        accel = self.accel()
        conn = self.conn()
        avail = reserve_host_memory(spec.name, spec.memory_mib, self.host.proc)
        name = f"{PREFIX}-{self.run_id}-{_safe(spec.name)}"
        self._wait_pending(name)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for d in (self._ctx.state_dir, self.runs_dir, self.run_dir):
            d.chmod(0o755)
        (self.run_dir / "owner").write_text(f"{os.getpid()}\n")
        overlay = self.run_dir / f"{_safe(spec.name)}.qcow2"
        console = self.run_dir / f"{_safe(spec.name)}.console.log"
        files = [overlay, console, self.host.libvirt_log / f"{name}.log"]
        dom: libvirt.virDomain | None = None
        channel: AgentChannel | None = None
        pidfd: int | None = None
        try:
            make_overlay(img, overlay, template_dir=self._ctx.state_dir / "guest")
            net, address = self._net.attach() if spec.network else (None, None)
            data_disk = make_guest_data_disk(
                spec,
                clock,
                leaf=f"{self.run_id}-{_safe(spec.name)}",
                layers_path=self.run_dir / f"{_safe(spec.name)}.layers.qcow2",
                size_mib=self.opts.data_disk_mib,
            )
            if data_disk is not None:
                files.append(data_disk)
            cfg = DomainConfig.for_spec(
                name,
                spec,
                img,
                accel=accel,
                cmdline=self._cmdline(accel),
                cpu_model=self.opts.cpu_model,
                data_disk=data_disk,
                data_format="raw" if spec.layers is None else "qcow2",
                data_chain=() if spec.layers is None else spec.layers.chain,
                ip=None if address is None else f"{address}/24",
                boot=boot,
                overlay=overlay,
                backing=img.disk,
                console_log=console,
                cpuset=spec.cpuset,
                net=net,
                title=f"isobench guest {spec.name}",
                description=f"isobench run_id={self.run_id} pid={os.getpid()}",
                hypervisor=self.hypervisor,
                # libvirt picks the socket for qemu; libxl needs one given
                agent_socket=self.run_dir / f"{_safe(spec.name)}.agent.sock"
                if self.hypervisor.agent == "xen"
                else None,
            )
            with clock.phase("define"):
                try:
                    dom = conn.defineXML(domain_xml(cfg))
                except libvirt.libvirtError as err:
                    raise SandboxError(f"libvirt rejected the domain {name}: {lv_msg(err)}") from err
            with clock.phase("start"):
                try:
                    dom.create()
                except libvirt.libvirtError as err:
                    raise SandboxError(f"libvirt could not start {name}: {lv_msg(err)}") from err
            t_started = time.monotonic_ns()
            clock.add("create", t_create, t_started)
            pidfd = self._pidfd(name)
            try:
                agent_socket = agent_socket_of(name, dom.XMLDesc())
            except libvirt.libvirtError as err:  # libvirtd died right after starting it
                raise SandboxError(f"libvirt lost {name} as it started: {lv_msg(err)}") from err
            channel, ready, ready_ns = wait_for_agent(
                agent_socket, self.opts.boot_timeout, guest=name, console=console
            )
            record_boot(clock, t_create, t_started, ready, ready_ns)
            return VmSandbox(self, spec, dom, channel, ready, clock, files, address, avail, pidfd)
        except BaseException:
            if channel is not None:
                channel.close()
            if pidfd is not None:
                os.close(pidfd)
            self.teardown(dom, files)
            raise

    def _pidfd(self, domain: str) -> int | None:
        """A pidfd on the domain's qemu (taken while it surely runs), or None if unavailable."""
        pid = self.qemu_pid(domain)
        if pid is None:
            return None
        try:
            return os.pidfd_open(pid)
        except OSError as err:
            log.debug("no pidfd for %s (pid %d): %s", domain, pid, err)
            return None

    def retire(self, dom: libvirt.virDomain, files: Sequence[Path], pidfd: int | None) -> None:
        """Destroy ``dom`` and return once its qemu has exited; libvirt finishes in the background.

        The teardown thread starts first, so it is libvirt that stops qemu (SIGTERM, SIGKILL after
        10 s); this only waits on the pidfd for qemu's exit. Without a pidfd, or if qemu outlives
        ``shutdown_timeout``, it waits for the whole teardown instead.
        """
        self._reap_finished()
        name = str(dom.name())
        thread = threading.Thread(target=self._teardown_logged, args=(dom, files), name=f"{name}-teardown")
        thread.start()
        self._pending[name] = thread
        if pidfd is not None:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if poller.poll(int(self.opts.shutdown_timeout * 1000)):
                return
            log.warning(
                "qemu of %s still runs %.0fs after destroy; waiting for libvirt",
                name,
                self.opts.shutdown_timeout,
            )
        thread.join()

    def _teardown_logged(self, dom: libvirt.virDomain, files: Sequence[Path]) -> None:
        try:
            self.teardown(dom, files)
        except Exception:  # an exception in a thread would vanish: keep the evidence in the log
            log.exception("background teardown of a vm sandbox failed (run `isobench gc`)")

    def _reap_finished(self) -> None:
        for name, thread in list(self._pending.items()):
            if not thread.is_alive():
                del self._pending[name]

    def _wait_pending(self, name: str | None = None) -> None:
        """Block until the background teardown of ``name`` (or of every sandbox) has finished."""
        for n, thread in list(self._pending.items()):
            if name is None or n == name:
                thread.join()
                del self._pending[n]

    def teardown(self, dom: libvirt.virDomain | None, files: Sequence[Path]) -> None:
        """Destroy and undefine ``dom`` and remove its files; never raises for missing pieces."""
        if dom is not None and self._destroy(dom):
            try:
                dom.undefine()
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    log.warning("undefining %s failed: %s", dom.name(), lv_msg(err))
                    self._left.append(f"domain {dom.name()}: undefine failed: {lv_msg(err)}")
        for f in files:
            with contextlib.suppress(OSError):
                f.unlink(missing_ok=True)

    def _destroy(self, dom: libvirt.virDomain) -> bool:
        """Stop ``dom``; False when libvirt no longer knows it (nothing left to undefine either).

        A domain can go between our look and our destroy: it stopped meanwhile ("domain is not
        running") or was already removed ("Domain not found", e.g. a guest that powered itself off
        as a transient domain, or a gc of the same run). Both are the state teardown wants, not a
        failure; only a domain that still runs after a failed destroy is left behind."""
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                log.debug("%s was already gone at teardown", dom.name())
                return False
            if _still_active(dom):
                log.warning("destroying %s failed: %s", dom.name(), lv_msg(err))
                self._left.append(f"domain {dom.name()}: destroy failed: {lv_msg(err)}")
            else:
                log.debug("%s stopped before its destroy: %s", dom.name(), lv_msg(err))
        return True

    def close(self) -> None:
        """Remove the run's network and directory (after its sandboxes are destroyed). Raises
        SandboxError when a teardown failed (libvirtd gone mid-run): then the domain is still
        defined, the run's state must stay for ``isobench gc``, and the run dir with it."""
        self._wait_pending()
        left, self._left = self._left, []
        if left:
            raise SandboxError(f"vm sandboxes left behind: {'; '.join(left)}; run `isobench gc`")
        remove_network(self.conn, f"{PREFIX}-{self.run_id}")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    # -- gc ---------------------------------------------------------------------------------
    def gc(self, run_id: str | None = None) -> list[str]:
        """Remove domains, networks, overlays and logs of ``run_id``, or of every dead run (whose
        owner pid is gone, and which is no live run of ``ctx.sparing``)."""
        self._wait_pending()  # our own sandboxes' teardowns would otherwise race gc's
        conn = self.conn()
        gone: list[str] = []
        want = _safe(run_id) if run_id is not None else None

        def owned(rid: str, pid: int | None, what: str) -> bool:
            if want is not None:
                return rid == want
            if self._ctx.sparing.spares(what, lambda live: _safe(live) == rid):
                return False
            return pid is None or not (self.host.proc / str(pid)).exists()

        runs: set[str] = set()
        for dom in conn.listAllDomains():
            name = str(dom.name())
            if not name.startswith(f"{PREFIX}-"):
                continue
            try:
                rid, pid = owner_of(dom.XMLDesc())
            except libvirt.libvirtError:
                continue
            if rid is None:
                if name.startswith(f"{PREFIX}-probe-") and want is None:
                    rid, pid = "probe", _int(name.rsplit("-", 1)[-1])
                else:
                    continue
            if not owned(rid, pid, f"domain {name}"):
                continue
            self.teardown(dom, [self.host.libvirt_log / f"{name}.log"])
            gone.append(f"domain {name}")
            runs.add(rid)
        for net in conn.listAllNetworks():
            name = str(net.name())
            if name.startswith(f"{PREFIX}-"):
                rid = name.removeprefix(f"{PREFIX}-")
                if owned(rid, _owner_pid(self.runs_dir / name), f"network {name}") and remove_network(
                    self.conn, name
                ):
                    gone.append(f"network {name}")
        if self.runs_dir.is_dir():
            for d in self.runs_dir.iterdir():
                rid = d.name.removeprefix(f"{PREFIX}-")
                if d.name.startswith(f"{PREFIX}-") and owned(rid, _owner_pid(d), f"dir {d}"):
                    if rid == self.run_id and want is None:
                        continue  # our own live run
                    shutil.rmtree(d, ignore_errors=True)
                    gone.append(f"dir {d}")
        left, self._left = self._left, []
        if want is not None:  # what a libvirtd killed mid-teardown left of guests it forgot
            removed, stuck = remove_guest_cgroups(self.host.path("/sys/fs/cgroup"), f"{PREFIX}-{want}-")
            gone, left = gone + removed, left + stuck
        if left:
            raise GcIncomplete(gone, left)
        return gone


def _still_active(dom: libvirt.virDomain) -> bool:
    """Whether ``dom`` still runs; True when libvirt cannot say (its connection is gone)."""
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError as err:
        return bool(err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN)


def _int(s: str) -> int | None:
    return int(s) if s.isdigit() else None


def _owner_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "owner").read_text().strip())
    except (OSError, ValueError):
        return None
