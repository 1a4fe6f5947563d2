"""The ``container`` driver: isobench's own runtime (namespaces + cgroups + overlayfs, no runc).

Python owns the resources (cgroup, overlay directories, veth, the live record); the native helper
does clone, mounts, pivot_root, hardening and exec, and reports CLOCK_MONOTONIC stamps over a pipe.
A sandbox is a tiny init (pid 1 of its pid namespace) that :meth:`ContainerSandbox.exec` enters
with setns; :meth:`ContainerDriver.run_cold` starts one command as pid 1 and tears down, for
start-up benchmarks.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import platform
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.base import (
    Availability,
    Capabilities,
    DriverContext,
    ExecResult,
    OptionTypes,
    PhaseClock,
    SandboxBase,
    SandboxSpec,
    SandboxStats,
)
from isobench.drivers.container import names as naming
from isobench.drivers.container.cgroups import Cgroup, V1Manager, V2Manager, open_manager
from isobench.drivers.container.config import (
    DEFAULT_NAMESPACES,
    DRIVER_OPTIONS,
    SANDBOX_OPTIONS,
    ContainerConfig,
    config_from_spec,
)
from isobench.drivers.container.helper import ensure_helper, helper_key
from isobench.drivers.container.network import VethPair, delete_link, list_links, setup_veth
from isobench.drivers.container.report import HelperReport, parse_report
from isobench.drivers.container.state import (
    Record,
    current_owner,
    kill_recorded_init,
    load_records,
    owner_alive,
    process_start_time,
    records_dir,
)
from isobench.errors import CellTimeout, IsobenchError, SandboxError
from isobench.model import PhaseTiming
from isobench.mounts import find_mounts, umount

log = logging.getLogger(__name__)

__all__ = ["ColdRun", "ContainerDriver", "ContainerSandbox"]

#: Writable directory inside every container, on its overlay upper layer.
WORKDIR = "/isobench-work"
DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
_START_TIMEOUT_S = 30.0
_SEQ = itertools.count()


@dataclass(frozen=True)
class ColdRun:
    """One command run cold: its result and every phase from the driver's call to teardown."""

    result: ExecResult
    phases: tuple[PhaseTiming, ...]

    @property
    def start_to_exit_s(self) -> float:
        """Driver call to the command's exit (teardown excluded)."""
        return (self.result.end_ns - self.result.start_ns) / 1e9

    def phase(self, name: str) -> PhaseTiming | None:
        return next((p for p in self.phases if p.name == name), None)


@dataclass
class _Resources:
    """Everything one container owns, filled in as it is made; ``release`` undoes what is there."""

    names: naming.ContainerNames
    record: Record | None = None
    record_path: Path | None = None
    base_dir: Path | None = None
    cgroup: Cgroup | None = None
    monitor: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    veth: VethPair | None = None
    errors: list[str] = field(default_factory=list)

    def _step(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (OSError, IsobenchError, subprocess.SubprocessError) as err:
            self.errors.append(f"{what}: {err}")
            log.warning("teardown of %s: %s: %s", self.names.ident, what, err)

    def release(self) -> None:
        """Tear down in reverse order; every step runs even if an earlier one failed."""
        if self.pidfd is not None:
            self._step("kill init", lambda: _pidfd_kill(self.pidfd))
        if self.monitor is not None:
            self._step("reap helper", lambda: _reap(self.monitor))
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if self.cgroup is not None:
            self._step("remove cgroup", self.cgroup.remove)
        veth = self.veth
        if veth is not None:
            self._step("delete veth", lambda: delete_link(veth.host))
        if self.base_dir is not None:
            self._step("remove overlay dirs", lambda: _rmtree(self.base_dir))
        record_path = self.record_path
        if record_path is not None and not self.errors:
            # Kept when anything failed above, so a later gc() still knows what to look for.
            self._step("remove record", lambda: record_path.unlink(missing_ok=True))
        self.monitor = None
        self.cgroup = None
        self.veth = None
        self.base_dir = None
        self.record_path = None


def _pidfd_kill(pidfd: int | None) -> None:
    if pidfd is None:
        return
    with contextlib.suppress(ProcessLookupError):  # already gone
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)


