"""veth networking: a /30 per sandbox out of 172.29.0.0/16, a range only this driver uses.

The host end gets the first address, the container end the second and a default route via the
host end, so ``sandbox.address`` is reachable from the host and vice versa. Addresses are picked
under a lock from what ``ip`` reports in use, so concurrent runs never hand out the same /30.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import SandboxError

log = logging.getLogger(__name__)

__all__ = ["SUBNET", "VethPair", "delete_link", "list_links", "parse_used_addresses", "pick_subnet"]

SUBNET = ipaddress.IPv4Network("172.29.0.0/16")
_OWN_VETH = re.compile(r"^isob[0-9a-f]{6}[0-9a-z]{1,4}[hc]$")


@dataclass(frozen=True)
class VethPair:
    host: str
    peer: str
    host_ip: ipaddress.IPv4Address
    container_ip: ipaddress.IPv4Address


def parse_used_addresses(ip_o_addr: str) -> set[ipaddress.IPv4Address]:
    """Addresses in ``ip -4 -o addr show`` output."""
    used: set[ipaddress.IPv4Address] = set()
    for m in re.finditer(r"\binet (\d+\.\d+\.\d+\.\d+)/\d+", ip_o_addr):
        used.add(ipaddress.IPv4Address(m.group(1)))
    return used


def pick_subnet(
    used: set[ipaddress.IPv4Address], subnet: ipaddress.IPv4Network = SUBNET
) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    for net in subnet.subnets(new_prefix=30):
        host, ctr = net.network_address + 1, net.network_address + 2
        if host not in used and ctr not in used:
            return host, ctr
    raise SandboxError(f"no free /30 left in {subnet}; destroy sandboxes or run `isobench gc`")


def _ip() -> str:
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if Path(p).exists()), None)
    if ip is None:
        raise SandboxError("network=True needs the `ip` command; install iproute2")
    return ip


def _run(argv: Sequence[str], batch: str, what: str) -> None:
    proc = subprocess.run(list(argv), input=batch, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise SandboxError(f"{what} failed: {proc.stderr.strip() or proc.returncode}")


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def setup_veth(helper: Path, pid: int, host: str, peer: str, lock_path: Path) -> VethPair:
    """Create the pair with its peer inside ``pid``'s net namespace and address both ends."""
    ip = _ip()
    with _locked(lock_path):
        out = subprocess.run([ip, "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False)
        host_ip, ctr_ip = pick_subnet(parse_used_addresses(out.stdout))
        _run(
            [ip, "-batch", "-"],
            f"link add {host} type veth peer name {peer} netns {pid}\n"
            f"addr add {host_ip}/30 dev {host}\nlink set {host} up\n",
            f"creating veth {host}",
        )
    _run(
        [str(helper), "netexec", "--pid", str(pid), "--", ip, "-batch", "-"],
        f"addr add {ctr_ip}/30 dev {peer}\nlink set {peer} up\nroute add default via {host_ip}\n",
        f"configuring {peer} inside the container",
    )
    return VethPair(host=host, peer=peer, host_ip=host_ip, container_ip=ctr_ip)


def list_links(prefix: str, sys_class_net: Path = Path("/sys/class/net")) -> list[str]:
    """This driver's veth names on the host (a seam: tests pass a fake directory)."""
    try:
        names = [p.name for p in sys_class_net.iterdir()]
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(prefix) and _OWN_VETH.match(n))


def delete_link(name: str, sys_class_net: Path = Path("/sys/class/net")) -> bool:
    """Delete a host link if it still exists (the kernel drops it with its net namespace anyway)."""
    if not (sys_class_net / name).exists():
        return False
    proc = subprocess.run([_ip(), "link", "del", name], capture_output=True, text=True, check=False)
    if proc.returncode != 0 and (sys_class_net / name).exists():
        raise SandboxError(f"cannot delete veth {name}: {proc.stderr.strip()}")
    return True
