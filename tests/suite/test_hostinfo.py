from pathlib import Path

from isobench.hostinfo import collect, virtualization
from isobench.hostsys import HostProbe
from isobench.hostsys.cgroups import cgroup_mode

V1 = "35 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory\n"
V2 = "36 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:13 - cgroup2 cgroup2 rw\n"
ROOT = "22 1 0:21 / / rw,relatime - ext4 /dev/vda rw\n"


def _mode(root: Path, mountinfo: str) -> str:
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    return cgroup_mode(HostProbe(root=root))


def test_cgroup_modes(tmp_path: Path) -> None:
    assert _mode(tmp_path, ROOT + V1) == "v1"
    assert _mode(tmp_path, ROOT + V1 + V2) == "hybrid"
    assert _mode(tmp_path, ROOT + V2.replace("/sys/fs/cgroup/unified", "/sys/fs/cgroup")) == "unified"
    assert _mode(tmp_path, ROOT) == "none"


def test_host_report_and_cgroup_manager_agree(tmp_path: Path) -> None:
    """A v1 hierarchy with no controller (name=systemd) beside a cgroup2 root is a unified host:
    the cgroup manager drives it with its v2 backend, and the host report must say the same."""
    from isobench.hostsys.cgroups import V2Manager, open_manager

    named = "37 25 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
    v2_root = V2.replace("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
    assert _mode(tmp_path, ROOT + named + v2_root) == "unified"
    assert isinstance(open_manager(HostProbe(root=tmp_path)), V2Manager)


def test_fake_tree(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(ROOT + V1 + V2)
    (tmp_path / "proc/cpuinfo").write_text("model name\t: Fake CPU\nflags\t\t: fpu svm hypervisor\n")
    for mod in ("kvm", "kvm_pvm"):
        (tmp_path / "sys/module" / mod).mkdir(parents=True)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kvm").touch()
    host = HostProbe(root=tmp_path)
    assert cgroup_mode(host) == "hybrid"
    v = virtualization(host)
    assert v["guest"] and v["cpu_virt_ext"] and v["dev_kvm"] and v["kvm_pvm"]
    info = collect(host, versions=False)
    assert info["cpu_model"] == "Fake CPU"
    assert info["cgroup_mode"] == "hybrid"


def test_real_host_is_readable() -> None:
    info = collect()
    assert info["cpus"] and info["cpus"] >= 1
    assert info["memory_bytes"] > 0
    assert info["cgroup_mode"] in ("v1", "hybrid", "unified")
    assert "fio" in info["versions"]
