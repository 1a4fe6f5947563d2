"""The ``vm`` driver's per-run libvirt network: one /24 of 10.214.0.0/16 (runc has 10.213/16,
container 172.29/16) on a bridge ``isb<hash>`` that libvirt owns, and the guests' addresses on it."""

from __future__ import annotations

import contextlib
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable

import libvirt
from isobench.drivers.guest.process import one_line
from isobench.drivers.vm.domain import NetConfig, network_xml
from isobench.errors import DriverUnavailable, SandboxError

__all__ = ["RunNetwork", "lv_msg", "remove_network"]

Connect = Callable[[], libvirt.virConnect]


def lv_msg(err: libvirt.libvirtError) -> str:
    return one_line(err.get_error_message() or str(err))


class RunNetwork:
    """The network ``isobench-<run_id>``, made by the first sandbox that asks for one; every
    later sandbox of the run gets the next address on it."""

    def __init__(self, conn: Connect, run_id: str, prefix: str = "isobench") -> None:
        self._conn = conn
        self._run_id = run_id
        self.name = f"{prefix}-{run_id}"
        self._index = 0

    def first_subnet(self) -> int:
        """The /24 (third octet) this run id hashes to: tried first."""
        return 16 + int(hashlib.sha256(self._run_id.encode()).hexdigest(), 16) % 200

    def attach(self) -> tuple[NetConfig, str]:
        """A NIC on the run's network (made now if it does not exist) and the guest's address."""
        try:
            net = self._conn().networkLookupByName(self.name)
        except libvirt.libvirtError:
            subnet = self._create()
        else:  # made by an earlier sandbox of this run, maybe not on the run id's own /24
            ip = ET.fromstring(net.XMLDesc()).find("ip")
            subnet = int((ip.get("address", "") if ip is not None else "0.0.0.0").split(".")[2])
        self._index += 1
        host = 1 + self._index
        mac = f"52:54:00:{subnet:02x}:{host // 256:02x}:{host % 256:02x}"
        return NetConfig(network=self.name, mac=mac), f"10.214.{subnet}.{host}"

    def _create(self) -> int:
        """Define and start the run's network on a free /24; return its third octet.

        The /24 is derived from the run id, so two concurrent runs can pick the same one; libvirt
        then refuses ("already in use by interface ..."), and the next /24 is tried.
        """
        conn = self._conn()
        bridge = f"isb{hashlib.sha256(self._run_id.encode()).hexdigest()[:8]}"  # IFNAMSIZ is 16
        first = self.first_subnet()
        taken = ""
        for i in range(200):
            subnet = 16 + (first - 16 + i) % 200
            try:
                net = conn.networkDefineXML(network_xml(self.name, bridge, f"10.214.{subnet}.1", 24))
                net.create()
                return subnet
            except libvirt.libvirtError as err:
                remove_network(self._conn, self.name)
                if "already in use" not in (err.get_error_message() or ""):
                    raise SandboxError(f"cannot create network {self.name}: {lv_msg(err)}") from err
                taken = lv_msg(err)
        raise SandboxError(
            f"cannot create network {self.name}: every 10.214.x.0/24 is taken ({taken});"
            " remove stale networks with `isobench gc`"
        )


def remove_network(conn: Connect, name: str) -> bool:
    """Stop and undefine the libvirt network ``name``; False if there is none (or no libvirt)."""
    try:
        net = conn().networkLookupByName(name)
    except (libvirt.libvirtError, DriverUnavailable):
        return False
    with contextlib.suppress(libvirt.libvirtError):
        if net.isActive():
            net.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        net.undefine()
    return True
