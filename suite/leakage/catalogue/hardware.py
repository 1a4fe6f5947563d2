"""The host's hardware seen through the sandbox: CPUs, memory, frequency, thermal and power."""

from __future__ import annotations

import re

from isobench.leakage import rules
from isobench.leakage.catalogue.base import (
    Decide,
    Facts,
    HostRead,
    StaticProbe,
    first_float,
    host_file,
    own_kernel,
    script,
)
from isobench.leakage.host import HostView
from isobench.leakage.rules import Verdict

__all__ = ["PROBES"]


def _cpu_topology(host: str | None, inside: str | None, f: Facts) -> Verdict:
    lines = (inside or "").splitlines()
    seen = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    if seen is None:
        return Verdict("presence", False, "cpuinfo not readable inside")
    host_cpus = int(host or 0)
    if host_cpus and host_cpus <= f.allowed_cpus:
        return rules.not_applicable(
            "presence", f"host has {host_cpus} CPUs, no more than the sandbox's {f.allowed_cpus}"
        )
    extra = " ".join(ln.strip() for ln in lines[1:])
    if seen > f.allowed_cpus:
        return Verdict(
            "presence", True, f"sees {seen} CPUs in cpuinfo, limited to {f.allowed_cpus} ({extra})"
        )
    return Verdict("presence", False, f"sees {seen} CPUs, limited to {f.allowed_cpus} ({extra})")


def _host_cpus(hv: HostView, _f: Facts) -> str | None:
    text = hv.read("proc/cpuinfo") or ""
    return str(len(re.findall(r"^processor\s*:", text, re.M)))


def _memory_total(host: str | None, inside: str | None, f: Facts) -> Verdict:
    limit_kb = f.memory_mib * 1024
    h = first_float(host)
    i = first_float(inside)
    if h is None or h <= limit_kb * 1.25:
        return rules.not_applicable("presence", "host memory is not larger than the sandbox limit")
    if i is None:
        return Verdict("presence", False, "MemTotal not readable inside")
    if i > limit_kb * 1.25:
        return Verdict("presence", True, f"MemTotal {i:.0f} kB inside, limit {limit_kb} kB, host {h:.0f} kB")
    return Verdict("presence", False, f"MemTotal {i:.0f} kB within the limit {limit_kb} kB")


def _host_memtotal(hv: HostView, _f: Facts) -> str | None:
    m = re.search(r"^MemTotal:\s*(\d+)", hv.read("proc/meminfo") or "", re.M)
    return m.group(1) if m else None


def _hw_file(host_glob: str, what: str) -> tuple[HostRead, Decide]:
    def host(hv: HostView, _f: Facts) -> str | None:
        found = [p for p in hv.glob(host_glob) if hv.read(p)]
        return found[0] if found else None

    def decide(host_path: str | None, inside: str | None, _f: Facts) -> Verdict:
        if host_path is None:
            return rules.not_applicable("presence", f"host has no {what}")
        val = (inside or "").strip()
        return rules.presence([f"{what} = {val}"] if val else [], what=what)

    return host, decide


_cpufreq_host, _cpufreq = _hw_file("sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq", "CPU frequency")
_thermal_host, _thermal = _hw_file("sys/class/thermal/thermal_zone*/temp", "thermal zone temperature")
_rapl_host, _rapl = _hw_file("sys/class/powercap/intel-rapl:*/energy_uj", "RAPL energy counter")


def cpu_mhz(text: str | None) -> float | None:
    """The first "cpu MHz" of /proc/cpuinfo (the host's live clock where it scales)."""
    m = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", text or "", re.M)
    return float(m.group(1)) if m else None


def _cpuinfo_mhz(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    h, i = cpu_mhz(host), cpu_mhz(inside)
    # Read moments apart; a scaling CPU may move a little in between.
    return rules.within(h, i, h * 0.01 if h else 0.0, what="cpu MHz")


def _dmi(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    return rules.equal(host, inside, what="DMI product_uuid")


#: Fingerprints of the host's hardware, and one power side channel (RAPL).
PROBES: tuple[StaticProbe, ...] = (
    StaticProbe(
        "cpu_topology",
        "presence",
        1,
        "more CPUs visible than the sandbox may use",
        script(
            "grep -c '^processor' /proc/cpuinfo; cat /sys/devices/system/cpu/online; "
            "cat /sys/devices/system/node/online"
        ),
        _host_cpus,
        _cpu_topology,
    ),
    StaticProbe(
        "memory_total",
        "presence",
        1,
        "more memory visible than the sandbox's limit",
        script("grep '^MemTotal' /proc/meminfo"),
        _host_memtotal,
        _memory_total,
    ),
    StaticProbe(
        "cpuinfo_mhz",
        "equal",
        1,
        "/proc/cpuinfo's cpu MHz is the host's (a live frequency where the CPU scales)",
        script("grep -m 1 '^cpu MHz' /proc/cpuinfo"),
        host_file("proc/cpuinfo"),
        # A guest's kernel calibrates its own clock (close to the host's under KVM): not this leak.
        own_kernel(_cpuinfo_mhz),
    ),
    StaticProbe(
        "dmi_product_uuid",
        "equal",
        1,
        "the machine's DMI product_uuid equals the host's",
        script("cat /sys/class/dmi/id/product_uuid"),
        host_file("sys/class/dmi/id/product_uuid"),
        _dmi,
    ),
    StaticProbe(
        "cpufreq",
        "presence",
        1,
        "host CPU frequency files readable",
        script("cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq | head -n 1"),
        _cpufreq_host,
        _cpufreq,
    ),
    StaticProbe(
        "thermal",
        "presence",
        1,
        "host thermal sensors readable",
        script("cat /sys/class/thermal/thermal_zone*/temp | head -n 1"),
        _thermal_host,
        _thermal,
    ),
    StaticProbe(
        "rapl",
        "presence",
        1,
        "RAPL energy counters readable (power side channel)",
        script("cat /sys/class/powercap/intel-rapl:*/energy_uj | head -n 1"),
        _rapl_host,
        _rapl,
    ),
)
