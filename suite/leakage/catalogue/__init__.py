"""The probe catalogue: what each probe reads inside, what the host reads, and how it decides.

Static probes run together in ONE exec (each prints its own section), with the host's readings
taken just before. Correlation probes are in :mod:`isobench.leakage.correlation`.
Each family of probes is a module of this package; this one puts them in order.

Weights (the leak score is the weighted share of applicable probes that leak, in %):

- **3, host control / kernel attack surface**: capabilities, uid_map, devices (listed, outside /dev,
  made with mknod), writable_paths, masked_paths, kallsyms, kmsg. A leak here helps an attacker act
  on the host, not just watch it.
- **2, cross-tenant observation**: the canaries (host_process_names, host_pids, sched_debug,
  proc_locks, host_files, mount_canary, net_devices, unix_sockets, net_tcp, net_udp, proc1), modules,
  timer_list and every correlation channel. A leak here shows what other tenants or the host are
  doing (proc1: the runner's environment, which may hold secrets).
- **1, fingerprinting**: boot_id, uptime, btime, kernel_release, kernel_version, cmdline, hostname,
  gateway, arp, mountinfo_host_paths, cgroup_id, namespaces, seccomp (Docker-blocked syscalls that
  reach the kernel), no_new_privs, lsm_label, cpu_topology, memory_total, cpuinfo_mhz,
  dmi_product_uuid, cpufreq, thermal, rapl. Identifies the host or says the sandbox is weak.

timer_list counts 2: beyond the host's clock it lists every pending host timer.

Probes about the kernel's own privilege model (capabilities, seccomp, namespaces, devices, masked
and writable paths...) and the kernel's identity (release, version, command line) only count when
the sandbox shares the host's kernel (its boot_id equals the host's): root inside a guest holds
every capability of *its own* kernel, every kernel gives its initial namespaces the same inode
numbers, and a guest may boot the host's own kernel package.

A probe whose script could not run (a tool missing inside, its output lost) is an *error*: shown
with its reason, never scored as "closed".
"""

from __future__ import annotations

from isobench.leakage.catalogue import canaries, hardware, identity, privileges, surface
from isobench.leakage.catalogue.base import Facts, StaticProbe
from isobench.leakage.catalogue.identity import decide_shared_kernel
from isobench.leakage.catalogue.surface import first_disk

__all__ = ["STATIC_PROBES", "Facts", "StaticProbe", "decide_shared_kernel", "first_disk"]

STATIC_PROBES: tuple[StaticProbe, ...] = (
    identity.PROBES + canaries.PROBES + privileges.PROBES + surface.PROBES + hardware.PROBES
)
