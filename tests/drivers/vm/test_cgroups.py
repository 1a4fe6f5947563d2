"""gc of libvirt's guest cgroups that a libvirtd killed mid-teardown left (on a fake cgroupfs tree)."""

from __future__ import annotations

from pathlib import Path

from isobench.drivers.vm.cgroups import guest_cgroups, remove_guest_cgroups

DEAD = "isobench-20261130212800ea6a-"
NAME = "qemu-1-isobench-20261130212800ea6a-isobench-20261130212800ea6a-v.libvirt-qemu"
OTHER = "qemu-2-isobench-20261130999999aaaa-isobench-20261130999999aaaa-v.libvirt-qemu"


def tree(root: Path) -> None:
    for ctrl in ("memory", "cpu", "unified"):
        for name in (NAME, OTHER):
            (root / ctrl / "machine" / name / "emulator").mkdir(parents=True)
        (root / ctrl / "machine" / NAME / "vcpu0").mkdir()
    (root / "machine" / NAME).mkdir(parents=True)  # cgroup v2 without systemd: machine at the root


def test_a_dead_runs_guest_cgroups_go_at_every_depth_and_no_other_runs(tmp_path: Path) -> None:
    tree(tmp_path)
    assert len(guest_cgroups(tmp_path, DEAD)) == 4
    removed, left = remove_guest_cgroups(tmp_path, DEAD)
    assert left == [] and len(removed) == 4
    assert not list(tmp_path.glob(f"**/{NAME}"))
    assert len(list(tmp_path.glob(f"*/machine/{OTHER}/emulator"))) == 3  # another run's guest stays


def test_a_cgroup_with_tasks_is_a_leftover(tmp_path: Path) -> None:
    tree(tmp_path)
    # A non-empty directory stands for a cgroup with tasks: rmdir refuses both.
    (tmp_path / "memory" / "machine" / NAME / "vcpu0" / "tasks").write_text("4242\n")
    removed, left = remove_guest_cgroups(tmp_path, DEAD)
    assert len(removed) == 3
    assert len(left) == 1 and left[0].startswith(f"cgroup {tmp_path / 'memory' / 'machine' / NAME}")
    assert "still runs" in left[0]


def test_names_must_carry_the_runs_prefix(tmp_path: Path) -> None:
    (tmp_path / "cpu" / "machine" / "qemu-3-someone-else.libvirt-qemu").mkdir(parents=True)
    (tmp_path / "cpu" / "machine" / f"not-a-guest-{DEAD}").mkdir()
    assert guest_cgroups(tmp_path, DEAD) == [] and remove_guest_cgroups(tmp_path, DEAD) == ([], [])
