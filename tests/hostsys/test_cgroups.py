"""cgroup managers against fake cgroupfs trees (a fake host root, the probe's seam), and host mode
detection from recorded mountinfo."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from isobench.errors import SandboxError
from isobench.hostsys.cgroups import (
    CgroupLimits,
    V1Manager,
    V2Manager,
    detect_layout,
    host_layout,
    open_manager,
    parse_flat_keyed,
)
from isobench.hostsys.cgroups.common import remove_matching, remove_trees
from isobench.hostsys.fake import fake_host, fake_rmdir

# Recorded from this project's CI host (cgroup v1 + empty cgroup2 "unified": hybrid).
HYBRID_MOUNTINFO = """\
25 1 0:23 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

# A systemd host with the unified hierarchy (Debian 12 default).
UNIFIED_MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
)

# Old-style v1 host with co-mounted cpu,cpuacct and no cgroup2 at all.
V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
35 31 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:14 - cgroup cgroup rw,memory
36 31 0:32 / /sys/fs/cgroup/pids rw,nosuid shared:15 - cgroup cgroup rw,pids
"""


def test_detect_hybrid() -> None:
    layout = detect_layout(HYBRID_MOUNTINFO)
    assert layout.mode == "hybrid"
    assert layout.v1_mounts["memory"] == Path("/sys/fs/cgroup/memory")
    assert layout.v2_root == Path("/sys/fs/cgroup/unified")
    assert "systemd" not in layout.v1_mounts and "name=systemd" not in layout.v1_mounts


def test_detect_unified() -> None:
    layout = detect_layout(UNIFIED_MOUNTINFO)
    assert layout.mode == "unified"
    assert layout.v2_root == Path("/sys/fs/cgroup")


def test_detect_v1_comounted() -> None:
    layout = detect_layout(V1_MOUNTINFO)
    assert layout.mode == "v1"
    assert layout.v1_mounts["cpu"] == layout.v1_mounts["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")


def test_manager_per_mode_and_mounts_under_the_probe_root(tmp_path: Path) -> None:
    assert isinstance(open_manager(fake_host(tmp_path / "u", "unified")), V2Manager)
    v1 = fake_host(tmp_path / "v", "v1", v1=("cpu,cpuacct", "memory", "pids"))
    assert isinstance(open_manager(v1), V1Manager)
    layout = host_layout(v1)
    assert layout.v1_mounts["cpuacct"] == tmp_path / "v/sys/fs/cgroup/cpu,cpuacct"
    assert layout.named_mounts == (tmp_path / "v/sys/fs/cgroup/systemd",)


def test_detect_nothing_mounted() -> None:
    with pytest.raises(SandboxError, match="no cgroup filesystem"):
        detect_layout("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")


def test_detect_this_host() -> None:
    # Whatever this host is, it must classify into one of the three modes.
    assert detect_layout(Path("/proc/self/mountinfo").read_text()).mode in {"v1", "hybrid", "unified"}


# ------------------------------------------------------------------------------------------ v1 fake


def fake_v1(
    tmp_path: Path, controllers: tuple[str, ...] = ("cpu", "cpuacct", "cpuset", "memory", "pids")
) -> V1Manager:
    mgr = open_manager(fake_host(tmp_path, "v1", v1=controllers), rmdir=fake_rmdir)
    assert isinstance(mgr, V1Manager)
    return mgr


def test_v1_applies_limits(tmp_path: Path) -> None:
    mgr = fake_v1(tmp_path)
    limits = CgroupLimits(
        memory_bytes=64 << 20, swap_bytes=0, cpu_quota_us=50_000, cpuset=(1, 0), pids_max=100
    )
    # The fake kernel has no swap accounting (no memory.memsw.* files): a swap limit must fail.
    with pytest.raises(SandboxError, match="swap accounting"):
        mgr.create("cg1", limits)
    # Nothing is left after the failure.
    assert not any(
        (tmp_path / "sys/fs/cgroup" / c / "cg1").exists()
        for c in ("cpu", "cpuacct", "cpuset", "memory", "pids")
    )
    cg = mgr.create(
        "cg1",
        CgroupLimits(
            memory_bytes=64 << 20, swap_bytes=None, cpu_quota_us=50_000, cpuset=(1, 0), pids_max=100
        ),
    )
    assert (tmp_path / "sys/fs/cgroup/memory/cg1/memory.limit_in_bytes").read_text() == str(64 << 20)
    assert not (tmp_path / "sys/fs/cgroup/memory/cg1/memory.memsw.limit_in_bytes").exists()
    assert (tmp_path / "sys/fs/cgroup/cpu/cg1/cpu.cfs_quota_us").read_text() == "50000"
    assert (tmp_path / "sys/fs/cgroup/cpu/cg1/cpu.cfs_period_us").read_text() == "100000"
    assert (tmp_path / "sys/fs/cgroup/cpuset/cg1/cpuset.cpus").read_text() == "0,1"
    assert (tmp_path / "sys/fs/cgroup/cpuset/cg1/cpuset.mems").read_text() == "0"
    assert (tmp_path / "sys/fs/cgroup/pids/cg1/pids.max").read_text() == "100"
    assert set(cg.procs_files) == {
        tmp_path / "sys/fs/cgroup" / c / "cg1" / "cgroup.procs"
        for c in ("cpu", "cpuacct", "cpuset", "memory", "pids")
    }
    assert all(f.name == "tasks" for f in cg.self_attach_files)
    assert mgr.find(lambda n: n.startswith("cg")) == ["cg1"]
    cg.remove()
    cg.remove()  # idempotent
    assert mgr.find(lambda n: True) == []


def test_remove_matching_removes_what_matches_and_names_what_stays(tmp_path: Path) -> None:
    mgr = fake_v1(tmp_path)
    for name in ("gc-a", "gc-b", "keep"):
        mgr.create(name, CgroupLimits())
    real_open = mgr.open

    class Stuck:  # a cgroup the kernel will not let go of
        def remove(self) -> None:
            raise SandboxError("still busy")

    mgr.open = lambda name: Stuck() if name == "gc-b" else real_open(name)  # type: ignore[method-assign, assignment, return-value]
    removed, left = remove_matching(mgr, lambda n: n.startswith("gc-"))
    assert removed == ["cgroup gc-a"] and left == ["cgroup gc-b: still busy"]
    assert sorted(mgr.find(lambda n: True)) == ["gc-b", "keep"]


def test_v1_missing_controller_names_it(tmp_path: Path) -> None:
    mgr = fake_v1(tmp_path, controllers=("cpu", "cpuacct", "memory"))
    with pytest.raises(SandboxError, match="'pids' is not mounted"):
        mgr.create("cg", CgroupLimits(memory_bytes=1 << 30))
    assert not (tmp_path / "sys/fs/cgroup/memory" / "cg").exists()


def test_v1_comounted_dirs_once(tmp_path: Path) -> None:
    mgr = fake_v1(tmp_path, ("cpu,cpuacct", "memory", "pids"))
    cg = mgr.create("x", CgroupLimits(memory_bytes=1 << 30, swap_bytes=None, cpu_quota_us=100_000))
    assert len(cg.procs_files) == 3
    cg.remove()


def test_v1_unapplicable_limit_is_one_error_and_leaves_nothing(tmp_path: Path) -> None:
    mgr = fake_v1(tmp_path)
    real_mkdir = Path.mkdir

    def mkdir_refusing_pids(self: Path, *a: object, **kw: object) -> None:
        real_mkdir(self, *a, **kw)  # type: ignore[arg-type]
        if self.parent.name == "pids":
            # A directory in place of pids.max stands in for a value the kernel refuses.
            real_mkdir(self / "pids.max")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "mkdir", mkdir_refusing_pids)
        with pytest.raises(SandboxError, match=r"cgroup: cannot set pids limit \(pids.max=10\)"):
            mgr.create("bad", CgroupLimits(memory_bytes=1 << 30, swap_bytes=None, pids_max=10))
    assert mgr.find(lambda n: True) == []


def test_v1_stats_from_fake_files(tmp_path: Path) -> None:
    mgr = fake_v1(tmp_path)
    cg = mgr.create("s", CgroupLimits(memory_bytes=1 << 30, swap_bytes=None))
    (tmp_path / "sys/fs/cgroup/memory/s/memory.usage_in_bytes").write_text("1048576\n")
    (tmp_path / "sys/fs/cgroup/memory/s/memory.max_usage_in_bytes").write_text("2097152\n")
    (tmp_path / "sys/fs/cgroup/memory/s/memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
    )
    (tmp_path / "sys/fs/cgroup/memory/s/memory.stat").write_text("cache 4096\nrss 8192\ntotal_rss 8192\n")
    (tmp_path / "sys/fs/cgroup/cpuacct/s/cpuacct.usage").write_text("1500000000\n")
    (tmp_path / "sys/fs/cgroup/pids/s/pids.current").write_text("3\n")
    assert "memory_footprint_bytes" not in cg.stats()  # no total_cache, no kmem counter: not known
    (tmp_path / "sys/fs/cgroup/memory/s/memory.stat").write_text(
        "cache 4096\nrss 8192\ntotal_cache 4096\ntotal_rss 12288\n"
    )
    (tmp_path / "sys/fs/cgroup/memory/s/memory.kmem.usage_in_bytes").write_text("65536\n")
    st = cg.stats()
    # pages (hierarchical) and kernel objects, without the usage counter's per-CPU reserve
    assert st["memory_footprint_bytes"] == 4096 + 12288 + 65536
    assert st["memory_bytes"] == 1048576
    assert st["memory_peak_bytes"] == 2097152
    assert st["oom_kills"] == 2
    assert st["cpu_seconds"] == pytest.approx(1.5)
    assert st["pids"] == 3
    assert st["memory_stat.rss"] == 8192 and "memory_stat.total_rss" not in st
    assert st["memory_rss_bytes"] == 12288  # total_rss: the hierarchy's, as runc and docker report it
    assert st["memory_limit_bytes"] == 1 << 30  # what create wrote to memory.limit_in_bytes
    cg.remove()


# ------------------------------------------------------------------------------------------ v2 fake


def fake_v2(tmp_path: Path, controllers: str = "cpuset cpu io memory pids") -> V2Manager:
    host = fake_host(tmp_path, "unified", v2=controllers)
    mgr = open_manager(host, rmdir=fake_rmdir)
    root = tmp_path / "sys/fs/cgroup"
    (root / "cgroup.subtree_control").write_text("memory\n")
    assert isinstance(mgr, V2Manager) and mgr.base == root
    return mgr


def test_v2_applies_limits_and_enables_controllers(tmp_path: Path) -> None:
    mgr = fake_v2(tmp_path)
    root = tmp_path / "sys/fs/cgroup"
    cg = mgr.create(
        "c1",
        CgroupLimits(memory_bytes=256 << 20, swap_bytes=None, cpu_quota_us=150_000, cpuset=(0,), pids_max=64),
    )
    # Only controllers not yet enabled are written (memory already was).
    assert (root / "cgroup.subtree_control").read_text() == "+cpu +pids +cpuset"
    assert (root / "c1/memory.max").read_text() == str(256 << 20)
    assert (root / "c1/cpu.max").read_text() == "150000 100000"
    assert (root / "c1/cpuset.cpus").read_text() == "0"
    assert (root / "c1/pids.max").read_text() == "64"
    assert cg.procs_files == (root / "c1" / "cgroup.procs",)
    assert cg.self_attach_files == ()
    assert mgr.find(lambda n: n == "c1") == ["c1"]
    cg.remove()
    assert not (root / "c1").exists()


def test_v2_swap_unsupported_is_one_error_and_leaves_nothing(tmp_path: Path) -> None:
    mgr = fake_v2(tmp_path)
    with pytest.raises(SandboxError, match=r"memory\.swap\.max"):
        mgr.create("c2", CgroupLimits(memory_bytes=256 << 20, swap_bytes=0))
    assert not (tmp_path / "sys/fs/cgroup" / "c2").exists()


def test_v2_swap_limit_written(tmp_path: Path) -> None:
    mgr = fake_v2(tmp_path)
    root = tmp_path / "sys/fs/cgroup"

    real_mkdir = Path.mkdir

    def mkdir_with_swap(self: Path, *a: object, **kw: object) -> None:
        real_mkdir(self, *a, **kw)  # type: ignore[arg-type]
        (self / "memory.swap.max").write_text("max\n")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "mkdir", mkdir_with_swap)
        cg = mgr.create("sw", CgroupLimits(memory_bytes=64 << 20, swap_bytes=16 << 20))
    assert (root / "sw/memory.swap.max").read_text() == str(16 << 20)
    cg.remove()


def test_v2_missing_controller_names_it(tmp_path: Path) -> None:
    mgr = fake_v2(tmp_path, controllers="cpu memory")
    with pytest.raises(SandboxError, match="'pids' is not available"):
        mgr.create("c", CgroupLimits(memory_bytes=1 << 30, swap_bytes=None))
    assert not (tmp_path / "sys/fs/cgroup" / "c").exists()


def test_v2_stats_from_fake_files(tmp_path: Path) -> None:
    mgr = fake_v2(tmp_path)
    cg = mgr.create("s", CgroupLimits(memory_bytes=1 << 30, swap_bytes=None))
    d = tmp_path / "sys/fs/cgroup" / "s"
    (d / "memory.current").write_text("4096\n")
    (d / "memory.peak").write_text("8192\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n")
    (d / "memory.stat").write_text("anon 1024\nfile 2048\n")
    (d / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (d / "pids.current").write_text("5\n")
    assert "memory_footprint_bytes" not in cg.stats()  # before Linux 5.18: no "kernel" in memory.stat
    (d / "memory.stat").write_text("anon 1024\nfile 2048\nkernel 512\nsock 256\n")
    st = cg.stats()
    assert st == {
        "memory_bytes": 4096,
        "memory_footprint_bytes": 1024 + 2048 + 512 + 256,
        "memory_peak_bytes": 8192,
        "memory_limit_bytes": 1 << 30,  # what create wrote to memory.max
        "memory_rss_bytes": 1024,  # anon
        "oom_kills": 1,
        "memory_stat.anon": 1024,
        "memory_stat.file": 2048,
        "memory_stat.kernel": 512,
        "memory_stat.sock": 256,
        "cpu_seconds": 2.5,
        "pids": 5,
    }
    cg.remove()


def test_limits_validation() -> None:
    with pytest.raises(SandboxError, match="below the kernel minimum"):
        CgroupLimits(cpu_quota_us=10)
    with pytest.raises(SandboxError, match="needs a memory limit"):
        CgroupLimits(memory_bytes=None, swap_bytes=1)


def test_parse_flat_keyed_skips_junk() -> None:
    assert parse_flat_keyed("a 1\nbad\nb x\nc 2 3\nd 4\n") == {"a": 1.0, "d": 4.0}


def test_v1_disk_bandwidth_goes_to_blkio_throttle(tmp_path: Path) -> None:
    mgr = fake_v1(tmp_path, ("cpu", "cpuacct", "memory", "pids", "blkio"))
    limits = CgroupLimits(memory_bytes=64 << 20, swap_bytes=None, io_bps=20 << 20, io_devices=((254, 0),))
    assert "blkio" in mgr.controllers_for(limits)
    assert "blkio" not in mgr.controllers_for(CgroupLimits(memory_bytes=64 << 20, swap_bytes=None))
    cg = mgr.create("io1", limits)
    blkio = tmp_path / "sys/fs/cgroup/blkio/io1"
    assert (blkio / "blkio.throttle.read_bps_device").read_text() == f"254:0 {20 << 20}"
    assert (blkio / "blkio.throttle.write_bps_device").read_text() == f"254:0 {20 << 20}"
    assert blkio / "cgroup.procs" in cg.procs_files
    cg.remove()
    assert not blkio.exists()


def test_v1_disk_bandwidth_without_blkio_is_one_error(tmp_path: Path) -> None:
    mgr = fake_v1(tmp_path)
    with pytest.raises(SandboxError, match="'blkio' is not mounted"):
        mgr.create("io2", CgroupLimits(swap_bytes=None, io_bps=1 << 20, io_devices=((8, 0),)))
    assert not (tmp_path / "sys/fs/cgroup/memory/io2").exists()


def test_v2_disk_bandwidth_goes_to_io_max(tmp_path: Path) -> None:
    mgr = fake_v2(tmp_path)
    root = tmp_path / "sys/fs/cgroup"
    mgr.create("io3", CgroupLimits(swap_bytes=None, io_bps=5 << 20, io_devices=((8, 16),)))
    assert "+io" in (root / "cgroup.subtree_control").read_text()
    assert (root / "io3/io.max").read_text() == f"8:16 rbps={5 << 20} wbps={5 << 20}"


def test_disk_bandwidth_needs_a_device() -> None:
    with pytest.raises(SandboxError, match="at least one device"):
        CgroupLimits(io_bps=1 << 20)


def test_removing_an_empty_cgroup_is_one_rmdir_and_a_busy_one_goes_the_long_way(tmp_path: Path) -> None:
    empty, busy = tmp_path / "empty", tmp_path / "busy"
    for d in (empty, busy / "child"):
        d.mkdir(parents=True)
        (d / "cgroup.procs").write_text("")
    (busy / "cgroup.procs").write_text("")
    calls: list[str] = []
    refused: set[Path] = {busy}

    def rmdir(path: Path) -> None:
        calls.append(path.name)
        if path in refused:  # the kernel's EBUSY for a cgroup with a child
            refused.discard(path)
            raise OSError(errno.EBUSY, "busy", str(path))
        shutil.rmtree(path)

    remove_trees([empty, tmp_path / "gone", busy], rmdir)
    # The empty one: its rmdir alone (no walk, no cgroup.procs read); the busy one: child first.
    assert calls == ["empty", "gone", "busy", "child", "busy"]
    assert not empty.exists() and not busy.exists()
