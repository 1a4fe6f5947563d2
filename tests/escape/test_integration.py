"""The real battery: the host baseline, isobench's own container with hardening on and off (on a
busybox root), and canaries that leave nothing behind, Ctrl-C included."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.container import ContainerDriver
from isobench.drivers.host import HostDriver
from isobench.escape import ensure_probe, planted
from isobench.model import Measurement
from isobench.testing import workload_context
from isobench.workloads.escape import EscapeWorkload

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("escape-state")  # probe and helper compiled once per module


@pytest.fixture
def run_id() -> str:
    return f"te{uuid.uuid4().hex[:8]}"


def _verdicts(ms: list[Measurement], **params: object) -> tuple[dict[str, str], dict[str, str]]:
    count = next(m for m in ms if m.metric == "escape.open" and dict(m.params) == params)
    return dict(count.metadata["verdicts"]), dict(count.metadata["evidence"])


def _tokens_running() -> list[str]:
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue
        if name.startswith("isoesc"):
            found.append(f"{comm.parent.name} {name}")
    return found


def _run(driver: object, spec: SandboxSpec, scratch: Path) -> list[Measurement]:
    scratch.mkdir()
    ctx = workload_context(driver, spec=spec, scratch=scratch)  # type: ignore[arg-type]
    before = set(_tokens_running())
    ms = list(EscapeWorkload().run(ctx))
    assert set(_tokens_running()) - before == set()  # the canary process is gone
    assert set(scratch.rglob("*")) == set(scratch.iterdir())  # only the per-profile dirs, empty
    assert all(not any(d.iterdir()) for d in scratch.iterdir())
    return ms


def test_host_baseline_is_open(state_dir: Path, tmp_path: Path, run_id: str) -> None:
    drv = HostDriver(DriverContext(state_dir, tmp_path / "work", run_id))
    spec = SandboxSpec(name=f"isobench-{run_id}-esc", run_id=run_id)
    verdicts, evidence = _verdicts(_run(drv, spec, tmp_path / "cell"))
    for name in ("runtime_exe", "leaked_fd", "open_by_handle", "ptrace", "volume_symlink", "core_pattern"):
        assert verdicts[name] == "open", (name, evidence[name])
    assert "not written" in evidence["core_pattern"]


def test_own_container_hardened_blocks_and_unhardened_opens(
    state_dir: Path, tmp_path: Path, run_id: str, busybox_rootfs: Path
) -> None:
    drv = ContainerDriver(DriverContext(state_dir, tmp_path / "work", run_id))
    spec = SandboxSpec(name=f"isobench-{run_id}-esc", run_id=run_id, image=busybox_rootfs, memory_mib=128)
    try:
        ms = _run(drv, spec, tmp_path / "cell")
    finally:
        drv.gc(run_id)
        drv.close()
    on, on_evidence = _verdicts(ms, hardening=True)
    for name, verdict in on.items():
        if name == "runtime_exe" and verdict == "open":
            # Known while the runtime's pid 1 is its own host binary: the evidence must say so.
            assert "isobench-ctr" in on_evidence[name] and "ETXTBSY" in on_evidence[name]
            continue
        assert verdict in ("blocked", "n/a"), (name, on_evidence[name])
    assert on["ptrace"] == on["volume_symlink"] == on["leaked_fd"] == "blocked"
    off, off_evidence = _verdicts(ms, hardening=False)
    # Without hardening /proc/sys is writable and CAP_DAC_READ_SEARCH kept: the battery sees both.
    assert off["core_pattern"] == "open", off_evidence["core_pattern"]
    assert off["open_by_handle"] == "open", off_evidence["open_by_handle"]


def test_canaries_go_on_interrupt(state_dir: Path, tmp_path: Path) -> None:
    probe = ensure_probe(state_dir)
    seen: list[int] = []

    def interrupted() -> None:
        with planted(tmp_path, probe, lifetime=30) as c:
            assert c.pid is not None and c.file.exists() and (c.volume / "escape-link").is_symlink()
            assert c.handle and c.offset is not None
            seen.append(c.pid)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert seen
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ProcessLookupError):
        os.kill(seen[0], 0)


def test_probe_args_are_paths_as_the_sandbox_sees_them(state_dir: Path, tmp_path: Path) -> None:
    with planted(tmp_path, ensure_probe(state_dir), lifetime=30) as c:
        args = dict(a.split("=", 1) for a in c.probe_args(work="/w", volume="/data"))
        assert args["canary"] == str(c.file) and args["volume"] == "/data" and args["work"] == "/w"
        assert dataclasses.asdict(c)["token"] == args["token"] and len(c.token) == 15


@pytest.mark.slow
def test_guest_blocks_every_host_primitive(tmp_path: Path, run_id: str) -> None:
    """A TCG guest of the suite's image (qemu, no libvirt): its own kernel, so the kernel-wide
    primitives are n/a and every canary stays out of reach."""
    from isobench.drivers.qemu import QemuDriver

    state = Path(os.environ.get("ISOBENCH_STATE_DIR", "/var/lib/isobench"))
    drv = QemuDriver(DriverContext(state, tmp_path / "work", run_id))
    spec = SandboxSpec(name=f"isobench-{run_id}-esc", run_id=run_id, memory_mib=512)
    try:
        verdicts, evidence = _verdicts(_run(drv, spec, tmp_path / "cell"))
    finally:
        drv.gc(run_id)
        drv.close()
    for name in ("release_agent", "core_pattern", "sysrq_trigger", "kernel_module"):
        assert verdicts[name] == "n/a" and "own kernel" in evidence[name], (name, evidence[name])
    for name in ("runtime_exe", "leaked_fd", "mknod_block", "open_by_handle", "ptrace", "volume_symlink"):
        assert verdicts[name] == "blocked", (name, evidence[name])
