"""The host side of the probes: reading the host's own view, and planting canaries.

:class:`HostView` reads procfs/sysfs below a root path (``/`` for real, a fake tree in tests).
:func:`planted_canaries` plants markers a sandbox must not be able to see (a process name, a flock,
a file, a tmpfs mount, a dummy interface, an abstract unix socket, a kernel log line) and removes
every one of them on exit. Everything it creates is named ``isobench`` + a digest of the run id.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["ENV_CANARY", "Canaries", "HostView", "canary_token", "env_canary", "gc", "planted_canaries"]

#: The runner's environment variable a sandbox's init must not inherit (see :func:`env_canary`).
ENV_CANARY = "ISOBENCH_LEAK_CANARY"


def canary_token(run_id: str) -> str:
    """15 characters (an interface name / comm limit): ``isobench`` + 7 hex digits of the run id."""
    return "isobench" + hashlib.sha1(run_id.encode()).hexdigest()[:7]


@dataclass(frozen=True)
class HostView:
    """The host's procfs/sysfs below ``root``."""

    root: Path = Path("/")

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def read(self, p: str) -> str | None:
        try:
            return self.path(p).read_text(errors="replace")
        except OSError:
            return None

    def readlink(self, p: str) -> str | None:
        try:
            return os.readlink(self.path(p))
        except OSError:
            return None

    def exists(self, p: str) -> bool:
        return self.path(p).exists()

    def glob(self, pattern: str) -> list[str]:
        return sorted("/" + str(q.relative_to(self.root)) for q in self.root.glob(pattern.lstrip("/")))


@dataclass(frozen=True)
class Canaries:
    """What was planted (None for what could not be); ``problems`` says why, for the evidence."""

    token: str
    process_pid: int | None = None
    process_name: str | None = None
    lock_id: str | None = None
    file_path: str | None = None
    mount_source: str | None = None
    netdev: str | None = None
    unix_socket: str | None = None
    kmsg: str | None = None
    #: Listening loopback sockets in the host's network namespace (/proc/net/tcp, /proc/net/udp).
    tcp_port: int | None = None
    udp_port: int | None = None
    #: The value of ENV_CANARY in the runner while the sandbox was created (see env_canary).
    env: str | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)


def _lock_id(st: os.stat_result) -> str:
    # /proc/locks prints the device as %02x:%02x and the inode in decimal.
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def planted_canaries(run_id: str, tmp_root: Path = Path("/tmp")) -> Iterator[Canaries]:
    """Plant every canary this host allows; remove all of them on every path out."""
    token = canary_token(run_id)
    problems: list[str] = []
    found: dict[str, object] = {}
    with contextlib.ExitStack() as stack:
        base = Path(tempfile.mkdtemp(prefix=f"isobench-{_safe(run_id)}-canary-", dir=tmp_root))
        stack.callback(shutil.rmtree, base, True)

        # A process whose comm is the token: exec through a symlink so the kernel names it so.
        try:
            link = base / token
            link.symlink_to(shutil.which("sleep") or "/bin/sleep")
            proc = subprocess.Popen([str(link), "60"], start_new_session=True)

            def _reap(p: subprocess.Popen[bytes] = proc) -> None:
                p.kill()
                p.wait()

            stack.callback(_reap)
            found["process_pid"] = proc.pid
            found["process_name"] = token
        except OSError as err:
            problems.append(f"process: {err}")

        # A file with the token inside, held under an exclusive flock.
        try:
            fpath = base / "canary"
            fpath.write_text(token + "\n")
            fd = os.open(fpath, os.O_RDONLY)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
            found["lock_id"] = _lock_id(os.fstat(fd))
            found["file_path"] = str(fpath)
        except OSError as err:
            problems.append(f"file/lock: {err}")

        # A tmpfs mount whose source is the token (host mount namespace only).
        mnt = base / "mnt"
        try:
            mnt.mkdir()
            _run(["mount", "-t", "tmpfs", "-o", "size=64k", token, str(mnt)])
            stack.callback(_umount, mnt)
            found["mount_source"] = token
        except (OSError, subprocess.SubprocessError) as err:
            problems.append(f"mount: {err}")

        # A dummy network interface in the host network namespace.
        # (A bridge where the kernel has no dummy driver: both are inert, neither has a peer.)
        for kind in ("dummy", "bridge"):
            try:
                _run(["ip", "link", "add", token, "type", kind])
            except (OSError, subprocess.SubprocessError) as err:
                problem = f"netdev ({kind}): {err}"
                continue
            stack.callback(_del_link, token)
            found["netdev"] = token
            break
        else:
            problems.append(problem)

        # An abstract unix socket: /proc/net/unix lists it as @name, per network namespace.
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stack.callback(sock.close)
            sock.bind("\0" + token + "-sock")
            sock.listen(1)
            found["unix_socket"] = token + "-sock"
        except OSError as err:
            problems.append(f"unix socket: {err}")

        # Loopback TCP (listening) and UDP sockets: /proc/net/{tcp,udp} list them per netns.
        for sock_kind, attr in ((socket.SOCK_STREAM, "tcp_port"), (socket.SOCK_DGRAM, "udp_port")):
            try:
                ip = socket.socket(socket.AF_INET, sock_kind)
                stack.callback(ip.close)
                ip.bind(("127.0.0.1", 0))
                if sock_kind == socket.SOCK_STREAM:
                    ip.listen(1)
                found[attr] = ip.getsockname()[1]
            except OSError as err:
                problems.append(f"{attr}: {err}")

        # A kernel log line. It cannot be taken back, so it says what it is.
        try:
            msg = f"{token}-kmsg: isobench leakage canary, harmless"
            with open("/dev/kmsg", "w") as kmsg:
                kmsg.write(msg + "\n")
            found["kmsg"] = token + "-kmsg"
        except OSError as err:
            problems.append(f"kmsg: {err}")

        # Let the sleeper exec so its comm is the token before anyone looks.
        _wait_comm(found.get("process_pid"), token)
        env = os.environ.get(ENV_CANARY)
        if env is not None and env.startswith(token):
            found["env"] = env
        yield Canaries(token=token, problems=tuple(problems), **found)  # type: ignore[arg-type]


