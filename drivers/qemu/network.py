"""Guest networking: one bridge per run, one tap per guest, static addresses, no NAT, no DHCP.

10.215.0.0/16 belongs to this driver (vm has 10.214/16, runc 10.213/16, container 172.29/16): a run
gets the /24 ``10.215.<n>.0`` picked from its run id, the bridge is ``.1`` and guest ``k`` is
``.k+1``, told through ``isobench.ip=`` on the kernel command line (read by the image's agent).

Interface names are limited to 15 characters, so they carry a 6-hex digest of the run id:
bridge ``isobq<digest>br``, taps ``isobq<digest>t<k>``. The ``isobq`` prefix is this driver's alone
(runc uses ``isobr``, the container driver ``isob<hex>``), so gc() finds them by name. Links are
made by :mod:`isobench.hostsys.links`, whose runner seam lets tests record the calls instead.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from isobench.errors import SandboxError
from isobench.hostsys.links import Links, ifname, run_tag

log = logging.getLogger(__name__)

__all__ = ["LINK_PREFIX", "GuestNic", "RunNetwork", "run_prefix"]

LINK_PREFIX = "isobq"
SUBNET_BASE = "10.215"


def run_prefix(run_id: str | None) -> str:
    """What every link of ``run_id`` starts with (every run's when None)."""
    return LINK_PREFIX if run_id is None else f"{LINK_PREFIX}{run_tag(run_id)}"


@dataclass(frozen=True)
class GuestNic:
    tap: str
    mac: str
    address: str  # without prefix length
    prefix: int = 24


class RunNetwork:
    """The bridge of one run and the taps hanging off it."""

    def __init__(self, run_id: str, links: Links) -> None:
        self.run_id = run_id
        self._links = links
        self.tag = run_tag(run_id)
        # 1..250: .0 and the top values stay free so the /24 is never a broadcast-looking one.
        self.octet = 1 + int(hashlib.sha256(f"qemu:{run_id}".encode()).hexdigest(), 16) % 250
        self.bridge = ifname(f"{LINK_PREFIX}{self.tag}br")
        self._bridge_up = False
        self._touched = False
        self._next = 0

    @property
    def host_address(self) -> str:
        return f"{SUBNET_BASE}.{self.octet}.1"

    def ensure_bridge(self) -> None:
        if self._bridge_up:
            return
        self._touched = True
        try:
            # STP off and no forward delay: a new tap forwards at once, so boot time does not
            # include a bridge learning period.
            self._links.command(
                "link", "add", self.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"
            )
            self._links.command("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
            self._links.command("link", "set", self.bridge, "up")
        except SandboxError:
            self._links.discard(self.bridge)
            raise
        self._bridge_up = True

    def add_guest(self) -> GuestNic:
        """A new tap on the run's bridge and the address its guest gets."""
        self.ensure_bridge()
        self._next += 1
        k = self._next
        if k > 250:
            raise SandboxError(f"run {self.run_id}: more than 250 networked guests in one run")
        tap = ifname(f"{LINK_PREFIX}{self.tag}t{k}")
        try:
            self._links.command("tuntap", "add", "dev", tap, "mode", "tap")
            self._links.command("link", "set", tap, "master", self.bridge)
            self._links.command("link", "set", tap, "up")
        except SandboxError:
            self._links.discard(tap)
            raise
        mac = f"52:54:00:d7:{self.octet:02x}:{k + 1:02x}"
        return GuestNic(tap=tap, mac=mac, address=f"{SUBNET_BASE}.{self.octet}.{k + 1}")

    def delete_link(self, name: str) -> bool:
        """Remove ``name`` if it exists; True if it was removed (a failure is logged)."""
        try:
            return self._links.delete(name)
        except SandboxError as err:
            log.warning("%s", err)
            return False

    def close(self) -> None:
        """Remove the bridge and any tap of this run still present (nothing if never networked)."""
        if not self._touched:
            return
        self._links.gc(run_prefix(self.run_id))
        self._bridge_up = False
