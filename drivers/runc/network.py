"""A veth pair from the host into a runc container's network namespace.

This driver owns 10.213.0.0/16, cut into /30s: slot ``n`` gives the host end ``.1`` and the container
``.2`` of the n-th /30. Link names are ``isobr<n>h`` (host) and ``isobr<n>c`` (renamed ``eth0``
inside), short enough for IFNAMSIZ; the run id and sandbox name go into the host link's alias so
``gc`` can tell whose link it is. Slots are taken without a lock: two creators racing for one slot
collide on the link name, and the loser moves on to the next slot.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from isobench.errors import SandboxError
from isobench.procs import run_command

__all__ = ["SUBNET", "Veth", "parse_links", "pick_slot", "setup_veth", "slot_of", "teardown_veth"]

log = logging.getLogger(__name__)

SUBNET = ipaddress.IPv4Network("10.213.0.0/16")
SLOTS = SUBNET.num_addresses // 4
_HOST_LINK = re.compile(r"^isobr(\d+)h$")
_TIMEOUT = 30.0


@dataclass(frozen=True)
class Veth:
    slot: int

    @property
    def host_link(self) -> str:
        return f"isobr{self.slot}h"

    @property
    def peer_link(self) -> str:
        return f"isobr{self.slot}c"

    @property
    def host_ip(self) -> str:
        return str(SUBNET.network_address + 4 * self.slot + 1)

    @property
    def sandbox_ip(self) -> str:
        return str(SUBNET.network_address + 4 * self.slot + 2)


@dataclass(frozen=True)
class Link:
    name: str
    alias: str


def parse_links(text: str) -> list[Link]:
    """Links of ``ip -j link show`` output."""
    try:
        doc: Any = json.loads(text or "[]")
    except json.JSONDecodeError as err:
        raise SandboxError(f"`ip -j link` printed no JSON: {err}") from err
    links: list[Link] = []
    for item in doc if isinstance(doc, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("ifname"), str):
            links.append(Link(item["ifname"], str(item.get("ifalias", ""))))
    return links


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


def _ip(argv: Sequence[str], *, stdin: bytes | None = None) -> tuple[int, str]:
    res = run_command(argv, timeout=_TIMEOUT, stdin=stdin)
    return res.exit_code, res.stderr.strip()


def list_links() -> list[Link]:
    res = run_command(["ip", "-j", "link", "show"], timeout=_TIMEOUT)
    if not res.ok:
        raise SandboxError(f"`ip link show` failed: {res.stderr.strip()}")
    return parse_links(res.stdout)


def setup_veth(pid: int, alias: str) -> Veth:
    """Create the pair, move one end into ``pid``'s netns and address both ends."""
    used = {s for s in (slot_of(link.name) for link in list_links()) if s is not None}
    slot = pick_slot(used)
    for _ in range(64):
        veth = Veth(slot)
        code, err = _ip(
            [
                "ip",
                "link",
                "add",
                veth.host_link,
                "type",
                "veth",
                "peer",
                "name",
                veth.peer_link,
                "netns",
                str(pid),
            ]
        )
        if code == 0:
            break
        if "File exists" not in err:
            raise SandboxError(f"cannot create veth {veth.host_link}: {err}")
        used.add(slot)
        slot = pick_slot(used, slot + 1)
    else:
        raise SandboxError("cannot find a free runc network slot after 64 tries; run `isobench gc`")
    try:
        host_cmds = (
            f"link set dev {veth.host_link} alias {alias}\n"
            f"addr add {veth.host_ip}/30 dev {veth.host_link}\n"
            f"link set dev {veth.host_link} up\n"
        )
        code, err = _ip(["ip", "-b", "-"], stdin=host_cmds.encode())
        if code != 0:
            raise SandboxError(f"cannot configure {veth.host_link}: {err}")
        inner_cmds = (
            f"link set dev {veth.peer_link} name eth0\n"
            f"addr add {veth.sandbox_ip}/30 dev eth0\n"
            "link set dev eth0 up\n"
            f"route add default via {veth.host_ip}\n"
        )
        code, err = _ip(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-b", "-"], stdin=inner_cmds.encode())
        if code != 0:
            raise SandboxError(f"cannot configure eth0 inside the container: {err}")
    except BaseException:
        teardown_veth(veth.host_link)
        raise
    return veth


def teardown_veth(host_link: str) -> None:
    """Delete the pair if it still exists (it dies with the container's netns anyway)."""
    code, err = _ip(["ip", "link", "del", host_link])
    if code != 0 and "Cannot find device" not in err and "does not exist" not in err:
        raise SandboxError(f"cannot delete veth {host_link}: {err}")
