"""Correlation probes decided on sampling dumps recorded through the host driver on this machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from isobench.leakage import CORRELATION_PROBES
from isobench.leakage import series as s
from isobench.leakage.runner import decide_correlation

PROBES = {p.name: p for p in CORRELATION_PROBES}


def _decide(rec: dict[str, Any], probe: str, shift_periods: int = 0) -> Any:
    pat = rec["pattern"]
    pattern = s.LoadPattern(pat["start"] + shift_periods * pat["period"], pat["period"], pat["periods"])
    samples = s.parse_dump(rec["stdout"])
    off, how = s.align_offset(samples[0].t, samples[-1].t, rec["exec_start"], rec["exec_end"])
    assert how == "shared boot clock"
    return decide_correlation(PROBES[probe], samples, pattern, off, how)


def test_interrupts_follow_host_ipi_load(recorded: Callable[[str], Any]) -> None:
    v = _decide(recorded("corr_ipi.json"), "interrupts")
    assert v.leaks, v.evidence
    assert v.r >= 0.8
    assert v.p < 0.01


def test_interrupts_without_host_load_do_not_count(recorded: Callable[[str], Any]) -> None:
    """Same sampling, same pattern, but the host drove no load: the pattern explains nothing."""
    v = _decide(recorded("corr_ipi_noload.json"), "interrupts")
    assert not v.leaks, v.evidence
    assert abs(v.r) < 0.5


def test_pattern_shifted_by_one_period_is_anti_correlated_and_does_not_count(
    recorded: Callable[[str], Any],
) -> None:
    v = _decide(recorded("corr_ipi.json"), "interrupts", shift_periods=1)
    assert not v.leaks
    assert v.r < 0


def test_meminfo_follows_host_memory_toucher(recorded: Callable[[str], Any]) -> None:
    v = _decide(recorded("corr_memory.json"), "meminfo")
    assert v.leaks, v.evidence


def test_missing_file_inside_is_no_leak(recorded: Callable[[str], Any]) -> None:
    v = _decide(recorded("corr_memory.json"), "zoneinfo")  # recorded dump kept only meminfo
    assert not v.leaks
    assert "not readable" in v.evidence
