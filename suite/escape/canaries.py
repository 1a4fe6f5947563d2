"""The host's side of the battery: canaries planted before the probe runs, removed after it.

Each escape attempt targets one of these, never the host itself, and success is seen at the
canary: a file whose 4 KiB hold a random token (read through a leaked fd, a handle, a symlink or
the raw block device at the file's physical offset), a copy of ``sleep`` running under the token's
name (ptrace, and a host binary for the /proc/<pid>/exe check), and a symlink in the volume
pointing at the file. Everything lives in one directory beside the volume, on the same filesystem
(open_by_handle_at needs a mount of it), and goes on every path out, Ctrl-C included; the canary
process also ends by itself after ``lifetime`` seconds, should its owner be killed outright.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from isobench.escape.verdicts import HostFacts

log = logging.getLogger(__name__)

__all__ = ["LINK_NAME", "Canaries", "planted"]

#: The symlink planted in the volume.
LINK_NAME = "escape-link"


@dataclass(frozen=True)
class Canaries:
    #: 15 characters: the canary process's comm is exactly this.
    token: str
    file: Path
    #: The volume directory the sandbox gets, holding ``LINK_NAME`` -> ``file``.
    volume: Path
    pid: int | None = None
    handle_type: int | None = None
    handle: str = ""
    #: The file's filesystem device ("major:minor") and the file's first block on it, in bytes.
    dev: str = ""
    offset: int | None = None
    boot_id: str = ""
    host_blockdev_errno: str = ""
    #: Per primitive, what could not be planted.
    problems: dict[str, str] = field(default_factory=dict)

    def probe_args(self, *, work: str, volume: str | None) -> list[str]:
        """The probe's ``key=value`` arguments, paths as the sandbox sees them."""
        args = {
            "token": self.token,
            "canary": str(self.file),
            "work": work,
            "boot_id": self.boot_id,
            "link": LINK_NAME,
            "volume": volume or "",
            "pid_hint": str(self.pid or ""),
            "dev": self.dev,
            "offset": "" if self.offset is None else str(self.offset),
            "handle_type": "" if self.handle_type is None else str(self.handle_type),
            "handle": self.handle,
        }
        return [f"{k}={v}" for k, v in args.items()]

    def host_facts(self, *, volume: bool, proc: Path = Path("/proc")) -> HostFacts:
        return HostFacts(
            token=self.token,
            problems=dict(self.problems),
            host_blockdev_errno=self.host_blockdev_errno,
            has_sysrq=(proc / "sysrq-trigger").exists(),
            has_modules=(proc / "modules").exists(),
            volume=volume,
        )


def _errname(err: OSError) -> str:
    return errno.errorcode.get(err.errno or 0, str(err.errno))


def _locate(probe: Path, path: Path) -> dict[str, object]:
    res = subprocess.run(
        [str(probe), "locate", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    try:
        found = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"probe locate gave {res.stdout.strip()[:80]!r} (exit {res.returncode})"}
    return found if isinstance(found, dict) else {"error": "probe locate gave no object"}


def _host_reads_block(node: Path, dev: str, offset: int, token: str) -> str:
    """The errno the host gets reading its own device at the canary's offset ("" = it read the
    token): a machine that forbids raw reads even to the host cannot show the primitive."""
    major, minor = (int(x) for x in dev.split(":"))
    try:
        os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
    except OSError as err:
        return _errname(err)
    try:
        fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        return _errname(err)
    finally:
        node.unlink(missing_ok=True)
    try:
        return "" if token.encode() in os.pread(fd, 4096, offset) else "ENODATA"
    except OSError as err:
        return _errname(err)
    finally:
        os.close(fd)


def _start_canary_process(directory: Path, token: str, lifetime: float) -> subprocess.Popen[bytes]:
    exe = directory / token
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", exe)
    proc = subprocess.Popen(
        [str(exe), str(max(1, int(lifetime)))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # until it has exec'd, so /proc shows the token
        with contextlib.suppress(OSError):
            if Path(f"/proc/{proc.pid}/comm").read_text().strip() == token:
                break
        time.sleep(0.01)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


@contextlib.contextmanager
def planted(base: Path, probe: Path, *, lifetime: float = 600.0) -> Iterator[Canaries]:
    """Plant every canary under ``base`` (a fresh directory on the volume's filesystem); remove all
    of them on every path out."""
    token = "isoesc" + secrets.token_hex(5)[:9]
    problems: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        directory = base / "escape-canary"
        volume = base / "escape-volume"
        directory.mkdir(parents=True)
        stack.callback(shutil.rmtree, directory, True)
        volume.mkdir()
        stack.callback(shutil.rmtree, volume, True)

        canary = directory / "canary"
        with canary.open("wb") as f:  # 4 KiB so it has a block of its own (no inline data)
            line = f"isobench escape canary {token}\n".encode()
            f.write((line * (4096 // len(line) + 1))[:4096])
            f.flush()
            os.fsync(f.fileno())
        (volume / LINK_NAME).symlink_to(canary)

        pid = None
        try:
            proc = _start_canary_process(directory, token, lifetime)
            stack.callback(_stop, proc)
            pid = proc.pid
        except OSError as err:
            problems["ptrace"] = f"canary process: {err}"

        where = _locate(probe, canary)
        handle_type = where.get("handle_type")
        if where.get("handle_errno") or not isinstance(handle_type, int):
            problems["open_by_handle"] = (
                f"name_to_handle_at: {where.get('handle_errno') or where.get('error')}"
            )
        physical, dev = where.get("physical"), str(where.get("dev") or "")
        host_errno = ""
        if where.get("fiemap_errno") or not isinstance(physical, int):
            problems["mknod_block"] = f"FIEMAP: {where.get('fiemap_errno') or where.get('error')}"
        else:
            host_errno = _host_reads_block(directory / "blk", dev, physical, token)
            if host_errno:
                log.info("the host itself cannot read its block device %s: %s", dev, host_errno)
        boot_id = ""
        with contextlib.suppress(OSError):
            boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        yield Canaries(
            token=token,
            file=canary,
            volume=volume,
            pid=pid,
            handle_type=handle_type if isinstance(handle_type, int) else None,
            handle=str(where.get("handle") or ""),
            dev=dev,
            offset=physical if isinstance(physical, int) else None,
            boot_id=boot_id,
            host_blockdev_errno=host_errno,
            problems=problems,
        )
