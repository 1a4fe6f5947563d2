"""libvirt's spelling of a guest's data disk over a layer stack's qcow2 chain."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

from isobench.drivers.vm.domain import DomainConfig, domain_xml


def test_libvirt_spells_the_chain_out_and_never_relabels_it(guest_config: DomainConfig) -> None:
    chain = (Path("/st/002.qcow2"), Path("/st/001.qcow2"), Path("/st/000.qcow2"))
    cfg = dataclasses.replace(
        guest_config, data_disk=Path("/runs/g0.layers.qcow2"), data_format="qcow2", data_chain=chain
    )
    disk = ET.fromstring(domain_xml(cfg)).findall("devices/disk")[1]
    assert disk.find("driver").get("type") == "qcow2"  # type: ignore[union-attr]
    assert disk.find("source").get("file") == "/runs/g0.layers.qcow2"  # type: ignore[union-attr]
    found, node = [], disk.find("backingStore")
    while node is not None and node.find("source") is not None:
        found.append(Path(node.find("source").get("file")))  # type: ignore[union-attr,arg-type]
        assert node.find("format").get("type") == "qcow2"  # type: ignore[union-attr]
        assert node.find("source/seclabel").get("relabel") == "no"  # type: ignore[union-attr]
        node = node.find("backingStore")
    assert found == list(chain) and node is not None and len(node) == 0
