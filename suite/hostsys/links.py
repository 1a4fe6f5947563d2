"""Host links and network namespaces through iproute2, behind one seam every driver shares.

What the container, runc and qemu drivers each did their own way, written once: names that fit
IFNAMSIZ and carry a digest of the run id (so gc finds a run's links by prefix), a veth pair whose
peer goes straight into a sandbox's network namespace, addresses and routes set with one
``ip -batch`` per side, a delete that is quiet when the link is already gone, and gc by prefix.
Each driver keeps its own address range and how it picks an address; the :data:`Runner` seam lets
tests record the commands instead of running them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from isobench.errors import SandboxError
from isobench.procs import run_command

__all__ = [
    "MAX_IFNAME",
    "Link",
    "LinkExists",
    "Links",
    "Runner",
    "ifname",
    "nsenter_net",
    "parse_links",
    "run_tag",
]

log = logging.getLogger(__name__)

#: IFNAMSIZ - 1: the longest interface name the kernel takes.
MAX_IFNAME = 15
_TIMEOUT = 30.0
#: What ``ip link del`` says of a link that is not there; "No such device" when the kernel dropped a
#: veth with its namespace between the lookup and the delete (a container's init just killed).
_GONE = ("Cannot find device", "does not exist", "No such device")
_FAILED_AT = re.compile(r"Command failed -:(\d+)")


class Runner(Protocol):
    """argv, stdin -> (exit code, stdout, stderr); the command inherits ``pass_fds`` (a namespace
    or pidfd it must reach by descriptor, not by a pid number that could be recycled)."""

    def __call__(
        self, argv: Sequence[str], stdin: str | None = None, /, *, pass_fds: Sequence[int] = ()
    ) -> tuple[int, str, str]: ...


class LinkExists(SandboxError):
    """The name is taken (another sandbox, or another run, holds a link of that name)."""


def run_host(
    argv: Sequence[str], stdin: str | None = None, /, *, pass_fds: Sequence[int] = ()
) -> tuple[int, str, str]:
    res = run_command(
        argv, timeout=_TIMEOUT, stdin=stdin.encode() if stdin is not None else None, pass_fds=pass_fds
    )
    return res.exit_code, res.stdout, res.stderr


def run_tag(run_id: str) -> str:
    """Six hex digits of the run id: what fits in a link name and still tells runs apart."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:6]


def ifname(name: str) -> str:
    """``name`` if the kernel takes it as an interface name, else a SandboxError."""
    if not 0 < len(name) <= MAX_IFNAME or "/" in name or any(c.isspace() for c in name):
        raise SandboxError(f"{name!r} is not a valid interface name (1-{MAX_IFNAME} characters)")
    return name


def nsenter_net(pid: int) -> list[str]:
    """The command prefix that runs a command in ``pid``'s network namespace."""
    return ["nsenter", f"--net=/proc/{pid}/ns/net"]


@dataclass(frozen=True)
class Link:
    name: str
    alias: str = ""


def parse_links(text: str) -> list[Link]:
    """Links of ``ip -j link show`` output."""
    try:
        doc: Any = json.loads(text or "[]")
    except json.JSONDecodeError as err:
        raise SandboxError(f"`ip -j link show` printed unparsable output: {text[:200]!r}") from err
    return [
        Link(item["ifname"], str(item.get("ifalias", "")))
        for item in (doc if isinstance(doc, list) else [])
        if isinstance(item, Mapping) and isinstance(item.get("ifname"), str)
    ]


