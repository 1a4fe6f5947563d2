"""The seccomp profile compiler: Docker's profile resolved per capability set, compiled to BPF, and
the BPF executed on synthetic ``seccomp_data`` (every syscall number, argument conditions, the arch
check), checked against the profile's own meaning."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from isobench.drivers.base import SandboxSpec
from isobench.drivers.container.config import HARDENED_CAPS, ContainerOptions, config_from_spec
from isobench.drivers.container.helper import SOURCE
from isobench.drivers.container.seccomp import bpf, compile_filter, filter_path, resolve, run
from isobench.drivers.container.seccomp.profile import (
    AUDIT_ARCH_X86_64,
    RET_ALLOW,
    RET_ERRNO,
    RET_KILL_PROCESS,
    load_data,
)
from isobench.errors import UsageError

TABLE: dict[str, int] = load_data("syscalls.json")["x86_64"]
EPERM, ENOSYS = RET_ERRNO | 1, RET_ERRNO | 38
AUDIT_ARCH_I386 = 0x40000003
CLONE_NEWNS, CLONE_NEWUSER, CLONE_THREAD_FLAGS = 0x20000, 0x10000000, 0x3D0F00


def decide(program: bytes, name: str, *args: int) -> int:
    return run(program, TABLE[name], AUDIT_ARCH_X86_64, args)


@pytest.fixture(scope="module")
def oci() -> bytes:
    return compile_filter(resolve(HARDENED_CAPS, kernel=(6, 1)))


def test_table_matches_the_kernel_headers() -> None:
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    if not header.exists():
        pytest.skip("no linux-libc-dev headers here")
    found = dict(re.findall(r"#define __NR_(\w+)\s+(\d+)", header.read_text()))
    assert {k: int(v) for k, v in found.items() if k in TABLE} == TABLE


def test_helper_keeps_the_capabilities_the_profile_is_resolved_for() -> None:
    kept = re.search(r"kept_caps\[\]\s*=\s*\{([^}]*)\}", SOURCE.read_text())
    assert kept is not None
    assert sorted(c.strip() for c in kept.group(1).split(",")) == sorted(HARDENED_CAPS)


def test_every_syscall_number_gets_what_the_rules_say(oci: bytes) -> None:
    resolved = resolve(HARDENED_CAPS, kernel=(6, 1))
    for nr in range(max(TABLE.values()) + 64):  # the unknown ones above: future syscalls
        for args in ((), (40,), (0xFFFFFFFF,), (CLONE_NEWNS | 0x11,), (0x11,)):
            assert run(oci, nr, AUDIT_ARCH_X86_64, args) == resolved.decide(nr, args), (nr, args)


def test_unconditional_allowlist_is_allowed_and_nothing_else(oci: bytes) -> None:
    allow_group = load_data("default.json")["syscalls"][0]
    names = [n for n in allow_group["names"] if n in TABLE]
    assert len(names) > 250
    assert all(decide(oci, n) == RET_ALLOW for n in names)
    conditional = {
        "socket",
        "personality",
        "clone",
        "clone3",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
    }
    conditional |= {"arch_prctl", "modify_ldt"}  # amd64-only groups
    others = set(TABLE) - set(names) - conditional
    assert {n for n in others if decide(oci, n) != EPERM} == set()


@pytest.mark.parametrize(
    "name",
    ["mount", "umount2", "unshare", "setns", "keyctl", "add_key", "request_key", "kexec_load",
     "kexec_file_load", "bpf", "perf_event_open", "io_uring_setup", "io_uring_enter", "io_uring_register",
     "syslog", "kcmp", "pidfd_getfd", "process_madvise", "userfaultfd", "init_module", "reboot", "swapon",
     "acct", "chroot", "mbind", "set_mempolicy", "clock_settime", "iopl", "open_by_handle_at", "sethostname",
     "fanotify_init", "lookup_dcookie", "quotactl", "uselib", "pivot_root", "move_mount", "fsopen"],
)  # fmt: skip
def test_docker_blocked_calls_are_denied(oci: bytes, name: str) -> None:
    assert decide(oci, name) == EPERM


def test_argument_conditions(oci: bytes) -> None:
    assert decide(oci, "personality", 0) == RET_ALLOW
    assert decide(oci, "personality", 0xFFFFFFFF) == RET_ALLOW  # the query
    assert decide(oci, "personality", 0x0400000) == EPERM  # READ_IMPLIES_EXEC
    assert decide(oci, "socket", 2) == RET_ALLOW
    assert decide(oci, "socket", 40) == EPERM  # AF_VSOCK
    assert decide(oci, "socket", (1 << 32) | 40) == EPERM  # the kernel reads an int: no bypass
    assert decide(oci, "clone", CLONE_THREAD_FLAGS) == RET_ALLOW
    assert decide(oci, "clone", CLONE_THREAD_FLAGS | CLONE_NEWNS) == EPERM
    assert decide(oci, "clone", 0x11 | CLONE_NEWUSER) == EPERM
    assert decide(oci, "clone3") == ENOSYS


def test_arch_check(oci: bytes) -> None:
    getpid = TABLE["getpid"]
    assert run(oci, getpid, AUDIT_ARCH_X86_64) == RET_ALLOW
    assert run(oci, 20, AUDIT_ARCH_I386) == RET_KILL_PROCESS  # int 0x80 getpid
    assert run(oci, getpid | 0x40000000, AUDIT_ARCH_X86_64) == RET_KILL_PROCESS  # x32
    assert run(oci, -1, AUDIT_ARCH_X86_64) == EPERM  # a skipped call, not a foreign one
    assert run(oci, 1000, AUDIT_ARCH_X86_64) == EPERM  # a future syscall


def test_capability_conditional_groups() -> None:
    admin = compile_filter(resolve([*HARDENED_CAPS, "CAP_SYS_ADMIN"], kernel=(6, 1)))
    assert decide(admin, "mount") == RET_ALLOW
    assert decide(admin, "clone", CLONE_NEWNS) == RET_ALLOW  # excludes: CAP_SYS_ADMIN
    assert decide(admin, "clone3") == RET_ALLOW
    assert decide(admin, "syslog") == RET_ALLOW
    assert decide(admin, "kcmp") == EPERM
    ptrace = compile_filter(resolve([*HARDENED_CAPS, "CAP_SYS_PTRACE"], kernel=(6, 1)))
    assert decide(ptrace, "kcmp") == RET_ALLOW and decide(ptrace, "mount") == EPERM
    nice = compile_filter(resolve(["CAP_SYS_NICE"], kernel=(6, 1)))
    assert decide(nice, "mbind") == RET_ALLOW and decide(nice, "get_mempolicy") == RET_ALLOW


def test_kernel_and_arch_conditional_groups(oci: bytes) -> None:
    assert decide(oci, "ptrace") == RET_ALLOW  # minKernel 4.8
    old = compile_filter(resolve(HARDENED_CAPS, kernel=(4, 4)))
    assert decide(old, "ptrace") == EPERM
    assert decide(oci, "arch_prctl") == RET_ALLOW and decide(oci, "modify_ldt") == RET_ALLOW


def test_relaxation_adds_only_its_calls() -> None:
    uring = compile_filter(resolve(HARDENED_CAPS, relax=["io_uring"], kernel=(6, 1)))
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        assert decide(uring, name) == RET_ALLOW
    assert decide(uring, "mount") == EPERM and decide(uring, "socket", 40) == EPERM
    with pytest.raises(UsageError, match="unknown seccomp relaxation 'ptrace'"):
        resolve(HARDENED_CAPS, relax=["ptrace"])


def test_program_fits_the_kernel_and_stays_small(oci: bytes) -> None:
    insns = bpf.decode(oci)
    assert len(insns) < 400 < bpf.MAX_INSNS
    assert insns[-1].code == bpf.RET and insns[-1].k == RET_KILL_PROCESS


def test_filter_cache(tmp_path: Path) -> None:
    first = filter_path(tmp_path, HARDENED_CAPS)
    assert first.read_bytes() == compile_filter(resolve(HARDENED_CAPS))
    mtime = first.stat().st_mtime_ns
    assert filter_path(tmp_path, reversed(HARDENED_CAPS)) == first
    assert first.stat().st_mtime_ns == mtime  # not recompiled
    relaxed = filter_path(tmp_path, HARDENED_CAPS, ["io_uring"])
    assert relaxed != first and relaxed.parent == first.parent == tmp_path / "container" / "seccomp"


def test_options_name_relaxations_and_hardening_switches_devices(tmp_path: Path) -> None:
    assert ContainerOptions.parse("container", {"seccomp_allow": ["io_uring"]}).seccomp_allow == ("io_uring",)
    with pytest.raises(UsageError, match="unknown seccomp relaxation 'perf'"):
        ContainerOptions.parse("container", {"seccomp_allow": ["perf"]})
    spec = SandboxSpec(name="b", run_id="r", options={"seccomp_allow": ["io_uring", "io_uring"]})
    config = config_from_spec(spec, tmp_path)
    assert config.seccomp_allow == ("io_uring",)
    assert config.limits is not None and config.limits.devices
    soft = config_from_spec(SandboxSpec(name="b", run_id="r", options={"hardening": False}), tmp_path)
    assert soft.limits is not None and soft.limits.devices is None
    with pytest.raises(UsageError, match="must be a list"):
        config_from_spec(SandboxSpec(name="b", run_id="r", options={"seccomp_allow": "io_uring"}), tmp_path)
