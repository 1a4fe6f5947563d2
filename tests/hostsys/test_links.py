"""The one link module, against a recording iproute2: what each driver's networking is made of."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from isobench.drivers.runc import network as runc_net
from isobench.errors import SandboxError
from isobench.hostsys.fake import FakeIp
from isobench.hostsys.links import LinkExists, Links, ifname, nsenter_net, parse_links, run_tag

Answer = tuple[int, str, str]
DATA = Path(__file__).resolve().parents[1] / "drivers/runc/data"


def test_names_fit_ifnamsiz_and_carry_the_run() -> None:
    assert len(run_tag("20261130-abc")) == 6 and run_tag("a") != run_tag("b")
    assert ifname("isobq123456br") == "isobq123456br"
    for bad in ("", "x" * 16, "a b", "a/b"):
        with pytest.raises(SandboxError, match="not a valid interface name"):
            ifname(bad)


def test_parse_links_on_recorded_ip_json() -> None:
    links = parse_links((DATA / "ip_link.json").read_text())
    assert [(lk.name, lk.alias) for lk in links] == [("lo", ""), ("isobr0h", "isobench-runc-rec-net")]
    with pytest.raises(SandboxError, match="unparsable"):
        parse_links("not json")


def test_veth_into_a_namespace_in_one_batch_a_side() -> None:
    ip = FakeIp()
    links = Links(ip)
    links.add_veth("isobr0h", "isobr0c", 1234, "10.213.0.1/30", alias="isobench-runc-r-x")
    links.configure_inside(nsenter_net(1234), "isobr0c", "10.213.0.2/30", "10.213.0.1", rename="eth0")
    assert ip.calls[0] == [
        "link",
        "add",
        "isobr0h",
        "type",
        "veth",
        "peer",
        "name",
        "isobr0c",
        "netns",
        "1234",
    ]
    assert ["addr", "add", "10.213.0.1/30", "dev", "isobr0h"] in ip.calls
    assert ip.links == {"isobr0h": "isobench-runc-r-x"}
    assert ip.inside == [
        ["link", "set", "dev", "isobr0c", "name", "eth0"],
        ["addr", "add", "10.213.0.2/30", "dev", "eth0"],
        ["link", "set", "dev", "eth0", "up"],
        ["route", "add", "default", "via", "10.213.0.1"],
    ]


def test_a_taken_name_is_link_exists_and_touches_nothing() -> None:
    ip = FakeIp(links=["isobr0h"])
    with pytest.raises(LinkExists):
        Links(ip).add_veth("isobr0h", "isobr0c", 1, "10.213.0.1/30")
    assert ip.links == {"isobr0h": ""}  # someone else's link stays


def test_a_failed_configuration_leaves_no_link() -> None:
    ip = FakeIp(fail_on="addr")
    with pytest.raises(SandboxError, match="creating veth isobr0h failed"):
        Links(ip).add_veth("isobr0h", "isobr0c", 1, "10.213.0.1/30")
    assert ip.links == {}


def test_delete_is_quiet_when_gone_and_loud_otherwise() -> None:
    ip = FakeIp(links=["a"])
    links = Links(ip)
    assert links.delete("a") is True and links.delete("a") is False
    with pytest.raises(SandboxError, match="cannot delete link b"):
        Links(FakeIp(links=["b"], fail_on="del")).delete("b")


def test_delete_of_a_veth_its_namespace_took_along_meanwhile_is_quiet() -> None:
    def ip(argv: list[str], stdin: str | None) -> tuple[int, str, str]:
        return 2, "", "RTNETLINK answers: No such device\n"

    assert Links(ip).delete("isob525d5864h") is False


def test_gc_by_prefix_ports_before_bridges_and_only_owned() -> None:
    ip = FakeIp(links=["isobqabcdefbr", "isobqabcdeft1", "isobqabcdeft2", "isobq999999t1", "eth0"])
    gone = Links(ip).gc("isobqabcdef", lambda lk: lk.name != "isobqabcdeft2")
    assert gone == ["isobqabcdeft1", "isobqabcdefbr"]
    assert set(ip.links) == {"isobqabcdeft2", "isobq999999t1", "eth0"}


def test_runc_moves_to_the_next_slot_when_one_is_taken() -> None:
    ip = FakeIp(links=["isobr0h"])
    links = Links(ip)
    # A racing creator took slot 1 after our listing: the add collides and we move on.
    real = ip.__call__

    def racing(argv: Sequence[str], stdin: str | None = None, /, *, pass_fds: Sequence[int] = ()) -> Answer:
        if stdin and "isobr1h" in stdin and "isobr1h" not in ip.links:
            ip.links["isobr1h"] = "other"
        return real(argv, stdin, pass_fds=pass_fds)

    veth = runc_net.setup_veth(Links(racing), 42, "isobench-runc-r-web")
    assert veth.slot == 2 and ip.links["isobr2h"] == "isobench-runc-r-web"
    assert ip.inside[0] == ["link", "set", "dev", "isobr2c", "name", "eth0"]
    assert links.find(runc_net.PREFIX)[0].name == "isobr0h"
