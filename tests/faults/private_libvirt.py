"""A private libvirtd (with its virtlogd) for the fault suite, isolated from the host's.

The host's libvirtd is shared with every other run on this machine, so the fault suite kills this
one instead: the same binary and qemu driver, privileged, in a mount namespace of its own where a
tmpfs covers every place a privileged libvirtd keeps state: ``/run/libvirt`` (= ``/var/run/libvirt``:
sockets, domain status, qemu pid files, virtlogd's socket), ``/var/lib/libvirt`` (monitor sockets),
``/var/cache/libvirt`` (seeded with the host's qemu capabilities cache, so start-up does not probe
qemu again), ``/var/log/libvirt`` and ``/etc/libvirt`` (no host domain, network or pool definition
to autostart or adopt). Its pid files are private too (``--pid-file``: the default
``/run/libvirtd.pid`` is the host daemon's), and its sockets are in a host-visible directory
(``unix_sock_dir`` in its own libvirtd.conf), reached as ``qemu+unix:///system?socket=...``.

A process that must see the daemon's files (the runner reads a guest's qemu pid from
``/run/libvirt/qemu``, gc removes its logs) runs in that namespace through :meth:`enter`, as it
would on a host where this libvirtd were the only one. The daemons run in their own sessions (a
Ctrl-C of the test reaches the test, whose finalizer stops them in order) with a parent-death
signal (a test process killed outright takes them along; guests it leaves outlive it, as guests
outlive libvirtd).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import libvirt

__all__ = ["PrivateLibvirt"]

#: What a privileged libvirtd 9 writes outside its config (``/var/run`` is ``/run`` on Debian).
STATE_DIRS = ("/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt", "/etc/libvirt")
HOST_QEMU_CACHE = Path("/var/cache/libvirt/qemu")
_HOLDER = """
set -e
for d in "$@"; do
    [ -d "$d" ] || mkdir -p "$d"
    mount -t tmpfs -o mode=0755 isobench-faults-libvirt "$d"
