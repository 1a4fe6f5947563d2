"""The guests' volume image: made on the host with real mkfs.ext4, nothing left on failure."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from isobench.drivers.base import PhaseClock, SandboxSpec
from isobench.drivers.guest.datadisk import make_data_disk, make_guest_data_disk, untraversable_parent
from isobench.errors import SandboxError, UsageError


def test_data_disk_is_a_sparse_ext4_image_with_its_tables_written(tmp_path: Path) -> None:
    img = make_data_disk(tmp_path, "r1-g1", 128)
    assert img == tmp_path / "isobench-r1-g1.data.img"
    st = img.stat()
    assert st.st_size == 128 << 20
    assert st.st_blocks * 512 < st.st_size  # sparse
    info = subprocess.run(["dumpe2fs", "-h", str(img)], capture_output=True, text=True, check=True).stdout
    assert "Filesystem volume name:   isobench-data" in info
    # no lazy init: the guest kernel must not be zeroing inode tables during a benchmark
    groups = subprocess.run(["dumpe2fs", str(img)], capture_output=True, text=True, check=True).stdout
    assert "ITABLE_ZEROED" in groups
    with pytest.raises(SandboxError, match="already exists"):
        make_data_disk(tmp_path, "r1-g1", 128)


def test_bad_volumes_fail_clearly_and_leave_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="not a directory"):
        make_data_disk(tmp_path / "missing", "g", 128)
    with pytest.raises(UsageError, match=">= 64 MiB"):
        make_data_disk(tmp_path, "g", 8)
    # mkfs failing: its words in the error, and the half-made image removed
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "mkfs.ext4"
    fake.write_text("#!/bin/sh\necho 'mkfs.ext4: no space left' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin")
    vol = tmp_path / "vol"
    vol.mkdir()
    with pytest.raises(SandboxError, match="no space left"):
        make_data_disk(vol, "g", 128)
    assert list(vol.iterdir()) == []


def test_untraversable_parent(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    inner = closed / "vol"
    inner.mkdir(parents=True)
    closed.chmod(0o700)
    assert untraversable_parent(inner) == closed
    inner.chmod(0o700)
    assert untraversable_parent(inner) == inner  # the directory itself counts
    inner.chmod(0o755)
    closed.chmod(0o755)
    found = untraversable_parent(inner)
    # pytest's own tmp root is 0700: whatever is found lies above our directory
    assert found is None or closed.is_relative_to(found)


def test_a_guest_gets_a_data_disk_only_for_a_volume_and_times_it(tmp_path: Path) -> None:
    clock = PhaseClock()
    none = make_guest_data_disk(
        SandboxSpec(name="g", run_id="r"), clock, leaf="r-g", layers_path=tmp_path / "l.qcow2", size_mib=64
    )
    assert none is None and clock.phases == []
    spec = SandboxSpec(name="g", run_id="r", volume=tmp_path)
    img = make_guest_data_disk(spec, clock, leaf="r-g", layers_path=tmp_path / "l.qcow2", size_mib=64)
    assert img == tmp_path / "isobench-r-g.data.img" and img.is_file()
    assert [p.name for p in clock.phases] == ["data_disk"]
