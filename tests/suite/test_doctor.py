from pathlib import Path

from isobench.doctor import _kvm_verdict, host_checks
from isobench.hostsys import HostProbe


def test_kvm_verdict_unusable_says_tcg() -> None:
    c = _kvm_verdict({"kvm_usable": False, "kvm_probe": "kvm-pvm: emulation failure"})
    assert c.status == "warn"
    assert "not usable: kvm-pvm: emulation failure" in c.detail
    assert "accel=tcg" in c.detail


def test_kvm_verdict_usable() -> None:
    c = _kvm_verdict({"kvm_usable": True, "kvm_probe": "a KVM probe guest booted"})
    assert c.status == "ok"
    assert "accel=kvm" in c.detail


def test_host_checks_on_a_fake_tree(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/sys/user").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(
        "36 25 0:31 / /sys/fs/cgroup rw,relatime shared:13 - cgroup2 cgroup2 rw\n"
    )
    (tmp_path / "proc/filesystems").write_text("nodev\toverlay\n")
    (tmp_path / "proc/sys/user/max_user_namespaces").write_text("0\n")
    (tmp_path / "proc/cpuinfo").write_text("flags\t: fpu\n")
    checks = {c.name: c for c in host_checks(HostProbe(root=tmp_path))}
    assert checks["cgroups"].detail == "unified cgroup v2"
    assert checks["overlayfs"].status == "ok"
    assert checks["user namespaces"].status == "warn"
    assert checks["/dev/kvm"].status == "warn"
    assert "TCG" in checks["/dev/kvm"].detail
