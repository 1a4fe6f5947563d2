"""The hardening profile seen from inside real containers: Docker's seccomp allowlist (the profile's
denials, its argument conditions, the arch check) and the cgroup's device allowlist, on and off.

A static probe (``seccomp_probe.c``) is built on the host and run from the container's volume; it
prints one errno per call (0: allowed, ``sig31``: killed by SIGSYS)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from isobench.drivers.base import SandboxSpec
from isobench.drivers.container import ContainerDriver
from isobench.errors import IsobenchError
from isobench.hostsys.cbuild import CProgram, ensure_built

pytestmark = pytest.mark.integration

SpecFactory = Callable[..., SandboxSpec]
Leftovers = Callable[[], list[str]]

EPERM = str(errno.EPERM)
#: Denied by Docker's default profile for a container holding only the OCI default capabilities.
DENIED = (
    "unshare",
    "mount",
    "keyctl",
    "add_key",
    "kexec_load",
    "bpf",
    "io_uring_setup",
    "personality_rie",
    "vsock",
    "vsock_high_bits",
    "clone_newns",
    "syslog",
    "kcmp",
    "future",
)
ALL = (*DENIED, "personality_query", "inet", "clone3", "int80", "x32", "mknod_block", "open=/dev/null")
KMSG = "open=/data/kmsg"  # a node of /dev/kmsg (1:11) made on the host: not in the allowlist
#: A hardened container's /data is mounted nodev (runtime hardening), which refuses the node before
#: the device cgroup would (EPERM); without hardening neither applies.
NODEV = str(errno.EACCES)


PROBE = CProgram(
    name="isobench-seccomp-probe",
    source=Path(__file__).with_name("seccomp_probe.c"),
    cflags=("-O1",),
    what="the seccomp probe",
    error=IsobenchError,
)


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory, state_dir: Path) -> Path:
    d = tmp_path_factory.mktemp("probe")
    shutil.copy(ensure_built(PROBE, state_dir), d / "probe")
    os.mknod(d / "kmsg", 0o600 | stat.S_IFCHR, os.makedev(1, 11))
    return d


def probe(run: Callable[[list[str]], str], *calls: str) -> dict[str, str]:
    out = run(["/data/probe", *calls])
    return dict(line.split(" ", 1) for line in out.splitlines())


def in_box(driver: ContainerDriver, spec: SandboxSpec, *calls: str) -> dict[str, str]:
    sb = driver.create(spec)
    try:

        def run(argv: list[str]) -> str:
            r = sb.exec(argv, timeout=10)
            assert r.exit_code == 0, r.stderr
            return r.stdout

        return probe(run, *calls)
    finally:
        sb.destroy()


def test_host_baseline(probe_dir: Path) -> None:
    # What the probe sees unconfined, so the denials below are the container's doing.
    got = probe(
        lambda argv: subprocess.run([str(probe_dir / "probe"), *argv[1:]], capture_output=True, text=True, check=True).stdout,
        "keyctl", "io_uring_setup", "personality_rie", "future", "int80", "open=" + str(probe_dir / "kmsg"),
    )  # fmt: skip
    assert got["keyctl"] == "0" and got["int80"] == "0" and got["open=" + str(probe_dir / "kmsg")] == "0"
    assert got["io_uring_setup"] != EPERM and got["future"] == str(errno.ENOSYS)


def test_hardened_container_denies_what_docker_denies(
    driver: ContainerDriver, make_spec: SpecFactory, probe_dir: Path, leftovers: Leftovers
) -> None:
    got = in_box(driver, make_spec("sc", volume=probe_dir), *ALL, KMSG)
    assert {c: got[c] for c in DENIED} == dict.fromkeys(DENIED, EPERM)
    assert got["clone3"] == str(errno.ENOSYS)  # so libc falls back to clone, whose flags are checked
    assert got["personality_query"] == "0" and got["inet"] == "0" and got["open=/dev/null"] == "0"
    # Foreign ABIs (i386 via int 0x80, x32) kill the process.
    assert got["int80"] == "sig31" and got["x32"] == "sig31"
    # mknod: no CAP_MKNOD, and no block device in the cgroup's allowlist; the host-made node is refused.
    assert got["mknod_block"] == EPERM and got[KMSG] == NODEV
    assert leftovers() == []


def test_cold_run_is_hardened_too(
    driver: ContainerDriver, make_spec: SpecFactory, probe_dir: Path, leftovers: Leftovers
) -> None:
    run = driver.run_cold(make_spec("cold", volume=probe_dir), ["/data/probe", "mount", "x32", KMSG])
    assert run.result.exit_code == 0, run.result.stderr
    assert run.result.stdout.split() == ["mount", EPERM, "x32", "sig31", KMSG, NODEV]
    assert leftovers() == []


def test_hardening_off_lifts_seccomp_and_devices(
    driver: ContainerDriver, make_spec: SpecFactory, probe_dir: Path, leftovers: Leftovers
) -> None:
    got = in_box(
        driver, make_spec("soft", volume=probe_dir, options={"hardening": False}),
        "mount", "keyctl", "io_uring_setup", "int80", KMSG,
    )  # fmt: skip
    assert got == {
        "mount": "0",
        "keyctl": "0",
        "io_uring_setup": got["io_uring_setup"],
        "int80": "0",
        KMSG: "0",
    }
    assert got["io_uring_setup"] != EPERM
    assert leftovers() == []


def test_io_uring_relaxation_allows_only_io_uring(
    driver: ContainerDriver, make_spec: SpecFactory, probe_dir: Path, leftovers: Leftovers
) -> None:
    spec = make_spec("uring", volume=probe_dir, options={"seccomp_allow": ["io_uring"]})
    got = in_box(driver, spec, "io_uring_setup", "mount", "bpf", KMSG)
    # Past seccomp the kernel judges the (deliberately bad) arguments itself: EFAULT, not EPERM.
    assert got["io_uring_setup"] == str(errno.EFAULT)
    assert got["mount"] == EPERM and got["bpf"] == EPERM and got[KMSG] == NODEV
    assert leftovers() == []
