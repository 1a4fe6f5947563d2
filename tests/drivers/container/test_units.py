"""Pure parts of the container driver: spec validation, names, the helper report, addresses, records."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.container import ContainerDriver, names
from isobench.drivers.container.config import DEFAULT_NAMESPACES, config_from_spec
from isobench.drivers.container.network import own_link, parse_used_addresses, pick_subnet
from isobench.drivers.container.report import parse_report
from isobench.drivers.container.state import Record, kill_recorded_init, owner_alive
from isobench.errors import SandboxError, UsageError
from isobench.hostsys import HostProbe
from isobench.hostsys.fake import FakeIp, fake_host
from isobench.hostsys.links import Links
from isobench.liveruns import LiveRun, Sparing
from isobench.mounts import find_mounts


def spec(image: Path, **kw: object) -> SandboxSpec:
    return SandboxSpec(name="web-1", run_id="r1", image=image, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ config


def test_defaults(tmp_path: Path) -> None:
    cfg = config_from_spec(spec(tmp_path, vcpus=2, memory_mib=256, pids_limit=50), tmp_path)
    assert cfg.namespaces == DEFAULT_NAMESPACES
    assert "user" not in cfg.namespaces
    assert cfg.hardening is True
    assert cfg.lowers == (tmp_path,)
    assert cfg.limits is not None
    assert cfg.limits.memory_bytes == 256 << 20
    assert cfg.limits.swap_bytes == 0
    assert cfg.limits.cpu_quota_us == 200_000
    assert cfg.limits.pids_max == 50
    assert cfg.hostname == "web-1"
    assert cfg.uid_map is None


def test_namespace_switches(tmp_path: Path) -> None:
    cfg = config_from_spec(spec(tmp_path, options={"namespaces": ["mount", "pid"]}), tmp_path)
    assert cfg.namespaces == ("pid", "mount")
    assert cfg.ns_arg == "pid,mount"


@pytest.mark.parametrize(
    ("options", "network", "message"),
    [
        ({"namespaces": ["pid", "bogus", "mount"]}, False, "unknown namespace 'bogus'"),
        ({"namespaces": ["pid"]}, False, "mount namespace is required"),
        ({"namespaces": "pid,mount"}, False, "must be a list"),
        ({"namespaces": ["mount"]}, True, "needs the net namespace"),
        ({"hardenning": False}, False, "unknown container option 'hardenning'"),
        ({"cpus": 0}, False, "cpus must be a positive number"),
        ({"swap_mib": -1}, False, "swap_mib must be >= 0"),
        ({"cold_upper": "tmpfs"}, False, "cold_upper must be one of memory, disk"),
    ],
)
def test_bad_options_are_usage_errors(
    tmp_path: Path, options: dict[str, object], network: bool, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        config_from_spec(spec(tmp_path, options=options, network=network), tmp_path)


def test_user_namespace_alone_maps_root_to_the_caller_which_is_not_rootless(tmp_path: Path) -> None:
    cfg = config_from_spec(spec(tmp_path, options={"namespaces": [*DEFAULT_NAMESPACES, "user"]}), tmp_path)
    assert "user" in cfg.namespaces
    assert cfg.uid_map == f"0 {os.geteuid()} 1"
    assert cfg.gid_map == f"0 {os.getegid()} 1"
    assert cfg.subids is None


def test_rootless_maps_root_to_a_subordinate_range(tmp_path: Path) -> None:
    cfg = config_from_spec(spec(tmp_path, options={"rootless": True, "subids": "100000:65536"}), tmp_path)
    assert "user" in cfg.namespaces
    assert (cfg.uid_map, cfg.gid_map) == ("0 100000 65536", "0 100000 65536")
    with pytest.raises(UsageError, match="rootless needs subids"):
        config_from_spec(spec(tmp_path, options={"rootless": True}), tmp_path)


def test_layers_stack_above_image(tmp_path: Path) -> None:
    top, mid = tmp_path / "top", tmp_path / "mid"
    top.mkdir()
    mid.mkdir()
    cfg = config_from_spec(spec(tmp_path, options={"layers": [str(top), str(mid)]}), tmp_path)
    assert cfg.lowers == (top, mid, tmp_path)


def test_missing_image_and_volume(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a directory; build the image"):
        config_from_spec(spec(tmp_path), tmp_path / "nope")
    with pytest.raises(UsageError, match="volume"):
        config_from_spec(spec(tmp_path, volume=tmp_path / "nope"), tmp_path)


def test_no_cgroup_and_unlimited_cpu(tmp_path: Path) -> None:
    assert config_from_spec(spec(tmp_path, options={"cgroup": False}), tmp_path).limits is None
    limits = config_from_spec(spec(tmp_path, options={"cpus": None, "swap_mib": None}), tmp_path).limits
    assert limits is not None and limits.cpu_quota_us is None and limits.swap_bytes is None


# ------------------------------------------------------------------------------------------ names


def test_names_carry_prefix_and_run() -> None:
    n = names.names_for("20261128-run/7", "web server", 12)
    assert n.ident.startswith("isobench-20261128-run_7-ctr-")
    assert n.ident.endswith("-12")
    assert names.matches(n.ident, "20261128-run/7")
    assert names.matches(n.ident, None)
    assert not names.matches(n.ident, "other")
    assert not names.matches("isobench-t1-runc-x", None)  # another driver's cgroup
    assert n.hostname == "web_server"


def test_veth_names_fit_and_are_ours() -> None:
    for seq in (0, 35, 36, 36**4 - 1, 36**4 + 5):
        n = names.names_for("some-run-id", "x", seq)
        for link in (n.veth_host, n.veth_peer):
            assert len(link) <= 15
            assert link.startswith("isob" + names.run_digest("some-run-id"))
    assert names.names_for("a", "x", 1).veth_host != names.names_for("b", "x", 1).veth_host


def test_own_links_only() -> None:
    ours = names.names_for("r", "x", 3)
    assert own_link(ours.veth_host) and own_link(ours.veth_peer)
    for other in ("lo", "eth0", "isobench0", "isob-runc-1", "isobr3h", "isobqabcdefbr"):
        assert not own_link(other), other
    assert ours.veth_host.startswith(names.veth_run_prefix("r"))
    assert not ours.veth_host.startswith(names.veth_run_prefix("other"))


# ------------------------------------------------------------------------------------------ report

# Recorded from a real `isobench-ctr init` on the CI host (then an exec'd /bin/true in run mode).
RECORDED_INIT = """\
S 632538300305
P clone 632538319283 632539235980
C 19349
P cgroup_attach 632539235980 632539243731
P cgroup_join 632539277932 632539285153
P overlay 632539303780 632540485790
P mounts 632540485790 632541003316
P masks 632541003316 632541401064
P pivot_root 632541401775 632541610084
P identity 632541611566 632541776069
P hardening 632541777291 632542198915
R
"""


def test_parse_report_init() -> None:
    r = parse_report(RECORDED_INIT)
    assert r.started_ns == 632538300305
    assert r.container_pid == 19349
    assert r.ready and r.error is None
    assert [p.name for p in r.phases] == [
        "clone", "cgroup_attach", "cgroup_join", "overlay", "mounts", "masks", "pivot_root", "identity",
        "hardening",
    ]  # fmt: skip
    assert r.phases[0].seconds == pytest.approx(0.000916697)


def test_parse_report_run_and_error() -> None:
    r = parse_report("S 1\nC 5\nX 10\nW 20\n")
    assert (r.exec_ns, r.exited_ns, r.ready) == (10, 20, False)
    bad = parse_report("S 1\nE mount overlay on /x/merged: No such device\nP broken line\n")
    assert bad.error == "mount overlay on /x/merged: No such device"
    assert parse_report("C notanumber\n").error is not None


# ------------------------------------------------------------------------------------------ network

# Recorded `ip -4 -o addr show` on a host with one container running.
RECORDED_IP = (
    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
    "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever\n"
    "13: isob02c2a40h    inet 172.29.0.1/30 scope global isob02c2a40h\\       valid_lft forever\n"
)


def test_address_allocation_skips_used() -> None:
    used = parse_used_addresses(RECORDED_IP)
    assert ipaddress.IPv4Address("172.29.0.1") in used
    host, ctr = pick_subnet(used)
    assert (str(host), str(ctr)) == ("172.29.0.5", "172.29.0.6")
    assert pick_subnet(set()) == (ipaddress.IPv4Address("172.29.0.1"), ipaddress.IPv4Address("172.29.0.2"))


def test_address_range_exhausted() -> None:
    net = ipaddress.IPv4Network("10.0.0.0/29")
    used = {ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.6")}
    with pytest.raises(SandboxError, match="no free /30"):
        pick_subnet(used, net)


# ------------------------------------------------------------------------------------------ records


def test_owner_alive_needs_same_start_time(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "stat").write_text("4242 (python3 x) S " + " ".join(str(i) for i in range(4, 30)))
    # starttime is field 22: after "pid (comm)" that is index 19 of the rest.
    rec = Record(ident="i", run_id="r", owner_pid=4242, owner_start="22", dir="/x")
    assert owner_alive(rec, proc)
    assert not owner_alive(Record(ident="i", run_id="r", owner_pid=4242, owner_start="99", dir="/x"), proc)
    assert not owner_alive(Record(ident="i", run_id="r", owner_pid=777, owner_start="22", dir="/x"), proc)
    assert not owner_alive(Record(ident="i", run_id="r", owner_pid=os.getpid(), owner_start="x", dir="/x"))


def test_recorded_init_not_killed_if_pid_was_recycled(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "4243").mkdir(parents=True)
    (proc / "4243" / "stat").write_text("4243 (sh) S " + " ".join(str(i) for i in range(4, 30)))
    rec = Record(ident="i", run_id="r", owner_pid=1, owner_start="", dir="/x", init_pid=4243, init_start="7")
    assert kill_recorded_init(rec, proc) is False  # same pid, different start time: someone else's
    assert (
        kill_recorded_init(Record(ident="i", run_id="r", owner_pid=1, owner_start="", dir="/x"), proc)
        is False
    )


def test_find_mounts_matches_path_components() -> None:
    info = (
        "25 1 0:23 / / rw - overlay overlay rw\n"
        "90 25 0:50 / /w/isobench-r1-ctr-a-0/merged rw - overlay overlay rw\n"
        "91 90 0:51 / /w/isobench-r1-ctr-a-0/merged/proc rw - proc proc rw\n"
        "92 25 0:52 / /w/isobench-r2-ctr-b-0/merged rw - overlay overlay rw\n"
        "93 25 0:53 / /w/not\\040isobench-r1-ctr-x rw - tmpfs tmpfs rw\n"
    )
    assert find_mounts(lambda part: names.matches(part, "r1"), info) == [
        "/w/isobench-r1-ctr-a-0/merged/proc",
        "/w/isobench-r1-ctr-a-0/merged",
    ]
    assert len(find_mounts(lambda part: names.matches(part, None), info)) == 3


def test_helper_build_failure_is_driver_unavailable(tmp_path: Path) -> None:
    from isobench.drivers.container.helper import ensure_helper
    from isobench.errors import DriverUnavailable

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(DriverUnavailable, match="cannot build the container helper"):
        ensure_helper(not_a_dir)


# ------------------------------------------------------------------------------------------ host probe


def _driver_on(host: HostProbe, tmp_path: Path) -> ContainerDriver:
    return ContainerDriver(DriverContext(tmp_path / "state", tmp_path / "work", "r", host=host))


def test_availability_and_mode_come_from_the_context_probe(tmp_path: Path) -> None:
    user = fake_host(tmp_path / "user", "hybrid", euid=1000)
    assert "needs root" in _driver_on(user, tmp_path).availability().reason
    no_overlay = fake_host(tmp_path / "nofs", "unified", filesystems=("ext4",))
    assert "overlayfs is not available" in _driver_on(no_overlay, tmp_path).availability().reason
    for mode in ("v1", "hybrid", "unified"):
        host = fake_host(tmp_path / mode, mode)  # type: ignore[arg-type]
        assert _driver_on(host, tmp_path).metadata()["cgroup_mode"] == mode


def test_gc_removes_stray_cgroups_of_the_run_in_a_fake_tree(tmp_path: Path) -> None:
    host = fake_host(tmp_path / "h", "unified")
    cg = host.path("/sys/fs/cgroup")
    ours, other = names.names_for("r", "x", 1).ident, names.names_for("r2", "x", 1).ident
    (cg / ours).mkdir()
    (cg / other).mkdir()
    removed = ContainerDriver(
        DriverContext(tmp_path / "s", tmp_path / "w", "r", host=host), Links(FakeIp())
    ).gc("r")
    assert removed == [f"cgroup {ours}"]
    assert not (cg / ours).exists() and (cg / other).is_dir()
    # A sweep (gc of every run) while r2 lives: r3's goes, r2's is spared and said so.
    dead = names.names_for("r3", "x", 1).ident
    (cg / dead).mkdir()
    sparing = Sparing((LiveRun("r2", 42, "1", "/elsewhere"),))
    ctx = DriverContext(tmp_path / "s", tmp_path / "w", "gc", host=host, sparing=sparing)
    assert ContainerDriver(ctx, Links(FakeIp())).gc(None) == [f"cgroup {dead}"]
    assert (cg / other).is_dir()
    assert sparing.spared_lines() == [f"spared 1 resource of live run r2 (pid 42): container {other}"]


def test_disk_bandwidth_on_the_disks_of_root_and_volume(tmp_path: Path) -> None:
    from isobench.drivers.container.config import with_io_limit
    from isobench.hostsys.fake import fake_disk

    root = tmp_path / "host"
    fake_disk(root, holding=[tmp_path])
    vol = tmp_path / "vol"
    vol.mkdir()
    cfg = config_from_spec(spec(tmp_path, volume=vol, io_bps=20 << 20), tmp_path)
    limited = with_io_limit(cfg, spec(tmp_path, io_bps=20 << 20), tmp_path, HostProbe(root=root))
    assert limited.limits is not None
    assert (limited.limits.io_bps, limited.limits.io_devices) == (20 << 20, ((254, 0),))
    assert with_io_limit(cfg, spec(tmp_path), tmp_path, HostProbe(root=root)) is cfg
    nocg = config_from_spec(spec(tmp_path, options={"cgroup": False}), tmp_path)
    with pytest.raises(UsageError, match="needs a cgroup"):
        with_io_limit(nocg, spec(tmp_path, io_bps=1 << 20), tmp_path, HostProbe(root=root))


def test_a_spec_cpu_quota_is_the_cgroup_quota(tmp_path: Path) -> None:
    limits = config_from_spec(spec(tmp_path, vcpus=1, cpu_quota=0.5), tmp_path).limits
    assert limits is not None and limits.cpu_quota_us == 50_000
    # the driver option still wins: it is the user's explicit word for this driver
    limits = config_from_spec(spec(tmp_path, cpu_quota=0.5, options={"cpus": 0.25}), tmp_path).limits
    assert limits is not None and limits.cpu_quota_us == 25_000
