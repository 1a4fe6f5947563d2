"""bwrap driver logic that needs no root: the command line, versions, availability with fakes."""

from __future__ import annotations

from pathlib import Path

from isobench.drivers.base import DriverContext
from isobench.drivers.bwrap.command import CAPABILITIES, BwrapSettings, bwrap_argv, parse_version
from isobench.drivers.bwrap.driver import BwrapDriver, owned, resource_name
from isobench.hostsys import HostProbe, Tools
from isobench.liveruns import LiveRun, Sparing

ROOT = Path("/w/isobench-bwrap-r1-sb/merged")


def _settings(**kw: object) -> BwrapSettings:
    base: dict[str, object] = {"binary": "/usr/bin/bwrap", "root": ROOT, "hostname": "sb", "share_net": False}
    base.update(kw)
    return BwrapSettings(**base)  # type: ignore[arg-type]


def _pairs(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == flag]


def test_isolated_command_line() -> None:
    cmd = bwrap_argv(_settings(), ["sh", "-c", "echo hi"], {"FOO": "bar"})
    assert cmd[0] == "/usr/bin/bwrap"
    for flag in ("--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net"):
        assert flag in cmd
    assert "--unshare-cgroup-try" in cmd
    # The root is the overlay's merged dir, bound writable at /; then fresh proc and dev.
    i = cmd.index("--bind")
    assert cmd[i : i + 3] == ["--bind", str(ROOT), "/"]
    assert cmd.index("--proc") > i and cmd.index("--dev") > i
    assert cmd[cmd.index("--chdir") + 1] == "/work"
    assert "--clearenv" in cmd
    env = dict(zip(_pairs(cmd, "--setenv"), cmd[cmd.index("--setenv") + 2 :: 3], strict=False))
    assert env["FOO"] == "bar" and env["HOME"] == "/root"
    assert _pairs(cmd, "--cap-drop") == ["ALL"]
    assert tuple(_pairs(cmd, "--cap-add")) == CAPABILITIES
    assert cmd[-4:] == ["--", "sh", "-c", "echo hi"]
    assert "/data" not in cmd


def test_network_volume_and_cpuset_options() -> None:
    cmd = bwrap_argv(
        _settings(share_net=True, volume=Path("/srv/v"), cpuset=(3, 1), taskset="/usr/bin/taskset"),
        ["true"],
    )
    assert "--unshare-net" not in cmd  # the host netns is kept: address 127.0.0.1
    assert cmd[:3] == ["/usr/bin/taskset", "--cpu-list", "1,3"]
    i = cmd.index("/srv/v")
    assert cmd[i - 1 : i + 2] == ["--bind", "/srv/v", "/data"]


def test_cpuset_without_taskset_is_not_applied() -> None:
    cmd = bwrap_argv(_settings(cpuset=(0,)), ["true"])
    assert cmd[0] == "/usr/bin/bwrap"


def test_parse_version() -> None:
    assert parse_version("bubblewrap 0.8.0") == (0, 8, 0)
    assert parse_version("bubblewrap 0.11") == (0, 11, 0)
    assert parse_version("") is None


def test_names_and_ownership() -> None:
    assert resource_name("r1", "a/b") == "isobench-bwrap-r1-a-b"
    assert owned("isobench-bwrap-r1-a-b", "r1")
    assert not owned("isobench-bwrap-r2-x", "r1")
    assert not owned("isobench-runc-r1-x", None)


def _driver(
    tmp_path: Path, *, found: dict[str, str], euid: int = 0, version: str = "bubblewrap 0.8.0"
) -> BwrapDriver:
    host = HostProbe(root=tmp_path / "host", euid=euid)
    ctx = DriverContext(state_dir=tmp_path / "s", work_dir=tmp_path / "w", run_id="r1", host=host)
    return BwrapDriver(ctx, tools=Tools(which=found.get, version=lambda _b: version))


TOOLS = {"bwrap": "/usr/bin/bwrap", "taskset": "/usr/bin/taskset"}


def test_available_as_root_and_says_it_has_no_cgroup_limits(tmp_path: Path) -> None:
    avail = _driver(tmp_path, found=TOOLS).availability()
    assert avail.ok, avail.reason
    assert avail.details["cgroup_limits"] is False
    assert avail.details["overlay_option"] is False  # 0.8 predates --overlay
    assert avail.details["cpu_affinity"] is True
    meta = _driver(tmp_path, found=TOOLS).metadata()
    assert meta["cgroup_limits"] is False
    assert meta["bwrap_version"] == "bubblewrap 0.8.0"
    newer = _driver(tmp_path, found=TOOLS, version="bubblewrap 0.9.0").availability()
    assert newer.details["overlay_option"] is True


def test_unavailable_without_binary_or_root(tmp_path: Path) -> None:
    missing = _driver(tmp_path, found={}).availability()
    assert not missing.ok and "bubblewrap" in missing.reason
    user = _driver(tmp_path, found=TOOLS, euid=1000).availability()
    assert not user.ok and "needs root" in user.reason


def test_teardown_treats_an_already_gone_path_as_removed() -> None:
    from isobench.mounts import _note_rm_error

    errors: list[str] = []
    _note_rm_error(errors, "/gone", FileNotFoundError(2, "No such file or directory"))
    assert errors == []
    _note_rm_error(errors, "/busy", PermissionError(13, "Permission denied"))
    assert errors == ["rm /busy: [Errno 13] Permission denied"]


def test_gc_removes_only_the_owned_roots(tmp_path: Path) -> None:
    from isobench.mounts import gc_overlay_roots

    work = tmp_path / "work"
    for name in ("isobench-bwrap-r1-a", "isobench-bwrap-r1-b", "isobench-bwrap-r2-a", "other"):
        (work / name / "upper").mkdir(parents=True)
    # b's overlay is in the (fake) mount table; a mount that is already gone counts as unmounted.
    merged = work / "isobench-bwrap-r1-b" / "merged"
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"36 35 0:50 / {merged} rw - overlay overlay rw,lowerdir=/l\n")
    gone = gc_overlay_roots(mountinfo, work, lambda n: owned(n, "r1"))
    assert gone == [f"overlay {merged}", f"dir {work / 'isobench-bwrap-r1-a'}"]
    assert sorted(p.name for p in work.iterdir()) == ["isobench-bwrap-r2-a", "other"]


def test_a_sweep_spares_the_roots_of_a_live_run(tmp_path: Path) -> None:
    host = HostProbe(root=tmp_path / "host")
    (tmp_path / "host/proc/self").mkdir(parents=True)
    (tmp_path / "host/proc/self/mountinfo").write_text("")
    work = tmp_path / "w"
    for name in ("isobench-bwrap-r1-a", "isobench-bwrap-r2-a"):
        (work / name / "upper").mkdir(parents=True)
    sparing = Sparing((LiveRun("r2", 42, "1", "/elsewhere"),))
    ctx = DriverContext(state_dir=tmp_path / "s", work_dir=work, run_id="gc", host=host, sparing=sparing)
    gone = BwrapDriver(ctx, tools=Tools(which=TOOLS.get, version=lambda _b: "bubblewrap 0.8.0")).gc(None)
    assert gone == [f"dir {work / 'isobench-bwrap-r1-a'}"]
    assert sorted(p.name for p in work.iterdir()) == ["isobench-bwrap-r2-a"]
    assert sparing.spared_lines() == [
        "spared 1 resource of live run r2 (pid 42): bwrap root isobench-bwrap-r2-a"
    ]