def _reap(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _rmtree(path: Path | None) -> None:
    if path is not None and path.exists():
        shutil.rmtree(path)


def _read_all(fd: int, deadline: float) -> str:
    """Read a pipe to EOF, giving up at ``deadline`` (monotonic seconds)."""
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxError(f"container helper did not finish setup within {_START_TIMEOUT_S:.0f}s")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        data = os.read(fd, 65536)
        if not data:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(data)


class ContainerSandbox(SandboxBase):
    """A running container: a tiny init as pid 1; commands enter it with setns."""

    kind = "container"

    def __init__(
        self,
        spec: SandboxSpec,
        config: ContainerConfig,
        helper: Path,
        res: _Resources,
        init_pid: int,
        clock: PhaseClock,
    ) -> None:
        super().__init__(spec, clock)
        self._config = config
        self._helper = helper
        self._res = res
        self._init_pid = init_pid

    @property
    def ident(self) -> str:
        """The name of its cgroup and directories (``isobench-<run>-ctr-<name>-<n>``)."""
        return self._res.names.ident

    @property
    def init_pid(self) -> int:
        """Host pid of the container's pid 1."""
        return self._init_pid

    @property
    def upper_dir(self) -> Path:
        assert self._res.base_dir is not None, "sandbox destroyed"
        return self._res.base_dir / "upper"

    @property
    def workdir(self) -> str:
        return WORKDIR

    @property
    def address(self) -> str | None:
        return str(self._res.veth.container_ip) if self._res.veth else None

    @property
    def host_address(self) -> str | None:
        """The host end of the veth (what the container reaches the host at)."""
        return str(self._res.veth.host_ip) if self._res.veth else None

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        cwd: str | None = None,
    ) -> ExecResult:
        self._check_exec(argv)
        cmd = [str(self._helper), "exec", "--pid", str(self._init_pid), "--ns", self._config.ns_arg]
        cmd += _cgroup_args(self._res.cgroup)
        if self._config.hardening:
            cmd.append("--harden")
        cmd += ["--cwd", cwd or WORKDIR]
        result, _ = _run_helper(
            cmd, list(argv), timeout=timeout, env={**DEFAULT_ENV, **(env or {})}, stdin=stdin
        )
        return result

    def stats(self) -> SandboxStats:
        cg = self._res.cgroup
        return (
            SandboxStats.from_dict(cg.stats()) if cg is not None and not self._destroyed else SandboxStats()
        )

    def _teardown(self) -> list[str]:
        self._res.release()
        return list(self._res.errors)


