"""Verdicts from recorded probe output (tests/escape/data: the real probe in real sandboxes on this
kind of host) and from hand-made lines for the cases this host cannot show."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from isobench.escape import PRIMITIVES, HostFacts, Verdict, decide, measurements, parse_lines
from isobench.escape.verdicts import device_allowed

DATA = Path(__file__).parent / "data"

#: This host's kernel has neither sysrq nor modules; the default facts here have both.
FULL_KERNEL = HostFacts(token="t")
THIS_KERNEL = HostFacts(token="t", has_sysrq=False, has_modules=False, host_blockdev_errno="EPERM")


def _lines(name: str) -> dict[str, dict[str, Any]]:
    return parse_lines((DATA / f"{name}.jsonl").read_text())


def _stat(dev: str, ino: int, size: int, mtime_ns: int) -> Any:
    major, minor = (int(x) for x in dev.split(":"))
    return SimpleNamespace(st_dev=os.makedev(major, minor), st_ino=ino, st_size=size, st_mtime_ns=mtime_ns)


def _host_files(*recordings: str, who: Callable[[str], bool]) -> Callable[[str], Any]:
    """A stat() that knows the host files the recordings' targets named (as the real host did)."""
    files: dict[str, os.stat_result] = {}
    for name in recordings:
        for t in _lines(name)["runtime_exe"]["targets"]:
            if who(t["who"]) and "dev" in t:
                files[t["link"]] = _stat(t["dev"], t["ino"], t["size"], t["mtime_ns"])

    def stat(path: str) -> Any:
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]

    return stat


def _verdicts(lines: Mapping[str, Any], host: HostFacts = THIS_KERNEL, **kw: Any) -> dict[str, Verdict]:
    return {r.name: r.verdict for r in decide(lines, host, **kw)}


def test_host_baseline_is_open_where_this_kernel_has_the_primitive() -> None:
    stat = _host_files("host", who=lambda w: w != "1")
    got = _verdicts(_lines("host"), stat=stat)
    assert got == {
        "runtime_exe": Verdict.OPEN,
        "release_agent": Verdict.OPEN,
        "leaked_fd": Verdict.OPEN,
        # the host itself gets EPERM opening its disk here: no verdict either way
        "mknod_block": Verdict.ERROR,
        "core_pattern": Verdict.OPEN,
        "sysrq_trigger": Verdict.NA,
        "open_by_handle": Verdict.OPEN,
        "ptrace": Verdict.OPEN,
        "kernel_module": Verdict.NA,
        "volume_symlink": Verdict.OPEN,
    }


def test_hardened_container_blocks_all_but_its_helper_binary_as_pid_1() -> None:
    # Recorded: the own runtime's pid 1 is the host's isobench-ctr binary (a handle on it can be
    # held; only ETXTBSY stops a write). Everything else is blocked.
    stat = _host_files("container-hardened", who=lambda w: w == "1")
    results = {r.name: r for r in decide(_lines("container-hardened"), THIS_KERNEL, stat=stat)}
    assert results["runtime_exe"].verdict is Verdict.OPEN
    assert "isobench-ctr" in results["runtime_exe"].evidence and "ETXTBSY" in results["runtime_exe"].evidence
    others = {k: r.verdict for k, r in results.items() if k != "runtime_exe"}
    assert set(others.values()) == {Verdict.BLOCKED, Verdict.NA}
    assert others["sysrq_trigger"] is others["kernel_module"] is Verdict.NA
    assert "EROFS" in results["core_pattern"].evidence
    assert "EPERM" in results["open_by_handle"].evidence


def test_without_hardening_core_pattern_and_shocker_open() -> None:
    got = _verdicts(
        _lines("container-unhardened"), stat=_host_files("container-unhardened", who=lambda w: w == "1")
    )
    assert got["core_pattern"] is Verdict.OPEN
    assert got["open_by_handle"] is Verdict.OPEN
    assert got["ptrace"] is got["leaked_fd"] is got["volume_symlink"] is Verdict.BLOCKED


