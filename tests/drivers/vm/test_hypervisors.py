"""One domain XML builder, three hypervisors: each spelling checked against its golden file,
libvirt's RNG schema (virt-xml-validate) and libvirt's test driver; the driver refuses to run the
ones not measured here with one clear line."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest
from isobench.drivers.base import DriverContext
from isobench.drivers.vm.domain import DomainConfig, NetConfig, domain_xml
from isobench.drivers.vm.driver import NOT_MEASURED, VmDriver
from isobench.drivers.vm.hypervisor import ESX, QEMU, XEN, hypervisor_for_uri
from isobench.errors import DriverUnavailable, SandboxError, UsageError

GOLDEN = Path(__file__).parent / "golden"

#: The golden files (built by conftest.domain_cases).
GOLDENS = sorted(p.name for p in GOLDEN.glob("domain_*.xml"))


@pytest.mark.parametrize("golden", GOLDENS)
def test_domain_xml_matches_its_golden_file(golden: str, domain_cases: dict[str, DomainConfig]) -> None:
    assert domain_xml(domain_cases[golden]) == (GOLDEN / golden).read_text()


def _validate(xml: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("virt-xml-validate") is None or shutil.which("xmllint") is None:
        pytest.skip(
            "virt-xml-validate needs libvirt-clients and libxml2-utils (scripts/setup.sh installs both)"
        )
    if not Path("/usr/share/libvirt/schemas/domain.rng").exists():
        pytest.skip("libvirt's RNG schemas are not installed under /usr/share/libvirt/schemas")
    f = tmp_path / "domain.xml"
    f.write_text(xml)
    return subprocess.run(
        ["virt-xml-validate", str(f), "domain"], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("golden", GOLDENS)
def test_libvirts_domain_schema_accepts_every_spelling(
    golden: str, tmp_path: Path, domain_cases: dict[str, DomainConfig]
) -> None:
    res = _validate(domain_xml(domain_cases[golden]), tmp_path)
    assert res.returncode == 0, res.stderr


def test_the_schema_check_rejects_a_broken_domain(
    tmp_path: Path, domain_cases: dict[str, DomainConfig]
) -> None:
    """So the check above means something: a disk bus libvirt does not know fails it."""
    xml = domain_xml(domain_cases["domain_xen.xml"]).replace('bus="xen"', 'bus="xenbus"', 1)
    res = _validate(xml, tmp_path)
    assert res.returncode != 0 and "fails to validate" in res.stderr


@pytest.mark.parametrize(
    ("golden", "domain_type"),
    [
        ("domain_tcg_net.xml", "qemu"),
        ("domain_kvm.xml", "kvm"),
        ("domain_xen.xml", "xen"),
        ("domain_esx.xml", "vmware"),
    ],
)
def test_libvirts_test_driver_defines_and_starts_each_domain(
    golden: str, domain_type: str, domain_cases: dict[str, DomainConfig]
) -> None:
    """test:///default takes every known domain type (it refuses unknown ones) and parses the
    devices generically: Xen's PV channel and ESXi's pvscsi controller survive the round trip."""
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(domain_xml(domain_cases[golden]))
        dom.create()
        live = ET.fromstring(dom.XMLDesc())
        assert live.get("type") == domain_type and dom.isActive()
        if domain_type == "xen":
            assert live.find("./devices/channel/target[@type='xen']") is not None
            assert [t.get("dev") for t in live.iterfind("./devices/disk/target")] == ["xvda", "xvdb"]
        if domain_type == "vmware":
            assert live.find("./devices/controller[@model='vmpvscsi']") is not None
            assert live.find("./os/kernel") is None
        dom.destroy()
        dom.undefine()
        with pytest.raises(libvirt.libvirtError, match="invalid domain type"):
            conn.defineXML(
                domain_xml(domain_cases["domain_tcg_net.xml"]).replace('type="qemu"', 'type="hyperv2"', 1)
            )
    finally:
        conn.close()


def test_per_hypervisor_device_choices(domain_cases: dict[str, DomainConfig]) -> None:
    esx = ET.fromstring(domain_xml(domain_cases["domain_esx.xml"]))
    assert esx.findtext("memory") == "512"
    assert (
        esx.find("./devices/disk/source").get("file") == "[datastore1] isobench-run1-g0/isobench-run1-g0.vmdk"
    )  # type: ignore[union-attr]
    # ESXi refuses static MACs outside 00:50:56:00:00:00-00:50:56:3f:ff:ff
    odd = dataclasses.replace(domain_cases["domain_esx.xml"], net=NetConfig("n", "52:54:00:d6:01:02"))
    assert (
        ET.fromstring(domain_xml(odd)).find("./devices/interface/mac").get("address") == "00:50:56:16:01:02"
    )  # type: ignore[union-attr]
    xen = ET.fromstring(domain_xml(domain_cases["domain_xen.xml"]))
    assert xen.find("./devices/interface/model").get("type") == "netfront"  # type: ignore[union-attr]
    assert xen.find("./cputune/emulatorpin") is None and xen.find("./devices/controller") is None
    with pytest.raises(ValueError, match="agent_socket"):
        domain_xml(dataclasses.replace(domain_cases["domain_xen.xml"], agent_socket=None))


@pytest.mark.parametrize(
    ("uri", "hv"),
    [
        ("qemu:///system", QEMU),
        ("qemu+ssh://root@h/system", QEMU),
        ("test:///default", QEMU),
        ("xen:///system", XEN),
        ("xen+ssh://root@h/system", XEN),
        ("esx://h/?no_verify=1", ESX),
        ("vpx://vc/dc1/srv1", ESX),
    ],
)
def test_the_uri_names_the_hypervisor(uri: str, hv: object) -> None:
    assert hypervisor_for_uri(uri) is hv


def test_an_unknown_uri_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"drivers\.vm\.uri 'lxc:///' names no hypervisor"):
        VmDriver(DriverContext(tmp_path, tmp_path, "r", {"uri": "lxc:///"}))


@pytest.mark.parametrize("uri", ["xen:///system", "esx://esxi.invalid/?no_verify=1"])
def test_xen_and_esx_uris_are_refused_with_one_line(uri: str, tmp_path: Path) -> None:
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "r", {"uri": uri}))
    with pytest.raises(DriverUnavailable) as err:
        drv.conn()
    assert str(err.value) == f"drivers.vm.uri={uri}: {NOT_MEASURED}"
    avail = drv.availability()
    assert not avail.ok and avail.reason == str(err.value) and "\n" not in avail.reason


def test_a_xen_uri_that_answers_still_says_why_it_is_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where Xen answers, the guest side is what is missing (the agent speaks virtio-serial only)."""
    closed: list[bool] = []

    class Answering:
        def close(self) -> int:
            closed.append(True)
            return 0

    monkeypatch.setattr(libvirt, "open", lambda _uri: Answering())
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "r", {"uri": "xen:///system"}))
    with pytest.raises(
        DriverUnavailable, match=r"xen:///system answers, but isobench cannot run Xen.*xenstore"
    ):
        drv.conn()
    assert closed == [True]


def test_iotune_is_a_qemu_guest_spelling_only(domain_cases: dict[str, DomainConfig]) -> None:
    """Both disks carry the limit; a hypervisor whose <iotune> is not measured here refuses it."""
    tuned = ET.fromstring(domain_xml(domain_cases["domain_tcg_iotune.xml"]))
    rates = [
        (d.findtext("iotune/read_bytes_sec"), d.findtext("iotune/write_bytes_sec"))
        for d in tuned.iter("disk")
    ]
    assert rates == [(str(20 << 20), str(20 << 20))] * 2
    plain = ET.fromstring(domain_xml(domain_cases["domain_tcg_net.xml"]))
    assert plain.find("devices/disk/iotune") is None
    with pytest.raises(SandboxError, match="qemu guests only"):
        domain_xml(dataclasses.replace(domain_cases["domain_xen.xml"], io_bps=1 << 20))