@contextlib.contextmanager
def env_canary(run_id: str) -> Iterator[str]:
    """Put ENV_CANARY in the runner's environment while a sandbox is created: a runtime whose init
    inherits the runner's environment shows it in the sandbox's /proc/1/environ. Enter it before
    the sandbox is created and :func:`planted_canaries` inside it, which then records the value."""
    value = canary_token(run_id) + "-env"
    old = os.environ.get(ENV_CANARY)
    os.environ[ENV_CANARY] = value
    try:
        yield value
    finally:
        if old is None:
            os.environ.pop(ENV_CANARY, None)
        else:
            os.environ[ENV_CANARY] = old


def _wait_comm(pid: object, token: str, timeout: float = 2.0) -> None:
    if not isinstance(pid, int):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == token:
                return
        except OSError:
            return
        time.sleep(0.01)


def _umount(path: Path) -> None:
    try:
        _run(["umount", str(path)])
    except (OSError, subprocess.SubprocessError):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _run(["umount", "-l", str(path)])


def _del_link(name: str) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        _run(["ip", "link", "del", name])


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:40]


def gc(run_id: str | None = None, tmp_root: Path = Path("/tmp")) -> list[str]:
    """Remove canaries a killed run left behind (all isobench ones if ``run_id`` is None)."""
    removed: list[str] = []
    pat = f"isobench-{_safe(run_id)}-canary-*" if run_id else "isobench-*-canary-*"
    for d in tmp_root.glob(pat):
        mnt = d / "mnt"
        if os.path.ismount(mnt):
            _umount(mnt)
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                exe = os.readlink(proc / "exe")
                if (proc / "cmdline").read_bytes().startswith(str(d).encode()):
                    os.kill(int(proc.name), 9)
                    removed.append(f"process {proc.name} ({exe})")
        shutil.rmtree(d, ignore_errors=True)
        removed.append(str(d))
    token_re = re.compile(rf"^{canary_token(run_id)}$" if run_id else r"^isobench[0-9a-f]{7}$")
    out = ""
    for kind in ("dummy", "bridge"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out += subprocess.run(
                ["ip", "-o", "link", "show", "type", kind],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            name = parts[1].strip().split("@")[0]
            if token_re.match(name):
                _del_link(name)
                removed.append(f"link {name}")
    return removed