def test_guest_blocks_the_canaries_and_kernel_primitives_are_not_applicable() -> None:
    results = {r.name: r for r in decide(_lines("qemu"), FULL_KERNEL, stat=_host_files(who=lambda w: False))}
    for name in ("release_agent", "core_pattern", "sysrq_trigger", "kernel_module"):
        assert results[name].verdict is Verdict.NA, name
        assert "own kernel" in results[name].evidence
    for name in ("runtime_exe", "leaked_fd", "mknod_block", "open_by_handle", "ptrace", "volume_symlink"):
        assert results[name].verdict is Verdict.BLOCKED, (name, results[name].evidence)
    assert "made inside" in results["volume_symlink"].evidence


def test_recordings_name_every_primitive() -> None:
    for name in ("host", "container-hardened", "container-unhardened", "runc", "qemu"):
        lines = _lines(name)
        assert {p.name for p in PRIMITIVES} | {"_env", "_done"} == set(lines), name


def _env(**kw: Any) -> dict[str, Any]:
    return {
        "p": "_env",
        "own_kernel": False,
        "uid_map": "0 0 4294967295",
        "cap_eff": "000001ffffffffff",
        **kw,
    }


def test_release_agent_opened_from_a_user_namespace_is_blocked_by_the_kernel() -> None:
    ra = {"existing": [{"path": "/sys/fs/cgroup/memory/release_agent", "errno": ""}]}
    assert _verdicts({"_env": _env(), "release_agent": ra})["release_agent"] is Verdict.OPEN
    nested = _env(uid_map="0 100000 65536")
    assert _verdicts({"_env": nested, "release_agent": ra})["release_agent"] is Verdict.BLOCKED
    no_cap = _env(cap_eff="0000000000000000")
    assert _verdicts({"_env": no_cap, "release_agent": ra})["release_agent"] is Verdict.BLOCKED


@pytest.mark.parametrize(
    ("errno", "verdict"),
    [
        ("ENOEXEC", Verdict.OPEN),
        ("EKEYREJECTED", Verdict.OPEN),
        ("EPERM", Verdict.BLOCKED),
        ("ENOSYS", Verdict.BLOCKED),
    ],
)
def test_kernel_module_permission_decides(errno: str, verdict: Verdict) -> None:
    got = _verdicts({"_env": _env(), "kernel_module": {"errno": errno}}, FULL_KERNEL)
    assert got["kernel_module"] is verdict


def test_mknod_read_of_the_canary_is_open_and_a_refusal_the_host_also_gets_is_an_error() -> None:
    found = {"dev": "254:0", "mknod_errno": "", "open_errno": "", "read_errno": "", "found": True}
    assert _verdicts({"_env": _env(), "mknod_block": found})["mknod_block"] is Verdict.OPEN
    refused = {"dev": "254:0", "mknod_errno": "", "open_errno": "EPERM", "found": False}
    assert _verdicts({"_env": _env(), "mknod_block": refused})["mknod_block"] is Verdict.ERROR
    host_reads = HostFacts(token="t", host_blockdev_errno="")
    assert _verdicts({"_env": _env(), "mknod_block": refused}, host_reads)["mknod_block"] is Verdict.BLOCKED


def test_missing_lines_problems_and_no_volume() -> None:
    host = HostFacts(token="t", problems={"open_by_handle": "name_to_handle_at: EOPNOTSUPP"}, volume=False)
    results = {r.name: r for r in decide({"_env": _env()}, host, failure=" (exit 139)")}
    assert results["open_by_handle"].verdict is Verdict.ERROR
    assert "EOPNOTSUPP" in results["open_by_handle"].evidence
    assert results["volume_symlink"].verdict is Verdict.NA
    assert results["ptrace"].verdict is Verdict.ERROR and "exit 139" in results["ptrace"].evidence


