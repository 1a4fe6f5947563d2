"""Guest networking: one bridge per run, one tap per guest, static addresses, no NAT, no DHCP.

10.215.0.0/16 belongs to this driver (vm has 10.214/16, runc 10.213/16, container 172.29/16): a run
gets the /24 ``10.215.<n>.0`` picked from its run id, the bridge is ``.1`` and guest ``k`` is
``.k+1``, told through ``isobench.ip=`` on the kernel command line (read by the image's agent).

Interface names are limited to 15 characters, so they carry a 6-hex digest of the run id:
bridge ``isobq<digest>br``, taps ``isobq<digest>t<k>``. The ``isobq`` prefix is this driver's alone
(runc uses ``isobr``, the container driver ``isob<hex>``), so gc() finds them by name. Links are
made with iproute2 behind the :class:`IpRunner` seam so tests record the calls instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from isobench.errors import SandboxError
from isobench.procs import run_command

log = logging.getLogger(__name__)

__all__ = ["LINK_PREFIX", "IpRunner", "RunNetwork", "ip_command", "list_links", "net_tag"]

LINK_PREFIX = "isobq"
SUBNET_BASE = "10.215"
_MAX_IFNAME = 15

#: argv (without the leading "ip") -> (exit code, stdout, stderr)
IpRunner = Callable[[Sequence[str]], tuple[int, str, str]]


def ip_command(args: Sequence[str]) -> tuple[int, str, str]:
    res = run_command(["ip", *args], timeout=30)
    return res.exit_code, res.stdout, res.stderr


def net_tag(run_id: str) -> str:
    return hashlib.sha256(run_id.encode()).hexdigest()[:6]


def list_links(ip: IpRunner, prefix: str = LINK_PREFIX) -> list[str]:
    """Names of links starting with ``prefix`` (``ip -j link`` parsed)."""
    code, out, err = ip(["-j", "link", "show"])
    if code != 0:
        raise SandboxError(f"`ip link show` failed: {err.strip()}")
    try:
        links = json.loads(out or "[]")
    except ValueError as err_:
        raise SandboxError(f"`ip -j link show` printed unparsable output: {out[:200]!r}") from err_
    return [str(lk["ifname"]) for lk in links if str(lk.get("ifname", "")).startswith(prefix)]


@dataclass(frozen=True)
class GuestNic:
    tap: str
    mac: str
    address: str  # without prefix length
    prefix: int = 24


class RunNetwork:
    """The bridge of one run and the taps hanging off it."""

    def __init__(self, run_id: str, ip: IpRunner = ip_command) -> None:
        self.run_id = run_id
        self._ip = ip
        self.tag = net_tag(run_id)
        # 1..250: .0 and the top values stay free so the /24 is never a broadcast-looking one.
        self.octet = 1 + int(hashlib.sha256(f"qemu:{run_id}".encode()).hexdigest(), 16) % 250
        self.bridge = f"{LINK_PREFIX}{self.tag}br"
        self._bridge_up = False
        self._touched = False
        self._next = 0

    @property
    def host_address(self) -> str:
        return f"{SUBNET_BASE}.{self.octet}.1"

    def _run(self, *args: str) -> None:
        code, _, err = self._ip(list(args))
        if code != 0:
            raise SandboxError(
                f"`ip {' '.join(args)}` failed: {err.strip()}; guest networking needs root and iproute2"
            )

    def ensure_bridge(self) -> None:
        if self._bridge_up:
            return
        self._touched = True
        try:
            # STP off and no forward delay: a new tap forwards at once, so boot time does not
            # include a bridge learning period.
            self._run("link", "add", self.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            self._run("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
            self._run("link", "set", self.bridge, "up")
        except SandboxError:
            self.delete_link(self.bridge)
            raise
        self._bridge_up = True

    def add_guest(self) -> GuestNic:
        """A new tap on the run's bridge and the address its guest gets."""
        self.ensure_bridge()
        self._next += 1
        k = self._next
        if k > 250:
            raise SandboxError(f"run {self.run_id}: more than 250 networked guests in one run")
        tap = f"{LINK_PREFIX}{self.tag}t{k}"
        assert len(tap) <= _MAX_IFNAME
        try:
            self._run("tuntap", "add", "dev", tap, "mode", "tap")
            self._run("link", "set", tap, "master", self.bridge)
            self._run("link", "set", tap, "up")
        except SandboxError:
            self.delete_link(tap)
            raise
        mac = f"52:54:00:d7:{self.octet:02x}:{k + 1:02x}"
        return GuestNic(tap=tap, mac=mac, address=f"{SUBNET_BASE}.{self.octet}.{k + 1}")

    def delete_link(self, name: str) -> bool:
        """Remove ``name`` if it exists; True if it was removed."""
        code, _, err = self._ip(["link", "del", name])
        if code != 0 and "Cannot find device" not in err and "does not exist" not in err:
            log.warning("removing link %s failed: %s", name, err.strip())
        return code == 0

    def close(self) -> None:
        """Remove the bridge and any tap of this run still present (nothing if never networked)."""
        if not self._touched:
            return
        for name in list_links(self._ip, f"{LINK_PREFIX}{self.tag}"):
            if name != self.bridge:
                self.delete_link(name)
        self.delete_link(self.bridge)
        self._bridge_up = False
