"""veth networking: a /30 per sandbox out of 172.29.0.0/16, a range only this driver uses.

The host end gets the first address, the container end the second and a default route via the
host end, so ``sandbox.address`` is reachable from the host and vice versa. Addresses are picked
under a lock from what ``ip`` reports in use, so concurrent runs never hand out the same /30. The
links themselves are made by :mod:`isobench.hostsys.links`.

The container is reached through the pidfd the driver holds for its init, never by a pid number
alone (which a dead init's reaped pid could have passed on): the peer end goes into a namespace fd
opened under that pidfd's check, and ``netexec`` joins with ``setns(pidfd, CLONE_NEWNET)``.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from isobench.drivers.container.helper import HelperImage
from isobench.errors import SandboxError
from isobench.hostsys.links import Links

log = logging.getLogger(__name__)

__all__ = [
    "SUBNET",
    "VethPair",
    "init_netns",
    "own_link",
    "parse_used_addresses",
    "pick_subnet",
    "setup_veth",
]

SUBNET = ipaddress.IPv4Network("172.29.0.0/16")
_OWN_VETH = re.compile(r"^isob[0-9a-f]{6}[0-9a-z]{1,4}[hc]$")


@dataclass(frozen=True)
class VethPair:
    host: str
    peer: str
    host_ip: ipaddress.IPv4Address
    container_ip: ipaddress.IPv4Address


def own_link(name: str) -> bool:
    """Whether a link name is one of this driver's veths (not runc's ``isobr``, qemu's ``isobq``)."""
    return _OWN_VETH.match(name) is not None


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


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def init_netns(pid: int, pidfd: int, proc: Path = Path("/proc")) -> int:
    """An fd of the network namespace of the process ``pidfd`` refers to, whose pid is ``pid``.

    ``/proc/<pid>`` is opened first and the pidfd checked after: a process the pidfd can still
    signal is not reaped, so its pid number was its own for the whole open (a zombie has no
    namespaces left to open). Either failure is a SandboxError and no fd is left open."""
    try:
        fd = os.open(proc / str(pid) / "ns" / "net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise SandboxError(
            f"container init {pid} is gone: cannot open its network namespace ({err})"
        ) from err
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except OSError as err:
        os.close(fd)
        raise SandboxError(f"container init {pid} is gone (its pid may have been reused): {err}") from err
    return fd


def setup_veth(
    links: Links, helper: HelperImage, pid: int, pidfd: int, host: str, peer: str, lock_path: Path
) -> VethPair:
    """Create the pair with its peer inside the network namespace of the init ``pidfd`` holds (pid
    ``pid``) and address both ends."""
    netns = init_netns(pid, pidfd)
    try:
        with _locked(lock_path):
            used = parse_used_addresses(links.addresses())
            host_ip, ctr_ip = pick_subnet(used)
            links.add_veth(host, peer, f"/proc/self/fd/{netns}", f"{host_ip}/30", pass_fds=(netns,))
    finally:
        os.close(netns)
    try:
        # The helper (its sealed copy) joins the container's net namespace through the pidfd, as
        # exec does (a rootless container's net namespace belongs to its user namespace).
        enter = [helper.executable, "netexec", "--ppid", str(os.getpid()), "--pidfd", str(pidfd), "--"]
        links.configure_inside(enter, peer, f"{ctr_ip}/30", str(host_ip), pass_fds=(helper.fd, pidfd))
    except BaseException:
        links.discard(host)
        raise
    return VethPair(host=host, peer=peer, host_ip=host_ip, container_ip=ctr_ip)
