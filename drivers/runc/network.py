"""A veth pair from the host into a runc container's network namespace.

This driver owns 10.213.0.0/16, cut into /30s: slot ``n`` gives the host end ``.1`` and the container
``.2`` of the n-th /30. Link names are ``isobr<n>h`` (host) and ``isobr<n>c`` (renamed ``eth0``
inside), short enough for IFNAMSIZ; the run id and sandbox name go into the host link's alias so
``gc`` can tell whose link it is. Slots are taken without a lock: two creators racing for one slot
collide on the link name, and the loser moves on to the next slot. The links themselves are made by
:mod:`isobench.hostsys.links`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from isobench.errors import SandboxError
from isobench.hostsys.links import LinkExists, Links, nsenter_net

__all__ = ["PREFIX", "SUBNET", "Veth", "pick_slot", "setup_veth", "slot_of"]

log = logging.getLogger(__name__)

SUBNET = ipaddress.IPv4Network("10.213.0.0/16")
SLOTS = SUBNET.num_addresses // 4
PREFIX = "isobr"
_HOST_LINK = re.compile(rf"^{PREFIX}(\d+)h$")


@dataclass(frozen=True)
class Veth:
    slot: int

    @property
    def host_link(self) -> str:
        return f"{PREFIX}{self.slot}h"

    @property
    def peer_link(self) -> str:
        return f"{PREFIX}{self.slot}c"

    @property
    def host_ip(self) -> str:
        return str(SUBNET.network_address + 4 * self.slot + 1)

    @property
    def sandbox_ip(self) -> str:
        return str(SUBNET.network_address + 4 * self.slot + 2)


def slot_of(link: str) -> int | None:
    m = _HOST_LINK.match(link)
    return int(m.group(1)) if m else None


def pick_slot(used: Iterable[int], start: int = 0) -> int:
    """The lowest free slot at or after ``start``."""
    taken = set(used)
    for slot in range(start, SLOTS):
        if slot not in taken:
            return slot
    raise SandboxError(f"all {SLOTS} runc network slots in {SUBNET} are taken; run `isobench gc`")


def setup_veth(links: Links, pid: int, alias: str) -> Veth:
    """Create the pair, move one end into ``pid``'s netns and address both ends."""
    used = {s for s in (slot_of(link.name) for link in links.find(PREFIX)) if s is not None}
    slot = pick_slot(used)
    for _ in range(64):
        veth = Veth(slot)
        try:
            links.add_veth(veth.host_link, veth.peer_link, pid, f"{veth.host_ip}/30", alias=alias)
            break
        except LinkExists:
            used.add(slot)
            slot = pick_slot(used, slot + 1)
    else:
        raise SandboxError("cannot find a free runc network slot after 64 tries; run `isobench gc`")
    try:
        links.configure_inside(
            nsenter_net(pid), veth.peer_link, f"{veth.sandbox_ip}/30", veth.host_ip, rename="eth0"
        )
    except BaseException:
        links.discard(veth.host_link)
        raise
    return veth
