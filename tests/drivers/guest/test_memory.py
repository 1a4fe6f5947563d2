"""Memory accounting of a guest: qemu's smaps without guest RAM, the guest's meminfo, host checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from isobench.drivers.guest.memory import (
    guest_used_bytes,
    meminfo_kib,
    parse_smaps,
    qemu_process_stats,
    reserve_host_memory,
)
from isobench.errors import SandboxError

SMAPS = """\
55d0a0000000-55d0a0100000 r-xp 00000000 08:01 123  /usr/bin/qemu-system-x86_64
Rss:                1024 kB
Pss:                 512 kB
Private_Clean:       256 kB
Private_Dirty:         0 kB
7f0000000000-7f0020000000 rw-p 00000000 00:00 0
Rss:              131072 kB
Pss:              131072 kB
Private_Clean:         0 kB
Private_Dirty:    131072 kB
7f1000000000-7f1000400000 rw-p 00000000 00:00 0
Rss:                2048 kB
Pss:                2048 kB
Private_Clean:         0 kB
Private_Dirty:      2048 kB
"""


def test_smaps_excludes_guest_ram() -> None:
    mem = parse_smaps(SMAPS, 512 << 20)
    assert mem.guest_ram_found
    assert mem.guest_ram_rss_bytes == 131072 * 1024
    assert mem.pss_bytes == (512 + 2048) * 1024
    assert mem.uss_bytes == (256 + 2048) * 1024


def test_qemu_process_stats_and_guest_used(tmp_path: Path) -> None:

    (tmp_path / "stat").write_text("123 (qemu-system-x86) S " + " ".join(["0"] * 10) + " 250 150 0 0\n")
    stats = qemu_process_stats(tmp_path, guest_ram_bytes=1 << 30)  # no smaps file: no memory keys
    assert stats == {"cpu_seconds": 400 / os.sysconf("SC_CLK_TCK")}
    assert guest_used_bytes("MemTotal: 100 kB\nMemAvailable: 40 kB\n") == 60 * 1024
    assert guest_used_bytes("garbled frame") is None


def test_meminfo() -> None:
    assert meminfo_kib("MemTotal: 100 kB\nMemAvailable: 40 kB\nHugePages_Total: 0\n") == {
        "MemTotal": 100,
        "MemAvailable": 40,
        "HugePages_Total": 0,
    }


def test_host_memory_pre_check(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal: 4194304 kB\nMemAvailable: 1048576 kB\n")
    assert reserve_host_memory("g", 512, tmp_path) == 1048576
    with pytest.raises(SandboxError, match="the host has 1024 MiB available, cannot give 2048 MiB"):
        reserve_host_memory("g", 2048, tmp_path)
    assert reserve_host_memory("g", 2048, tmp_path / "nowhere") == 0  # unknown: not refused