done
if [ -d "$CACHE" ]; then mkdir -p /var/cache/libvirt/qemu && cp -a "$CACHE"/. /var/cache/libvirt/qemu/; fi
echo ready
exec sleep infinity
"""
_RUNNING = re.compile(r"<domstatus state='running'[^>]* pid='(\d+)'")
_DIE_WITH_US = ["setpriv", "--pdeathsig", "KILL"]


class PrivateLibvirt:
    """A libvirtd and virtlogd of their own, with their state in ``base``'s namespace."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.holder: subprocess.Popen[bytes] | None = None
        self.virtlogd: subprocess.Popen[bytes] | None = None
        self.libvirtd: subprocess.Popen[bytes] | None = None
        #: The device of the private /run/libvirt tmpfs (0: not made yet).
        self._run_dev = 0

    @property
    def sock_dir(self) -> Path:
        return self.base / "sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.sock_dir / 'libvirt-sock'}"

    @property
    def log(self) -> Path:
        return self.base / "libvirtd.log"

    # ------------------------------------------------------------------------------- start

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.sock_dir.mkdir(exist_ok=True)
        (self.base / "libvirtd.conf").write_text(f'unix_sock_dir = "{self.sock_dir}"\n')
        holder = subprocess.Popen(
            [
                *_DIE_WITH_US,
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                _HOLDER,
                "holder",
                *STATE_DIRS,
            ],
            env={
                "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "CACHE": str(HOST_QEMU_CACHE),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.holder = holder
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != b"ready":
            holder.wait(timeout=30)
            err = holder.stderr.read().decode(errors="replace") if holder.stderr else ""
            raise RuntimeError(f"the private libvirt namespace failed: {err.strip()}")
        self._run_dev = os.stat(f"/proc/{holder.pid}/root/run/libvirt").st_dev
        if self._run_dev == os.stat("/run/libvirt").st_dev:
            raise RuntimeError("the private /run/libvirt is the host's")
        self.virtlogd = self._daemon("virtlogd", "--pid-file", str(self.base / "virtlogd.pid"))
        self.start_libvirtd()

    def _daemon(self, *argv: str) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                [*_DIE_WITH_US, *self.enter(argv)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def start_libvirtd(self, timeout: float = 120.0) -> None:
        """Start libvirtd (again: a restarted one adopts the guests that outlived the last) and
        return once it answers."""
        conf, pid = self.base / "libvirtd.conf", self.base / "libvirtd.pid"
        self.libvirtd = self._daemon("libvirtd", "--config", str(conf), "--pid-file", str(pid))
        deadline = time.monotonic() + timeout
        while True:
            if self.libvirtd.poll() is not None:
                raise RuntimeError(
                    f"the private libvirtd exited {self.libvirtd.returncode}: {self._log_tail()}"
                )
            with contextlib.suppress(libvirt.libvirtError):
                libvirt.open(self.uri).close()
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the private libvirtd did not answer in {timeout:.0f} s: {self._log_tail()}"
                )
            time.sleep(0.2)

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def enter(self, argv: list[str] | tuple[str, ...]) -> list[str]:
        """``argv`` run in the daemons' mount namespace."""
        assert self.holder is not None
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", *argv]

    # ------------------------------------------------------------------------------- kill

    def kill_libvirtd(self) -> None:
        """SIGKILL libvirtd, as a crash would: its guests (qemu) and virtlogd live on."""
        if self.libvirtd is not None and self.libvirtd.poll() is None:
            self.libvirtd.kill()
        if self.libvirtd is not None:
            self.libvirtd.wait()

    def processes(self) -> dict[int, str]:
        """Every process that sees this daemon's ``/run/libvirt`` (the daemons, what runs through
        :meth:`enter`, and the guests: libvirt gives each qemu a mount namespace of its own, cloned
        from the daemon's), but the holder: pid -> command line."""
        found: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or (self.holder is not None and int(entry.name) == self.holder.pid):
                continue
            try:
                if os.stat(entry / "root" / "run" / "libvirt").st_dev != self._run_dev:
                    continue
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if cmd:  # zombies have none
                found[int(entry.name)] = cmd
        return found

    def guests(self) -> dict[int, str]:
        return {p: c for p, c in self.processes().items() if "qemu-system" in c}

    def running_guests(self) -> set[int]:
        """qemu pids of guests libvirtd has brought up to running (its status files say so): past
        the launch, which a qemu does not survive its libvirtd dying in."""
        assert self.holder is not None
        found = set()
        for f in Path(f"/proc/{self.holder.pid}/root/run/libvirt/qemu").glob("*.xml"):
            with contextlib.suppress(OSError):
                m = _RUNNING.search(f.read_text(errors="replace")[:4096])
                if m:
                    found.add(int(m.group(1)))
        return found & set(self.guests())

    # ------------------------------------------------------------------------------- stop

    def stop(self) -> list[str]:
        """Tear everything down, whatever state a test left; what had to be forced, one line each
        (guests were still there: the test's own gc did not remove them)."""
        forced: list[str] = []
        if not self._run_dev:
            self._end(self.holder)
            return forced
        if self.guests():
            forced += [f"guest {p}: {c[:120]}" for p, c in self.guests().items()]
            self._destroy_guests()
        self._end(self.libvirtd)
        self._end(self.virtlogd)
        for pid, cmd in self.processes().items():  # a guest libvirt could not stop, a dnsmasq
            forced.append(f"process {pid}: {cmd[:120]}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._end(self.holder)  # the tmpfs go with the namespace once nothing is left in it
        return forced

    def _destroy_guests(self) -> None:
        """Through libvirt (started again if it is down), which also removes their cgroups."""
        try:
            if self.libvirtd is None or self.libvirtd.poll() is not None:
                self.start_libvirtd(timeout=60)
            conn = libvirt.open(self.uri)
        except (RuntimeError, libvirt.libvirtError):
            return
        try:
            for dom in conn.listAllDomains():
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()
            for net in conn.listAllNetworks():
                with contextlib.suppress(libvirt.libvirtError):
                    if net.isActive():
                        net.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    net.undefine()
        finally:
            conn.close()

    @staticmethod
    def _end(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