def test_runtime_exe_ignores_the_probe_itself_and_binaries_that_are_not_the_hosts() -> None:
    target = {"link": "/usr/bin/x", "path_errno": "", "dev": "254:0", "ino": 7, "size": 10, "mtime_ns": 5}
    lines = {
        "_env": _env(),
        "runtime_exe": {
            "targets": [
                {**target, "who": "self", "write_errno": "ETXTBSY"},
                {**target, "who": "1", "write_errno": "ETXTBSY"},
            ]
        },
    }
    match, other = _stat("254:0", 7, 10, 5), _stat("254:0", 8, 10, 5)
    assert _verdicts(lines, stat=lambda p: match)["runtime_exe"] is Verdict.OPEN
    assert _verdicts(lines, stat=lambda p: other)["runtime_exe"] is Verdict.BLOCKED
    only_self = {"_env": _env(), "runtime_exe": {"targets": lines["runtime_exe"]["targets"][:1]}}
    assert _verdicts(only_self, stat=lambda p: match)["runtime_exe"] is Verdict.BLOCKED
    sealed = {**lines, "runtime_exe": {"targets": [{**target, "who": "1", "write_errno": "EPERM"}]}}
    assert _verdicts(sealed, stat=lambda p: match)["runtime_exe"] is Verdict.BLOCKED


def test_measurements_keep_every_verdict_and_count_the_open_ones() -> None:
    stat = _host_files("host", who=lambda w: w != "1")
    results = decide(_lines("host"), THIS_KERNEL, stat=stat)
    ms = {m.metric: m for m in measurements(results, {"hardening": True})}
    assert ms["escape.open"].value == 7.0
    assert ms["escape.open"].metadata["verdicts"]["sysrq_trigger"] == "n/a"
    assert "escape.sysrq_trigger" not in ms  # n/a and errors are no 0/1 figure
    assert ms["escape.ptrace"].value == 1.0 and ms["escape.ptrace"].params == {"hardening": True}
    assert json.dumps(ms["escape.open"].metadata)  # results.json must hold it


def test_parse_lines_skips_noise() -> None:
    got = parse_lines('garbage\n{"p":"core_pattern","errno":""}\n{not json\n{"no_p":1}\n')
    assert got == {"core_pattern": {"p": "core_pattern", "errno": ""}}


def test_runc_blocks_everything_and_its_device_cgroup_explains_the_block_device() -> None:
    results = {r.name: r for r in decide(_lines("runc"), THIS_KERNEL, stat=_host_files(who=lambda w: False))}
    assert {k: r.verdict for k, r in results.items() if r.verdict is not Verdict.NA} == {
        k: Verdict.BLOCKED
        for k in (
            "runtime_exe",
            "release_agent",
            "leaked_fd",
            "mknod_block",
            "core_pattern",
            "open_by_handle",
            "ptrace",
            "volume_symlink",
        )
    }
    assert "device cgroup allows no b 254:0" in results["mknod_block"].evidence


@pytest.mark.parametrize(
    ("rules", "allowed"),
    [
        ("a *:* rwm", True),
        ("b *:* m;c *:* m;c 1:3 rwm", False),
        ("b 254:* r", True),
        ("b 254:1 rwm", False),
        ("c 254:0 rwm", False),
        ("b 254:0 w", False),
        ("", False),
    ],
)
def test_device_allowed(rules: str, allowed: bool) -> None:
    assert device_allowed(rules, "b", "254:0") is allowed


def test_release_agent_reached_only_through_a_new_user_namespace_is_blocked() -> None:
    ra = {
        "existing": [],
        "unshare_errno": "EPERM",
        "userns_mount_errno": "",
        "userns_controller": "rdma",
        "userns_open_errno": "",
    }
    results = {r.name: r for r in decide({"_env": _env(), "release_agent": ra}, THIS_KERNEL)}
    assert results["release_agent"].verdict is Verdict.BLOCKED
    assert (
        "user namespace" in results["release_agent"].evidence
        and "CVE-2022-0492 fix" in results["release_agent"].evidence
    )
