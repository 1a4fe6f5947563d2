"""runc driver logic that needs no root: config.json, parsers, naming, availability with fakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.runc import network
from isobench.drivers.runc.config import oci_config
from isobench.drivers.runc.driver import RuncDriver, owned, resource_name, runc_error
from isobench.drivers.runc.probe import missing_controllers
from isobench.drivers.runc.stats import parse_events_stats
from isobench.errors import SandboxError
from isobench.hostsys import HostProbe, Tools
from isobench.hostsys.cgroups import open_manager
from isobench.hostsys.fake import fake_host
from isobench.hostsys.links import parse_links
from isobench.liveruns import LiveRun, Sparing
from isobench.mounts import (
    OverlayDirs,
    overlay_mounts,
    overlay_options,
    parse_mountinfo,
)

DATA = Path(__file__).parent / "data"


# -- config.json -------------------------------------------------------------------------------


def _config(**kw: object) -> dict[str, object]:
    spec = SandboxSpec(name="web", run_id="r1", **kw)  # type: ignore[arg-type]
    return oci_config(
        spec,
        rootfs=Path("/w/isobench-runc-r1-web/merged"),
        args=("sleep", "2147483647"),
        cgroups_path="/isobench-runc-r1-web",
        hostname="web",
    )


def test_config_matches_golden_file() -> None:
    cfg = _config(vcpus=2, cpuset=(1, 0), memory_mib=256, pids_limit=64, volume=Path("/srv/vol"))
    golden = json.loads((DATA / "config_golden.json").read_text())
    assert json.loads(json.dumps(cfg)) == golden


def test_config_limits_follow_the_spec() -> None:
    cfg = _config(vcpus=3, memory_mib=100, pids_limit=None)
    res = cfg["linux"]["resources"]  # type: ignore[index]
    assert res["memory"] == {"limit": 100 * 1024 * 1024}
    assert res["cpu"] == {"quota": 300_000, "period": 100_000}  # no cpuset -> no cpus key
    assert "pids" not in res
    assert res["devices"] == [{"allow": False, "access": "rwm"}]


def test_a_spec_cpu_quota_is_the_oci_quota() -> None:
    res = _config(vcpus=1, cpu_quota=0.5)["linux"]["resources"]  # type: ignore[index]
    assert res["cpu"] == {"quota": 50_000, "period": 100_000}


def test_config_namespaces_and_hardening_match_runc_spec_defaults() -> None:
    cfg = _config()
    linux = cfg["linux"]
    assert {ns["type"] for ns in linux["namespaces"]} == {"pid", "network", "ipc", "uts", "mount"}  # type: ignore[index]
    assert "/proc/kcore" in linux["maskedPaths"]  # type: ignore[index]
    assert "/proc/sys" in linux["readonlyPaths"]  # type: ignore[index]
    proc = cfg["process"]
    assert proc["noNewPrivileges"] is True  # type: ignore[index]
    assert proc["terminal"] is False  # type: ignore[index]
    assert cfg["root"] == {"path": "/w/isobench-runc-r1-web/merged", "readonly": False}
    dests = [m["destination"] for m in cfg["mounts"]]  # type: ignore[attr-defined]
    assert "/data" not in dests
    assert dests[:2] == ["/proc", "/dev"]


# -- runc events --stats -------------------------------------------------------------------------


def test_stats_parser_on_recorded_cgroup_v1_output() -> None:
    stats = parse_events_stats((DATA / "events_stats_v1.json").read_text())
    assert stats["memory_bytes"] == 311296
    assert stats["memory_peak_bytes"] == 1974272
    assert stats["memory_limit_bytes"] == 64 * 1024 * 1024
    assert stats["memory_rss_bytes"] == 53248
    # total_rss + total_cache + the kmem counter runc reports as memory.kernel.usage
    assert stats["memory_footprint_bytes"] == 53248 + 0 + 245760
    assert stats["cpu_seconds"] == pytest.approx(0.016102683)
    assert stats["pids"] == 1


def test_stats_parser_reads_a_v2_footprint_from_memory_stat_alone() -> None:
    doc = json.loads((DATA / "events_stats_v1.json").read_text())
    doc["data"]["memory"]["raw"] = {"anon": 4096, "file": 8192, "kernel": 1024, "sock": 0}
    assert parse_events_stats(json.dumps(doc))["memory_footprint_bytes"] == 4096 + 8192 + 1024
    doc["data"]["memory"]["raw"] = {"anon": 4096, "file": 8192}  # before Linux 5.18
    assert "memory_footprint_bytes" not in parse_events_stats(json.dumps(doc))


def test_stats_parser_drops_unlimited_memory_limit() -> None:
    doc = json.loads((DATA / "events_stats_v1.json").read_text())
    doc["data"]["memory"]["usage"]["limit"] = 9223372036854771712
    assert "memory_limit_bytes" not in parse_events_stats(json.dumps(doc))


def test_stats_parser_rejects_non_json() -> None:
    with pytest.raises(SandboxError, match="no JSON"):
        parse_events_stats('time="x" level=error msg="container does not exist"')
    with pytest.raises(SandboxError, match="no 'data'"):
        parse_events_stats('{"type": "stats"}')


def test_runc_error_extracts_last_logged_message() -> None:
    text = (
        'time="2026-11-27T23:59:27Z" level=warning msg="first"\n'
        'time="2026-11-27T23:59:27Z" level=error msg="exec failed: exec: \\"nosuchcmd\\": '
        'executable file not found in $PATH"\n'
    )
    assert runc_error(text) == 'exec failed: exec: "nosuchcmd": executable file not found in $PATH'
    assert runc_error("plain failure\n\n") == "plain failure"
    assert runc_error("") == "no error output"


# -- naming and ownership ---------------------------------------------------------------------------


def test_resource_names_carry_prefix_run_and_sanitised_name() -> None:
    assert resource_name("r1", "web") == "isobench-runc-r1-web"
    assert resource_name("r1", "a b/c") == "isobench-runc-r1-a-b-c"
    assert owned("isobench-runc-r1-web", "r1")
    assert not owned("isobench-runc-r2-web", "r1")
    assert owned("isobench-runc-r2-web", None)
    assert not owned("isobench-r1-web", None)  # the container driver's names are not ours


# -- network slots ---------------------------------------------------------------------------------


def test_veth_slot_addresses_and_names() -> None:
    v = network.Veth(0)
    assert (v.host_ip, v.sandbox_ip) == ("10.213.0.1", "10.213.0.2")
    last = network.Veth(network.SLOTS - 1)
    assert (last.host_ip, last.sandbox_ip) == ("10.213.255.253", "10.213.255.254")
    assert len(last.host_link) <= 15 and "isob" in last.host_link
    assert network.slot_of(last.host_link) == network.SLOTS - 1
    assert network.slot_of("isobr12c") is None
    assert network.slot_of("eth0") is None


def test_pick_slot_takes_lowest_free_and_reports_exhaustion() -> None:
    assert network.pick_slot({0, 1, 3}) == 2
    assert network.pick_slot({0, 1, 3}, start=3) == 4
    with pytest.raises(SandboxError, match="isobench gc"):
        network.pick_slot(range(network.SLOTS))


def test_parse_links_on_recorded_ip_json() -> None:
    links = parse_links((DATA / "ip_link.json").read_text())
    assert [(lk.name, lk.alias) for lk in links] == [
        ("lo", ""),
        ("isobr0h", "isobench-runc-rec-net"),
    ]


# -- mount table -----------------------------------------------------------------------------------


def test_mountinfo_parser_unescapes_and_finds_our_overlays() -> None:
    entries = parse_mountinfo((DATA / "mountinfo.txt").read_text())
    assert entries[0].mount_point == "/" and entries[0].fs_type == "ext4"
    ours = list(overlay_mounts(entries, lambda mp: Path(mp).parent.name == "isobench-runc-rec-net"))
    assert len(ours) == 1
    assert ours[0].mount_point.endswith("/w/isobench-runc-rec-net/merged")
    assert " " in ours[0].mount_point  # \040 decoded


def test_overlay_options_refuse_separator_characters(tmp_path: Path) -> None:
    dirs = OverlayDirs(tmp_path / "sb")
    assert overlay_options(Path("/img"), dirs).startswith("lowerdir=/img,upperdir=")
    with pytest.raises(SandboxError, match="contains"):
        overlay_options(Path("/img:other"), dirs)


# -- availability through the context's HostProbe ----------------------------------------------------

ALL_V1 = ("memory", "cpu", "cpuacct", "cpuset", "pids", "devices")
FOUND = {"runc": "/usr/sbin/runc", "ip": "/usr/sbin/ip", "nsenter": "/usr/bin/nsenter"}


def _driver(tmp_path: Path, host: HostProbe, which: dict[str, str] = FOUND) -> RuncDriver:
    ctx = DriverContext(state_dir=tmp_path / "state", work_dir=tmp_path / "work", run_id="r1", host=host)
    return RuncDriver(ctx, tools=Tools(which=which.get, version=lambda _b: "runc version 1.1.5"))


def test_available_on_hybrid_v1_as_root(tmp_path: Path) -> None:
    avail = _driver(tmp_path, fake_host(tmp_path / "h", "hybrid", v1=ALL_V1)).availability()
    assert avail.ok, avail.reason
    assert avail.details["cgroup_mode"] == "hybrid"
    assert avail.details["version"] == "runc version 1.1.5"
    assert avail.details["network"] is True


def test_unavailable_without_runc_binary(tmp_path: Path) -> None:
    avail = _driver(tmp_path, fake_host(tmp_path / "h", v1=ALL_V1), which={}).availability()
    assert not avail.ok
    assert "runc is not installed" in avail.reason


def test_unavailable_when_not_root(tmp_path: Path) -> None:
    avail = _driver(tmp_path, fake_host(tmp_path / "h", v1=ALL_V1, euid=1000)).availability()
    assert not avail.ok
    assert "needs root" in avail.reason


def test_unavailable_without_cgroups_or_with_missing_controllers(tmp_path: Path) -> None:
    avail = _driver(tmp_path, fake_host(tmp_path / "none", None)).availability()
    assert not avail.ok and "'none'" in avail.reason

    partial = fake_host(tmp_path / "v2", "unified", v2="cpu io memory")
    avail = _driver(tmp_path, partial).availability()
    assert not avail.ok
    assert "'unified'" in avail.reason and "cpuset, pids" in avail.reason


def test_missing_controllers_per_mode(tmp_path: Path) -> None:
    assert missing_controllers(open_manager(fake_host(tmp_path / "a", "unified"))) == []
    v1 = fake_host(tmp_path / "d", "v1", v1=("memory", "cpu"))
    assert missing_controllers(open_manager(v1)) == ["cpuacct", "cpuset", "pids"]


def test_metadata_records_isolation_settings(tmp_path: Path) -> None:
    meta = _driver(tmp_path, fake_host(tmp_path / "h", v1=ALL_V1)).metadata()
    assert meta["runtime"] == "runc"
    assert meta["cgroup_limits"] is True
    assert meta["cgroup_mode"] == "hybrid"
    assert meta["namespaces"] == ["pid", "network", "ipc", "uts", "mount"]


def test_gc_removes_a_dead_containers_cgroups_in_every_hierarchy(tmp_path: Path) -> None:
    """runc makes its cgroup in every mounted hierarchy (name=systemd and a hybrid's cgroup2 too);
    gc removes each of them, and nothing of another run's."""
    host = fake_host(tmp_path / "h", "hybrid", v1=ALL_V1)
    cg = host.path("/sys/fs/cgroup")
    for hier in (*ALL_V1, "systemd", "unified"):
        (cg / hier / "isobench-runc-r1-web").mkdir()
        (cg / hier / "isobench-runc-r2-web").mkdir()
    (cg / "memory/isobench-runc-r1-web/child").mkdir()  # a runtime's nested cgroup
    # os.rmdir refuses a non-empty directory, as cgroupfs does with a child cgroup: the nested one
    # must go first for the leaf to go at all.
    removed = _driver(tmp_path, host, which={})._gc_cgroups("r1")
    assert removed == ["cgroup isobench-runc-r1-web"]
    assert not any((cg / h / "isobench-runc-r1-web").exists() for h in (*ALL_V1, "systemd", "unified"))
    assert all((cg / h / "isobench-runc-r2-web").is_dir() for h in (*ALL_V1, "systemd", "unified"))


def test_config_disk_bandwidth_is_oci_block_io() -> None:
    spec = SandboxSpec(name="web", run_id="r1", io_bps=20 << 20)
    cfg = oci_config(
        spec, rootfs=Path("/m"), args=("true",), cgroups_path="/c", hostname="web", io_devices=[(254, 0)]
    )
    rates = [{"major": 254, "minor": 0, "rate": 20 << 20}]
    assert cfg["linux"]["resources"]["blockIO"] == {
        "throttleReadBpsDevice": rates,
        "throttleWriteBpsDevice": rates,
    }
    assert "blockIO" not in _config()["linux"]["resources"]  # type: ignore[index]
    with pytest.raises(SandboxError, match="disks to throttle"):
        oci_config(spec, rootfs=Path("/m"), args=("true",), cgroups_path="/c", hostname="web")


def test_a_sweep_spares_the_cgroups_of_a_live_run(tmp_path: Path) -> None:
    host = fake_host(tmp_path / "h", "hybrid", v1=ALL_V1)
    cg = host.path("/sys/fs/cgroup")
    for run in ("r1", "r2"):
        (cg / "memory" / f"isobench-runc-{run}-web").mkdir()
    sparing = Sparing((LiveRun("r2", 42, "1", "/elsewhere"),))
    ctx = DriverContext(tmp_path / "state", tmp_path / "work", "gc", host=host, sparing=sparing)
    driver = RuncDriver(ctx, tools=Tools(which={}.get, version=lambda _b: "runc version 1.1.5"))
    assert driver._gc_cgroups(None) == ["cgroup isobench-runc-r1-web"]
    assert (cg / "memory" / "isobench-runc-r2-web").is_dir()
    assert sparing.spared_lines() == [
        "spared 1 resource of live run r2 (pid 42): cgroup isobench-runc-r2-web"
    ]
