"""Parsers of the channels added from ContainerLeaks, on files recorded on this host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from isobench.leakage import CORRELATION_PROBES
from isobench.leakage import series as s


@pytest.fixture
def files(recorded: Callable[[str], Any]) -> dict[str, list[str]]:
    data: dict[str, list[str]] = recorded("procfs_samples.json")["files"]
    return data


def test_pressure_total_is_a_counter(files: dict[str, list[str]]) -> None:
    first, last = (s.pressure_some_total(t) for t in files["/proc/pressure/cpu"])
    assert first is not None and last is not None and last > first
    assert s.pressure_some_total("full avg10=0.00 avg60=0.00 avg300=0.00 total=0") is None


def test_snmp_udp_in_datagrams_count_the_loopback_load(files: dict[str, list[str]]) -> None:
    first, last = (s.snmp_udp_in(t) for t in files["/proc/net/snmp"])
    assert first is not None and last is not None
    assert last - first > 1000  # the net load sent thousands of datagrams between the two
    assert s.snmp_udp_in("Udp: NoPorts\nUdp: 3") is None


def test_buddyinfo_and_pagetypeinfo_count_free_pages_alike(files: dict[str, list[str]]) -> None:
    buddy = s.buddyinfo_used(files["/proc/buddyinfo"][0])
    pagetype = s.pagetypeinfo_used(files["/proc/pagetypeinfo"][0])
    assert buddy is not None and pagetype is not None
    assert buddy < 0 and pagetype < 0  # negated: allocation raises them
    # Same free memory by two routes (read a few ms apart, on a 24 GiB host).
    assert pagetype == pytest.approx(buddy, rel=0.02)
    assert s.buddyinfo_used("Node 0, zone DMA 1 x 3") is None


def test_slabinfo_filp_and_ns_last_pid(files: dict[str, list[str]]) -> None:
    filp = s.slabinfo_filp(files["/proc/slabinfo"][0])
    assert filp is not None and filp > 100
    first, last = (s.single_number(t) for t in files["/proc/sys/kernel/ns_last_pid"])
    assert first is not None and last is not None and last > first


def test_schedstat_running_time() -> None:
    text = (
        "version 15\ntimestamp 4295\ncpu0 0 0 0 0 0 0 1000 50 7\ndomain0 3 1 2 3\n"
        "cpu1 0 0 0 0 0 0 2500 60 9\n"
    )
    assert s.schedstat_running(text) == 3500.0
    assert s.schedstat_running("version 15\n") is None


def test_every_new_channel_is_in_the_catalogue() -> None:
    names = {p.name: p for p in CORRELATION_PROBES}
    for name, load in (
        ("pressure_cpu", "cpu"),
        ("schedstat", "cpu"),
        ("buddyinfo", "memory"),
        ("pagetypeinfo", "memory"),
        ("slabinfo", "files"),
        ("net_snmp", "net"),
        ("ns_last_pid", "fork"),
    ):
        assert names[name].load == load