class Links:
    """iproute2 on the host: list, create, configure and delete links."""

    def __init__(self, run: Runner = run_host, ip: str = "ip") -> None:
        self._run = run
        self._ip = ip

    def find(self, prefix: str = "") -> list[Link]:
        code, out, err = self._run([self._ip, "-j", "link", "show"], None)
        if code != 0:
            raise SandboxError(f"`ip link show` failed: {err.strip()}")
        return [link for link in parse_links(out) if link.name.startswith(prefix)]

    def addresses(self) -> str:
        """``ip -4 -o addr show``: every IPv4 address on the host, one line each."""
        code, out, err = self._run([self._ip, "-4", "-o", "addr", "show"], None)
        if code != 0:
            raise SandboxError(f"`ip addr show` failed: {err.strip()}")
        return out

    def command(self, *args: str, what: str = "") -> None:
        """One ``ip`` command on the host; a failure is a SandboxError naming it."""
        code, _, err = self._run([self._ip, *args], None)
        if code != 0:
            raise SandboxError(
                f"{what or '`ip ' + ' '.join(args) + '`'} failed: {err.strip() or code}; "
                "sandbox networking needs root and iproute2"
            )

    def batch(
        self, commands: Iterable[str], what: str, *, enter: Sequence[str] = (), pass_fds: Sequence[int] = ()
    ) -> None:
        """Run ``ip`` commands as one ``ip -batch`` (inside a namespace when ``enter`` is a prefix
        such as :func:`nsenter_net`, which inherits ``pass_fds``)."""
        text = "".join(f"{c}\n" for c in commands)
        code, _, err = self._run([*enter, self._ip, "-batch", "-"], text, pass_fds=pass_fds)
        if code != 0:
            raise SandboxError(f"{what} failed: {err.strip() or code}")

    def delete(self, name: str) -> bool:
        """Delete a link if it exists; True if it was there. Its peer (a veth's other end) goes
        with it, and so does a veth whose namespace the kernel already dropped."""
        code, _, err = self._run([self._ip, "link", "del", name], None)
        if code == 0:
            return True
        if any(g in err for g in _GONE):
            return False
        raise SandboxError(f"cannot delete link {name}: {err.strip()}")

    def add_veth(
        self,
        host: str,
        peer: str,
        netns: int | str,
        host_cidr: str,
        *,
        alias: str | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        """A veth pair whose ``peer`` end is made inside the network namespace ``netns`` (a pid, or
        a path such as ``/proc/self/fd/N`` with N in ``pass_fds``), the host end addressed and up,
        in one ``ip -batch``. :class:`LinkExists` when ``host`` is taken (nothing is left); on any
        other failure the pair is deleted before the error propagates."""
        lines = [f"link add {ifname(host)} type veth peer name {ifname(peer)} netns {netns}"]
        if alias is not None:
            lines.append(f"link set dev {host} alias {alias}")
        lines += [f"addr add {host_cidr} dev {host}", f"link set dev {host} up"]
        code, _, err = self._run(
            [self._ip, "-batch", "-"], "".join(f"{c}\n" for c in lines), pass_fds=pass_fds
        )
        if code == 0:
            return
        failed_at = _FAILED_AT.search(err)
        if "File exists" in err and (failed_at is None or failed_at.group(1) == "1"):
            raise LinkExists(f"link {host} exists already")
        self.discard(host)
        raise SandboxError(f"creating veth {host} failed: {err.strip() or code}")

    def configure_inside(
        self,
        enter: Sequence[str],
        dev: str,
        cidr: str,
        gateway: str,
        *,
        rename: str | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        """Inside a sandbox's namespace: (rename,) address and bring up ``dev``, route via
        ``gateway``. ``enter`` inherits ``pass_fds``."""
        name = rename or dev
        lines = [f"link set dev {dev} name {rename}"] if rename else []
        lines += [
            f"addr add {cidr} dev {name}",
            f"link set dev {name} up",
            f"route add default via {gateway}",
        ]
        self.batch(lines, f"configuring {name} inside the sandbox", enter=enter, pass_fds=pass_fds)

    def gc(self, prefix: str, owned: Callable[[Link], bool] = lambda _l: True) -> list[str]:
        """Delete the links starting with ``prefix`` that ``owned`` accepts; return their names."""
        gone = []
        # Taps and veths before bridges: a bridge goes more cleanly once its ports are gone.
        for link in sorted(self.find(prefix), key=lambda lk: lk.name.endswith("br")):
            if not owned(link):
                continue
            try:
                if self.delete(link.name):
                    gone.append(link.name)
            except SandboxError as err:
                log.warning("%s", err)
        return gone

    def discard(self, name: str) -> None:
        """Delete a link on a path that is already failing: a problem is logged, not raised."""
        try:
            self.delete(name)
        except SandboxError as err:
            log.warning("%s", err)