def _run_helper(
    cmd: list[str],
    argv: list[str],
    *,
    timeout: float,
    env: Mapping[str, str],
    stdin: bytes | None,
) -> tuple[ExecResult, HelperReport]:
    """Run the helper with the command's stdio captured and its setup errors on a report pipe."""
    r, w = os.pipe()
    start = time.monotonic_ns()
    try:
        proc = subprocess.Popen(
            [*cmd[:2], "--report-fd", str(w), *cmd[2:], "--", *argv],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            pass_fds=(w,),
            start_new_session=True,
        )
    except OSError as err:
        os.close(r)
        os.close(w)
        raise SandboxError(f"cannot start container helper {cmd[0]}: {err}") from err
    os.close(w)
    try:
        try:
            out, err_out = proc.communicate(input=stdin, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            _killpg(proc)
            raise CellTimeout(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from err
        except BaseException:
            _killpg(proc)
            raise
        end = time.monotonic_ns()
        report = parse_report(_read_all(r, time.monotonic() + 5))
    finally:
        os.close(r)
    if report.error:
        raise SandboxError(f"cannot run {argv[0]} in the container: {report.error}")
    result = ExecResult(
        argv=tuple(argv),
        exit_code=proc.returncode,
        stdout=out.decode(errors="replace"),
        stderr=err_out.decode(errors="replace"),
        start_ns=start,
        end_ns=end,
    )
    return result, report


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    """Stop a helper and everything it started.

    SIGTERM first: the helper SIGKILLs its in-container child and reaps it, so no zombie of the
    container's pid namespace ends up waiting on the host's init. Then SIGKILL the whole group.
    """
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


class ContainerDriver:
    name: ClassVar[str] = "container"
    description: ClassVar[str] = (
        "isobench's own containers: namespaces, cgroups, overlayfs root, pivot_root, seccomp"
    )
    option_types: ClassVar[OptionTypes] = {**DRIVER_OPTIONS, **SANDBOX_OPTIONS}
    capabilities: ClassVar[Capabilities] = Capabilities.container(order=10, switchable_hardening=True)

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        self._helper_path: Path | None = None
        self._manager: V1Manager | V2Manager | None = None

    # ---------------------------------------------------------------------------- plumbing

    def helper(self) -> Path:
        if self._helper_path is None:
            self._helper_path = ensure_helper(self._ctx.state_dir)
        return self._helper_path

    def cgroups(self) -> V1Manager | V2Manager:
        if self._manager is None:
            self._manager = open_manager(parent=str(self._ctx.options.get("cgroup_parent", "")))
        return self._manager

    def _image_root(self, spec: SandboxSpec) -> Path:
        if spec.image is not None:
            return spec.image
        from isobench.images import find_image

        return find_image(self._ctx.state_dir).rootfs

    def availability(self) -> Availability:
        if os.geteuid() != 0:
            return Availability(False, "the container driver needs root (cgroups, mounts); run as root")
        if "overlay" not in Path("/proc/filesystems").read_text():
            return Availability(False, "overlayfs is not available; load the overlay kernel module")
        try:
            mode = self.cgroups().mode
            self.helper()
        except (IsobenchError, OSError) as err:
            return Availability(False, str(err))
        return Availability(True, details={"cgroup_mode": mode})

    def probed_capabilities(self) -> Capabilities:
        return self.capabilities

    def metadata(self) -> Mapping[str, Any]:
        try:
            mode: str = self.cgroups().mode
        except IsobenchError:
            mode = "unknown"
        return {
            "isolation": "namespaces+cgroups+overlayfs",
            "runtime": "isobench-ctr",
            "helper": helper_key(),
            "cgroup_mode": mode,
            "default_namespaces": list(DEFAULT_NAMESPACES),
            "hardening": "caps=OCI default, no_new_privs, masked/ro paths, seccomp denylist",
            "kernel": platform.release(),
            "volume": "bind mount of a host directory at /data",
        }

    # ---------------------------------------------------------------------------- life cycle

    def _prepare(self, spec: SandboxSpec, clock: PhaseClock) -> tuple[ContainerConfig, _Resources]:
        """Config, record, cgroup and overlay directories. On failure nothing is left."""
        config = config_from_spec(spec, self._image_root(spec))
        self.helper()  # build before any resource exists: a missing compiler leaves nothing behind
        with clock.phase("overlay_dirs"):
            names, base = self._claim(spec)
            res = _Resources(names=names, base_dir=base)
            try:
                for sub in ("upper", "work", "merged"):
                    (base / sub).mkdir()
                # The sandbox's workdir sits in the upper layer from the start: on its own storage.
                (base / "upper" / WORKDIR.lstrip("/")).mkdir()
            except BaseException:
                res.release()
                raise
        try:
            owner_pid, owner_start = current_owner()
            records_dir(self._ctx.state_dir).mkdir(parents=True, exist_ok=True)
            res.record = Record(
                ident=names.ident,
                run_id=self._ctx.run_id,
                owner_pid=owner_pid,
                owner_start=owner_start,
                dir=str(base),
                cgroup=names.ident if config.limits is not None else None,
                veth=names.veth_host if config.network else None,
            )
            res.record_path = res.record.write(self._ctx.state_dir)
            if config.limits is not None:
                with clock.phase("cgroup"):
                    res.cgroup = self.cgroups().create(names.ident, config.limits)
        except BaseException:
            res.release()
            raise
        return config, res

    def _claim(self, spec: SandboxSpec) -> tuple[naming.ContainerNames, Path]:
        """Pick unused names by creating the container's directory: mkdir is atomic, so two runner
        processes of one run can never end up sharing a cgroup, directory or veth name."""
        self._ctx.work_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(10_000):
            names = naming.names_for(self._ctx.run_id, spec.name, next(_SEQ))
            base = self._ctx.work_dir / names.ident
            try:
                base.mkdir()
            except FileExistsError:
                continue
            return names, base
        raise SandboxError(f"no free container name for {spec.name} in {self._ctx.work_dir}; run gc")

    def _helper_args(
        self, mode: str, config: ContainerConfig, res: _Resources, spec: SandboxSpec
    ) -> list[str]:
        assert res.base_dir is not None
        base = res.base_dir
        args = [str(self.helper()), mode, "--ns", config.ns_arg, "--hostname", config.hostname]
        for lower in config.lowers:
            args += ["--lower", str(lower)]
        args += [
            "--upper",
            str(base / "upper"),
            "--work",
            str(base / "work"),
            "--merged",
            str(base / "merged"),
        ]
        if config.volume is not None:
            args += ["--volume", str(config.volume)]
        args += _cgroup_args(res.cgroup)
        if config.hardening:
            args.append("--harden")
        if config.uid_map is not None:
            args += ["--uid-map", config.uid_map]
        if config.gid_map is not None:
            args += ["--gid-map", config.gid_map]
        return args

    def create(self, spec: SandboxSpec) -> ContainerSandbox:
        clock = PhaseClock()
        t0 = time.monotonic_ns()
        config, res = self._prepare(spec, clock)
        try:
            args = self._helper_args("init", config, res, spec)
            assert res.base_dir is not None
            r, w = os.pipe()
            spawn_ns = time.monotonic_ns()
            try:
                with open(res.base_dir / "helper.log", "wb") as log_fh:
                    res.monitor = subprocess.Popen(
                        [args[0], args[1], "--report-fd", str(w), *args[2:]],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=log_fh,
                        pass_fds=(w,),
                        start_new_session=True,
                    )
            finally:
                os.close(w)
            try:
                report = parse_report(_read_all(r, time.monotonic() + _START_TIMEOUT_S))
            finally:
                os.close(r)
            if report.container_pid is not None:
                # A pidfd pins the identity: the kill at teardown can never hit a recycled pid.
                with contextlib.suppress(ProcessLookupError):
                    res.pidfd = os.pidfd_open(report.container_pid)
            if report.error or not report.ready or report.container_pid is None:
                raise SandboxError(f"container {spec.name} failed to start: {self._why(report, res)}")
            _add_helper_phases(clock, report, spawn_ns)
            if res.record is not None:
                pid = report.container_pid
                res.record = replace(res.record, init_pid=pid, init_start=process_start_time(pid))
                res.record.write(self._ctx.state_dir)
            if config.network:
                with clock.phase("veth"):
                    res.veth = setup_veth(
                        self.helper(),
                        report.container_pid,
                        res.names.veth_host,
                        res.names.veth_peer,
                        self._ctx.state_dir / "container" / "net.lock",
                    )
            now = time.monotonic_ns()
            clock.add("create", t0, now)
            clock.add("ready", now, now)
            return ContainerSandbox(spec, config, self.helper(), res, report.container_pid, clock)
        except BaseException:
            res.release()
            raise

    @staticmethod
    def _why(report: HelperReport, res: _Resources) -> str:
        if report.error:
            return report.error
        text = ""
        if res.base_dir is not None and (res.base_dir / "helper.log").exists():
            text = (res.base_dir / "helper.log").read_text(errors="replace").strip()
        return text or "the helper exited without reporting; see the kernel log (dmesg)"

    def run_cold(self, spec: SandboxSpec, argv: Sequence[str], *, timeout: float = 60.0) -> ColdRun:
        """Start ``argv`` as pid 1 of a fresh container, wait for it, tear everything down.

        ``result.start_ns`` is the driver call and ``result.end_ns`` the command's exit as the
        helper saw it, so teardown is not part of the start-up figure (it is its own phase).
        """
        clock = PhaseClock()
        t0 = time.monotonic_ns()
        config, res = self._prepare(spec, clock)
        try:
            args = self._helper_args("run", config, res, spec)
            spawn_ns = time.monotonic_ns()
            result, report = _run_helper(args, list(argv), timeout=timeout, env=DEFAULT_ENV, stdin=None)
        except BaseException:
            res.release()
            raise
        with clock.phase("destroy"):
            res.release()
        if res.errors:
            raise SandboxError(f"teardown of {spec.name} incomplete: {'; '.join(res.errors)}")
        _add_helper_phases(clock, report, spawn_ns)
        end = report.exited_ns or result.end_ns
        if report.exec_ns is not None:
            clock.add("exec", report.exec_ns, end)
        clock.add("create", t0, report.exec_ns or end)
        clock.add("total", t0, end)
        return ColdRun(
            result=ExecResult(
                argv=result.argv,
                exit_code=result.exit_code,
                stdout=result.stdout,
                stderr=result.stderr,
                start_ns=t0,
                end_ns=end,
            ),
            phases=tuple(sorted(clock.phases, key=lambda p: p.start_ns)),
        )

    # ---------------------------------------------------------------------------- recovery

    def close(self) -> None:
        # Every sandbox owns its cgroup, mounts and veth, and destroy() removed them.
        pass

    def gc(self, run_id: str | None = None) -> list[str]:
        """Remove containers of dead runners: by record first, then anything matching by name."""
        removed: list[str] = []
        live_idents: set[str] = set()
        live_veths: set[str] = set()
        for path, rec in load_records(self._ctx.state_dir):
            if run_id is not None and rec.run_id != run_id:
                continue
            if owner_alive(rec):
                live_idents.add(rec.ident)
                if rec.veth:
                    live_veths.add(rec.veth)
                continue
            res = _Resources(
                names=naming.ContainerNames(rec.ident, "", rec.veth or "", ""),
                record_path=path,
                base_dir=Path(rec.dir),
            )
            kill_recorded_init(rec)
            if rec.cgroup:
                res.cgroup = self._open_cgroup(rec.cgroup)
            if rec.veth:
                delete_link(rec.veth)
            res.release()
            removed.append(rec.ident)

        def stray(name: str) -> bool:
            return naming.matches(name, run_id) and name not in live_idents

        try:
            manager: V1Manager | V2Manager | None = self.cgroups()
        except IsobenchError:
            manager = None
        if manager is not None:
            for name in manager.find(stray):
                manager.open(name).remove()
                removed.append(f"cgroup {name}")
        # Container mounts live in private mount namespaces; any on the host is a bug's leftover.
        for point in find_mounts(stray):
            umount(Path(point))
            removed.append(f"mount {point}")
        for link in list_links(naming.veth_run_prefix(run_id)):
            if link not in live_veths and delete_link(link):
                removed.append(f"veth {link}")
        if self._ctx.work_dir.is_dir():
            for d in self._ctx.work_dir.iterdir():
                if d.is_dir() and stray(d.name):
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(f"dir {d}")
        return removed

    def _open_cgroup(self, name: str) -> Cgroup | None:
        try:
            return self.cgroups().open(name)
        except IsobenchError:
            return None


def _cgroup_args(cg: Cgroup | None) -> list[str]:
    if cg is None:
        return []
    own = cg.self_attach_files
    if own:
        return [a for f in own for a in ("--cgroup-tasks", str(f))]
    return [a for f in cg.procs_files for a in ("--cgroup-procs", str(f))]


def _add_helper_phases(clock: PhaseClock, report: HelperReport, spawn_ns: int) -> None:
    if report.started_ns is not None:
        clock.add("spawn", spawn_ns, report.started_ns)
    for p in report.phases:
        clock.add(p.name, p.start_ns, p.end_ns)
