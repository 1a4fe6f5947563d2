"""The probes through isobench's own container driver, hardening off and on, on a busybox rootfs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from isobench.drivers import container
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.images import ImageMissing, find_image
from isobench.leakage import (
    CorrelationSettings,
    ProbeResult,
    env_canary,
    planted_canaries,
    run_correlations,
    run_static,
    score,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ctr-state")  # the helper is compiled once per module


@pytest.fixture
def open_box(
    state_dir: Path, tmp_path: Path, busybox_rootfs: Path, leftovers: Callable[[str], list[str]]
) -> Iterator[Callable[..., tuple[Any, SandboxSpec]]]:
    run_id = f"tc{uuid.uuid4().hex[:8]}"
    drv = container.ContainerDriver(DriverContext(state_dir, tmp_path / "work", run_id))
    made: list[Any] = []

    def make(options: Mapping[str, Any], image: Path | None = None) -> tuple[Any, SandboxSpec]:
        spec = SandboxSpec(
            name=f"isobench-{run_id}-leak{len(made)}",
            run_id=run_id,
            image=image or busybox_rootfs,
            memory_mib=128,
            options=dict(options),
        )
        with env_canary(run_id):  # as the workload does: in place while the init starts
            sb = drv.create(spec)
        made.append(sb)
        return sb, spec

    try:
        yield make
    finally:
        for sb in made:
            sb.destroy()
        drv.gc(run_id)
        assert leftovers(run_id) == []


def _static(sb: Any, spec: SandboxSpec) -> dict[str, ProbeResult]:
    with env_canary(spec.run_id), planted_canaries(spec.run_id) as canaries:
        return {r.name: r for r in run_static(sb, spec, canaries)}


def test_plain_container_leaks_boot_id_and_host_canaries(
    open_box: Callable[..., tuple[Any, SandboxSpec]],
) -> None:
    res = _static(*open_box({"hardening": False}))
    v = {n: r.verdict for n, r in res.items()}
    assert v["boot_id"].leaks
    assert v["kmsg"].leaks, v["kmsg"]  # a host-planted kernel log line, read with CAP_SYSLOG
    assert v["capabilities"].leaks
    assert v["masked_paths"].leaks and "/proc/timer_list" in v["masked_paths"].evidence
    # Its own namespaces do hide the host's processes, mounts, sockets and interfaces.
    for name in (
        "host_process_names",
        "host_pids",
        "mount_canary",
        "unix_sockets",
        "net_devices",
        "hostname",
    ):
        assert not v[name].leaks, (name, v[name])


def test_container_without_pid_namespace_leaks_host_process_name(
    open_box: Callable[..., tuple[Any, SandboxSpec]],
) -> None:
    """/proc/sched_debug is gone from this kernel (6.18, no debugfs), so a process name reaches a
    container through a shared pid namespace only."""
    res = _static(*open_box({"hardening": False, "namespaces": ["mount", "uts", "ipc", "net", "cgroup"]}))
    assert res["host_process_names"].verdict.leaks
    assert res["host_pids"].verdict.leaks
    assert res["proc_locks"].verdict.leaks


def test_hardened_container_masks_what_its_list_says(
    open_box: Callable[..., tuple[Any, SandboxSpec]],
) -> None:
    sb, spec = open_box({"hardening": True})
    out = sb.exec(
        [
            "sh",
            "-c",
            "for p in /proc/kcore /proc/timer_list /proc/keys /proc/sched_debug /proc/interrupts; do "
            'echo "$p $(head -c 64 $p 2>/dev/null | wc -c)"; done',
        ],
        timeout=10,
    ).stdout
    sizes = dict(line.split() for line in out.splitlines())
    assert all(v == "0" for v in sizes.values()), sizes
    v = {n: r.verdict for n, r in _static(sb, spec).items()}
    for name in (
        "masked_paths",
        "timer_list",
        "writable_paths",
        "capabilities",
        "seccomp",
        "no_new_privs",
        "kallsyms",
        "kmsg",
        "devices",
    ):
        assert not v[name].leaks, (name, v[name])
    assert v["boot_id"].leaks  # not on the mask list: a shared kernel still tells who it is
    # busybox has no perl to try the syscalls with: shown as an error, not as "closed"
    assert v["seccomp"].status == "error" and "perl" in v["seccomp"].evidence


def test_hardening_lowers_the_score(open_box: Callable[..., tuple[Any, SandboxSpec]]) -> None:
    plain = score(list(_static(*open_box({"hardening": False})).values()))
    hard = score(list(_static(*open_box({"hardening": True})).values()))
    assert hard.percent < plain.percent
    assert hard.count < plain.count


def test_hardened_container_still_sees_host_softirqs(
    open_box: Callable[..., tuple[Any, SandboxSpec]],
) -> None:
    sb, spec = open_box({"hardening": True})
    res = run_correlations(sb, run_id=spec.run_id, settings=CorrelationSettings.quick(), loads=("net",))
    v = {x.name: x.verdict for x in res}
    assert set(v) == {"softirqs", "net_snmp"}
    r = v["softirqs"]
    assert r.n is not None and r.n >= 20
    assert "shared boot clock" in r.evidence
    assert r.r is not None and r.r > 0.5, r
    # Its own network namespace keeps its own /proc/net/snmp: constant inside while the host's moved.
    assert v["net_snmp"].status == "closed" and "host's moved" in v["net_snmp"].evidence, v["net_snmp"]


def test_hardened_container_on_the_image_tries_the_blocked_syscalls_and_reads_its_init(
    open_box: Callable[..., tuple[Any, SandboxSpec]],
) -> None:
    """On the built image (it has perl): every probe runs; the seccomp and /proc/1 verdicts agree
    with what the sandbox itself shows, whichever way the runtime is built today."""
    try:
        image = find_image(Path("/var/lib/isobench")).rootfs
    except ImageMissing:
        pytest.skip("the default image is not built here; `isobench image build`")
    sb, spec = open_box({"hardening": True}, image)
    v = {n: r.verdict for n, r in _static(sb, spec).items()}
    assert [n for n, x in v.items() if x.status == "error"] == []
    seccomp = v["seccomp"]
    assert "Seccomp mode 2" in seccomp.evidence and "21 tried" in seccomp.evidence, seccomp
    assert not v["devices"].leaks, v["devices"]
    environ = sb.exec(["sh", "-c", "tr '\\0' '\\n' < /proc/1/environ"], timeout=10).stdout
    cmdline = sb.exec(["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"], timeout=10).stdout
    exposed = "ISOBENCH_LEAK_CANARY=" in environ or "/var/lib/isobench" in cmdline
    assert v["proc1"].leaks is exposed, (v["proc1"], environ, cmdline)
