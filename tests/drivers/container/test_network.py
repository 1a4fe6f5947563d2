"""The container's veth: reached through the init's pidfd, never by a pid number alone.

Unit tests against a recording iproute2 (no root); the helper's ``netexec`` for real (marked
integration: setns needs root).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from isobench.drivers.container import network as ctr_net
from isobench.drivers.container.helper import ARGV0, HelperImage, ensure_helper, seal_helper
from isobench.drivers.container.state import child_pidfd
from isobench.errors import SandboxError
from isobench.hostsys.fake import FakeIp
from isobench.hostsys.links import Links

Answer = tuple[int, str, str]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def own_pidfd() -> Iterator[int]:
    """A pidfd of this very process: alive for the whole test, its pid never reused."""
    fd = os.pidfd_open(os.getpid())
    yield fd
    os.close(fd)


@pytest.fixture
def reaped_pidfd() -> Iterator[int]:
    """A pidfd of a child that exited and was reaped: what a pidfd holds once its pid is free
    for reuse."""
    child = subprocess.Popen(["true"])
    fd = os.pidfd_open(child.pid)
    child.wait()
    yield fd
    os.close(fd)


def veth(links: Links, tmp_path: Path, pid: int, pidfd: int) -> ctr_net.VethPair:
    image = HelperImage(path=tmp_path / "helper", fd=99)
    return ctr_net.setup_veth(links, image, pid, pidfd, "isobabc1230h", "isobabc1230c", tmp_path / "lock")


def test_the_peer_goes_into_a_namespace_fd_and_netexec_gets_the_pidfd(tmp_path: Path, own_pidfd: int) -> None:
    ip = FakeIp()
    before = open_fds()
    pair = veth(Links(ip), tmp_path, os.getpid(), own_pidfd)
    assert (str(pair.host_ip), str(pair.container_ip)) == ("172.29.0.1", "172.29.0.2")
    add = next(c for c in ip.calls if c[:2] == ["link", "add"])
    netns_path = add[add.index("netns") + 1]
    assert netns_path.startswith("/proc/self/fd/")  # a descriptor, not a pid number
    nsfd = int(netns_path.rsplit("/", 1)[1])
    # The host side's batch inherits the namespace fd, the inside's the helper image and the pidfd.
    assert ip.passed == [(nsfd,), (99, own_pidfd)]
    assert open_fds() == before  # the namespace fd is closed again
    assert ip.inside[-1] == ["route", "add", "default", "via", "172.29.0.1"]


def test_netexec_joins_by_the_pidfd_never_by_pid(tmp_path: Path, own_pidfd: int) -> None:
    seen: list[list[str]] = []
    ip = FakeIp()

    def recording(
        argv: Sequence[str], stdin: str | None = None, /, *, pass_fds: Sequence[int] = ()
    ) -> Answer:
        seen.append(list(argv))
        return ip(argv, stdin, pass_fds=pass_fds)

    veth(Links(recording), tmp_path, os.getpid(), own_pidfd)
    enter = next(a for a in seen if "netexec" in a)
    assert enter[0] == "/proc/self/fd/99"  # the sealed helper, not its file on disk
    assert enter[enter.index("--pidfd") + 1] == str(own_pidfd)
    assert "--pid" not in enter and str(os.getpid()) == enter[enter.index("--ppid") + 1]


def test_a_reused_pid_is_refused_before_any_link_exists(tmp_path: Path, reaped_pidfd: int) -> None:
    # The init's pid number now names another live process (this one); its pidfd says it is gone.
    ip = FakeIp()
    before = open_fds()
    with pytest.raises(SandboxError, match=r"is gone .*reused"):
        veth(Links(ip), tmp_path, os.getpid(), reaped_pidfd)
    assert ip.calls == [] and ip.links == {}
    assert open_fds() == before


def test_a_pid_that_is_free_is_refused(tmp_path: Path, reaped_pidfd: int) -> None:
    ip = FakeIp()
    with pytest.raises(SandboxError, match="cannot open its network namespace"):
        ctr_net.init_netns(os.getpid(), reaped_pidfd, proc=tmp_path)  # no such /proc entry
    assert ip.calls == []


def test_the_veth_is_removed_when_the_inside_fails(tmp_path: Path, own_pidfd: int) -> None:
    ip = FakeIp()

    def inside_fails(
        argv: Sequence[str], stdin: str | None = None, /, *, pass_fds: Sequence[int] = ()
    ) -> Answer:
        if argv[0] != "ip":  # the helper's netexec prefix
            return 1, "", "setns: Operation not permitted"
        return ip(argv, stdin, pass_fds=pass_fds)

    with pytest.raises(SandboxError, match="inside the sandbox failed: setns"):
        veth(Links(inside_fails), tmp_path, os.getpid(), own_pidfd)
    assert ip.links == {}


def test_the_inits_pidfd_is_taken_only_while_it_is_the_helpers_child(tmp_path: Path) -> None:
    # Here this test is the "helper" and a sleep its "init".
    child = subprocess.Popen(["sleep", "60"])
    try:
        before = open_fds()
        fd = child_pidfd(child.pid, os.getpid())
        assert fd is not None
        os.close(fd)
        # Another process's child (a recycled pid): no pidfd, and none left open.
        assert child_pidfd(child.pid, os.getpid() + 1) is None
        assert open_fds() == before
    finally:
        child.kill()
        child.wait()
    assert child_pidfd(child.pid, os.getpid()) is None  # reaped: the pid is free


# ---------------------------------------------------------------------------------- the real helper


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HelperImage]:
    image = seal_helper(ensure_helper(tmp_path_factory.mktemp("state")))
    yield image
    os.close(image.fd)


def helper_run(helper: HelperImage, args: Sequence[str], *fds: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ARGV0, *args],
        executable=helper.executable,
        pass_fds=(helper.fd, *fds),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def netexec(helper: HelperImage, pidfd: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return helper_run(
        helper, ["netexec", "--ppid", str(os.getpid()), "--pidfd", str(pidfd), "--", *argv], pidfd
    )


@pytest.mark.integration
def test_netexec_enters_the_net_namespace_of_its_pidfd(helper: HelperImage) -> None:
    inner = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        pidfd = os.pidfd_open(inner.pid)
        try:
            # unshare execs sleep in place: wait until the namespace is its own.
            for _ in range(200):
                if os.readlink(f"/proc/{inner.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                    break
                subprocess.run(["sleep", "0.01"], check=True)
            want = os.readlink(f"/proc/{inner.pid}/ns/net")
            assert want != os.readlink("/proc/self/ns/net")
            got = netexec(helper, pidfd, "readlink", "/proc/self/ns/net")
            assert got.returncode == 0, got.stderr
            assert got.stdout.strip() == want
        finally:
            os.close(pidfd)
    finally:
        inner.kill()
        inner.wait()


@pytest.mark.integration
def test_netexec_of_a_reaped_init_fails_and_by_pid_is_no_option(
    helper: HelperImage, reaped_pidfd: int
) -> None:
    got = netexec(helper, reaped_pidfd, "true")
    assert got.returncode != 0 and "setns into the container through its pidfd" in got.stderr
    old = helper_run(helper, ["netexec", "--pid", "1", "--", "true"])
    assert old.returncode == 2 and "unknown option --pid" in old.stderr
