"""Pure parts of the runtime hardening: rlimits, subordinate ids, option checks, the sealed helper."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest
from isobench.drivers.base import SandboxSpec
from isobench.drivers.container.config import ContainerOptions, check_overlay_fits, config_from_spec
from isobench.drivers.container.helper import seal_helper
from isobench.drivers.container.rlimits import DEFAULT_RLIMITS, RLIMIT_NAMES, Rlimit, parse_rlimits
from isobench.drivers.container.subids import SubIds, parse_subids
from isobench.errors import UsageError


def spec(image: Path, **kw: object) -> SandboxSpec:
    return SandboxSpec(name="web-1", run_id="r1", image=image, **kw)  # type: ignore[arg-type]


def limits(items: list[object], **kw: object) -> dict[str, Rlimit]:
    kw.setdefault("can_raise", True)
    return {rl.name: rl for rl in parse_rlimits(items, "here", **kw)}  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ rlimits


def test_every_rlimit_is_set_explicitly() -> None:
    got = limits([])
    assert tuple(got) == RLIMIT_NAMES == tuple(sorted(DEFAULT_RLIMITS))
    assert got["core"].arg == "core=0:0"
    assert got["nofile"].arg == "nofile=1048576:1048576"
    assert got["stack"].arg == "stack=8388608:inf"


def test_rlimits_override_the_defaults() -> None:
    got = limits(["nofile=1024:4096", "core=unlimited", "nproc=50"])
    assert (got["nofile"].soft, got["nofile"].hard) == (1024, 4096)
    assert (got["core"].soft, got["core"].hard) == (None, None)
    assert got["nproc"].arg == "nproc=50:50"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("files=10", "unknown rlimit 'files'"),
        ("nofile", "must be 'NAME=VALUE'"),
        (7, "must be 'NAME=VALUE'"),
        ("nofile=lots", "not a number or 'unlimited'"),
        ("nofile=10:x", "not a number"),
        ("nofile=4096:1024", "soft limit exceeds the hard one"),
        ("nofile=unlimited:1024", "soft limit exceeds the hard one"),
    ],
)
def test_bad_rlimits_are_usage_errors(item: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        limits([item])


def test_without_cap_sys_resource_defaults_stop_at_the_runners_hard_limit() -> None:
    ceilings = {"nofile": 20000, "stack": 1 << 20}
    got = limits([], can_raise=False, hard_limit=ceilings.get)
    assert (got["nofile"].soft, got["nofile"].hard) == (20000, 20000)
    assert (got["stack"].soft, got["stack"].hard) == (1 << 20, 1 << 20)
    assert (got["core"].soft, got["core"].hard) == (0, 0)  # below the ceiling: kept
    with pytest.raises(UsageError, match="above the runner's hard limit 20000"):
        limits(["nofile=30000"], can_raise=False, hard_limit=ceilings.get)
    assert limits(["nofile=30000"], can_raise=True)["nofile"].hard == 30000


# ------------------------------------------------------------------------------------------ subids


def test_subids_as_a_range() -> None:
    ids = parse_subids("100000:65536", "here")
    assert ids == SubIds(100000, 100000, 65536)
    assert (ids.uid_map, ids.gid_map) == ("0 100000 65536", "0 100000 65536")


def test_subids_of_a_user_from_etc(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("alice:100000:65536\nbench:200000:65536\n")
    (tmp_path / "subgid").write_text("bench:300000:4096\n")
    ids = parse_subids("bench", "here", etc=tmp_path)
    assert ids == SubIds(200000, 300000, 4096)
    assert ids.gid_map == "0 300000 4096"
    with pytest.raises(UsageError, match=r"user .carol. has no range in .*subuid"):
        parse_subids("carol", "here", etc=tmp_path)


@pytest.mark.parametrize("value", ["0:65536", "100000:0", "a:b", "100000:", "4294967000:65536", ""])
def test_bad_subids_are_usage_errors(value: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="subids"):
        parse_subids(value, "here", etc=tmp_path)


# ------------------------------------------------------------------------------------------ config


def test_subids_make_a_user_namespace_with_the_range(tmp_path: Path) -> None:
    cfg = config_from_spec(spec(tmp_path, options={"subids": "100000:65536"}), tmp_path)
    assert "user" in cfg.namespaces
    assert cfg.subids == SubIds(100000, 100000, 65536)
    assert cfg.uid_map == "0 100000 65536"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rootless": True}, "rootless needs subids"),
        ({"subids": "100000:65536", "uid_map": "0 0 1"}, "either subids or uid_map"),
        ({"subids": 100000}, "subids must be a string"),
        ({"rlimits": "nofile=1"}, "rlimits must be a list"),
        ({"rlimits": ["nofile=x"]}, "not a number"),
        ({"layers": ["/"] * 512}, "at most 511 layers over the image"),
    ],
)
def test_bad_hardening_options_are_usage_errors(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        config_from_spec(spec(tmp_path, options=options), tmp_path)


def test_driver_options_are_checked_before_a_run() -> None:
    with pytest.raises(UsageError, match="rootless needs subids"):
        ContainerOptions.parse("container", {"rootless": True})
    with pytest.raises(UsageError, match="unknown rlimit 'bogus'"):
        ContainerOptions.parse("container", {"rlimits": ["bogus=1"]})
    opts = ContainerOptions.parse("container", {"rootless": True, "subids": "100000:65536"})
    assert opts.subids == "100000:65536"


def test_overlay_options_over_a_page_are_refused_before_anything_exists(tmp_path: Path) -> None:
    layers = []
    for i in range(20):
        layer = tmp_path / f"{i:02d}{'x' * 200}"
        layer.mkdir()
        layers.append(str(layer))
    cfg = config_from_spec(spec(tmp_path, options={"layers": layers}), tmp_path)
    with pytest.raises(UsageError, match=r"overlay layers need ~\d+ bytes of mount options"):
        check_overlay_fits(cfg, spec(tmp_path), tmp_path / "work")
    check_overlay_fits(config_from_spec(spec(tmp_path), tmp_path), spec(tmp_path), tmp_path / "work")


# ------------------------------------------------------------------------------------------ sealed helper


def test_sealed_helper_is_a_read_only_copy(tmp_path: Path) -> None:
    binary = tmp_path / "isobench-ctr-x"
    binary.write_bytes(b"\x7fELF" + bytes(range(256)) * 100)
    image = seal_helper(binary)
    try:
        assert image.path == binary and image.executable == f"/proc/self/fd/{image.fd}"
        assert os.pread(image.fd, 1 << 20, 0) == binary.read_bytes()
        seals = fcntl.fcntl(image.fd, fcntl.F_GET_SEALS)
        wanted = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        assert seals & wanted == wanted
        with pytest.raises(PermissionError) as err:
            os.pwrite(image.fd, b"x", 0)
        assert err.value.errno == errno.EPERM
        assert os.readlink(f"/proc/self/fd/{image.fd}").startswith("/memfd:isobench-ctr")
        assert fcntl.fcntl(image.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC  # no other child inherits it
    finally:
        os.close(image.fd)
