"""What the probe's facts mean: one verdict per escape primitive, with its evidence.

Pure: the probe's JSON lines and the host's facts in, verdicts out. A primitive is **open** when
the sandbox reached the host's canary (or holds the permission that is the whole attack, for the
files whose write would act on the host), **blocked** when it did not, **n/a** where the primitive
has no host meaning (the sandbox runs its own kernel, this kernel lacks the feature, the driver
has no volume), and **error** when it could not be tried (the host could not plant its canary,
the probe said nothing about it).
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from isobench.model import Measurement

__all__ = [
    "PRIMITIVES",
    "HostFacts",
    "Primitive",
    "Result",
    "Verdict",
    "decide",
    "device_allowed",
    "measurements",
    "parse_lines",
]


class Verdict(enum.StrEnum):
    OPEN = "open"
    BLOCKED = "blocked"
    NA = "n/a"
    ERROR = "error"


@dataclass(frozen=True)
class Primitive:
    name: str
    title: str
    #: The CVE that made it famous, or "".
    cve: str = ""
    #: It acts on the kernel the sandbox runs on: no host meaning in a guest.
    kernel_wide: bool = False
    #: A table heading.
    short: str = ""


PRIMITIVES: tuple[Primitive, ...] = (
    Primitive(
        "runtime_exe",
        "overwrite the runtime binary via /proc/<pid>/exe",
        "CVE-2019-5736",
        short="runtime binary via /proc/pid/exe",
    ),
    Primitive(
        "release_agent", "cgroup v1 release_agent", "CVE-2022-0492", kernel_wide=True, short="release_agent"
    ),
    Primitive("leaked_fd", "leaked host directory fd", "CVE-2024-21626", short="leaked dir fd"),
    Primitive("mknod_block", "mknod of the host's block device, raw read", short="mknod block dev"),
    Primitive("core_pattern", "write /proc/sys/kernel/core_pattern", kernel_wide=True, short="core_pattern"),
    Primitive("sysrq_trigger", "write /proc/sysrq-trigger", kernel_wide=True, short="sysrq-trigger"),
    Primitive(
        "open_by_handle", 'open_by_handle_at on a host inode ("shocker")', short="open_by_handle (shocker)"
    ),
    Primitive("ptrace", "ptrace of a host process", short="ptrace host process"),
    Primitive("kernel_module", "load a kernel module", kernel_wide=True, short="kernel module"),
    Primitive("volume_symlink", "symlink in the volume pointing out of it", short="volume symlink"),
)

_CAP_SYS_ADMIN = 21


@dataclass(frozen=True)
class HostFacts:
    """What the host planted and knows, as the decisions need it."""

    token: str = ""
    #: Per primitive, why its canary could not be planted (the verdict is then "error").
    problems: Mapping[str, str] = field(default_factory=dict)
    #: The errno the host itself got opening its block device ("" = it could).
    host_blockdev_errno: str = ""
    #: Kernel features the host has (a shared-kernel sandbox cannot have more).
    has_sysrq: bool = True
    has_modules: bool = True
    #: The driver attaches a volume.
    volume: bool = True


@dataclass(frozen=True)
class Result:
    name: str
    verdict: Verdict
    evidence: str


def parse_lines(stdout: str) -> dict[str, dict[str, Any]]:
    """The probe's JSON lines by primitive (``_env`` and ``_done`` included); others are ignored."""
    out: dict[str, dict[str, Any]] = {}
    for raw in stdout.splitlines():
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("p"), str):
            out[obj["p"]] = obj
    return out


class StatLike(Protocol):
    """What :func:`os.stat` answers that the decision compares."""

    @property
    def st_dev(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_mtime_ns(self) -> int: ...


#: The host's stat(), a seam for tests.
StatFn = Callable[[str], StatLike]


def _failed(err: str) -> str:
    return err or "succeeded"


def _init_userns(uid_map: str) -> bool:
    return uid_map.split() == ["0", "0", "4294967295"]


def _has_cap(cap_eff: str, bit: int) -> bool:
    try:
        return bool((int(cap_eff, 16) >> bit) & 1)
    except ValueError:
        return False


def _same_file(t: Mapping[str, Any], stat: StatFn) -> bool:
    """The exe the probe saw is the host file at that path (device, inode, size and mtime)."""
    link = str(t.get("link") or "")
    if not link.startswith("/") or link.endswith(" (deleted)"):
        return False
    try:
        st = stat(link)
    except OSError:
        return False
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    return (dev, st.st_ino, st.st_size, st.st_mtime_ns) == (
        t.get("dev"),
        t.get("ino"),
        t.get("size"),
        t.get("mtime_ns"),
    )


def _runtime_exe(f: Mapping[str, Any], stat: StatFn) -> tuple[Verdict, str]:
    seen = []
    for t in f.get("targets") or []:
        who, link = t.get("who"), t.get("link") or "?"
        if who == "self":  # the probe itself, which the host put there
            continue
        if t.get("path_errno"):
            seen.append(f"pid {who}: {t['path_errno']}")
            continue
        if not _same_file(t, stat):
            seen.append(f"pid {who}: {link} is not a host file")
            continue
        werr = t.get("write_errno", "")
        if werr in ("", "ETXTBSY"):
            how = "only ETXTBSY (while it runs) refused a write open" if werr else "a write open succeeded"
            return Verdict.OPEN, f"pid {who}'s binary {link} is the host's own file: held by handle, {how}"
        seen.append(f"pid {who}: host file {link}, write open {werr}")
    return Verdict.BLOCKED, "; ".join(seen) or "no other process's binary visible"


def _mount_text(f: Mapping[str, Any], prefix: str) -> str:
    if f.get(f"{prefix}unshare_errno"):
        return f"unshare {f[f'{prefix}unshare_errno']}"
    if f.get(f"{prefix}mount_errno"):
        return f"mount -t cgroup {f[f'{prefix}mount_errno']}"
    if f"{prefix}mount_errno" not in f:
        return "not tried"
    opened = _failed(str(f.get(f"{prefix}open_errno", "")))
    return f"mount -t cgroup -o {f.get(f'{prefix}controller')} ok, release_agent open {opened}"


def _release_agent(f: Mapping[str, Any], env: Mapping[str, Any]) -> tuple[Verdict, str]:
    opened = [str(e["path"]) for e in f.get("existing") or [] if e.get("errno") == ""]
    refused = sorted({str(e.get("errno")) for e in f.get("existing") or [] if e.get("errno")})
    if f.get("mount_errno") == "" and f.get("open_errno") == "":
        opened.append(f"a fresh cgroup v1 mount ({f.get('controller')})")
    tried = (
        f"new mount namespace: {_mount_text(f, '')}; new user+cgroup namespace: {_mount_text(f, 'userns_')}"
    )
    if not opened:
        existing = f"existing: {', '.join(refused)}" if refused else "no release_agent mounted"
        if f.get("userns_mount_errno") == "" and f.get("userns_open_errno") == "":
            return Verdict.BLOCKED, (
                f"{existing}; {tried}: opened from a user namespace, whose write the kernel refuses "
                "(the CVE-2022-0492 fix)"
            )
        return Verdict.BLOCKED, f"{existing}; {tried}"
    where = opened[0] + (f" (+{len(opened) - 1} more)" if len(opened) > 1 else "")
    if _init_userns(str(env.get("uid_map", ""))) and _has_cap(str(env.get("cap_eff", "")), _CAP_SYS_ADMIN):
        return Verdict.OPEN, f"opened {where} for writing (not written); {tried}"
    return Verdict.BLOCKED, (
        f"opened {where}, but outside the initial user namespace or without CAP_SYS_ADMIN, "
        "so the kernel refuses the write itself"
    )


def _leaked_fd(f: Mapping[str, Any]) -> tuple[Verdict, str]:
    walks = f.get("walks") or []
    for w in walks:
        if w.get("found"):
            what = "the cwd" if w.get("fd") == "cwd" else f"fd {w.get('fd')}"
            return Verdict.OPEN, (
                f"{what} ({w.get('target')}) led {w.get('steps')} levels up to a root holding the host's canary"
            )
    errs = sorted({str(w.get("errno") or "no canary") for w in walks})
    return (
        Verdict.BLOCKED,
        f"{len(walks)} directory fd(s) incl. the cwd walked to a root without the canary ({', '.join(errs)})",
    )


def device_allowed(rules: str, kind: str, dev: str, access: str = "r") -> bool:
    """Whether cgroup v1 ``devices.list`` rules (";"-joined lines: ``b 8:0 rwm``, ``a *:* rwm``)
    let a process open device ``dev`` ("major:minor") of ``kind`` ("b" or "c") for ``access``."""
    major, _, minor = dev.partition(":")
    for rule in rules.split(";"):
        parts = rule.split()
        if len(parts) != 3:
            continue
        rkind, rdev, raccess = parts
        rmajor, _, rminor = rdev.partition(":")
        if (
            rkind in ("a", kind)
            and rmajor in ("*", major)
            and rminor in ("*", minor)
            and all(c in raccess for c in access)
        ):
            return True
    return False


def _mknod_block(f: Mapping[str, Any], host: HostFacts) -> tuple[Verdict, str]:
    dev = f.get("dev", "?")
    if f.get("found"):
        return Verdict.OPEN, f"mknod {dev}, opened read-only, the host's canary block read at its offset"
    if f.get("mknod_errno"):
        return Verdict.BLOCKED, f"mknod {dev}: {f['mknod_errno']}"
    if f.get("open_errno"):
        rules = str(f.get("devices_list") or "")
        if rules and not device_allowed(rules, "b", str(dev)):
            return (
                Verdict.BLOCKED,
                f"mknod {dev} ok, open {f['open_errno']}: the device cgroup allows no b {dev} ({rules[:80]})",
            )
        if f["open_errno"] == host.host_blockdev_errno:
            return Verdict.ERROR, (
                f"mknod {dev} ok, open {f['open_errno']}: the host itself gets {host.host_blockdev_errno} "
                "opening it, so this machine cannot tell"
            )
        return Verdict.BLOCKED, f"mknod {dev} ok, open {f['open_errno']}"
    read = f.get("read_errno") or "no canary there"
    return Verdict.BLOCKED, f"mknod {dev} ok, read at the canary's offset: {read} (not the host's device)"


def _open_for_write(f: Mapping[str, Any], path: str) -> tuple[Verdict, str]:
    if f.get("errno") == "":
        return Verdict.OPEN, f"{path} opened for writing (not written)"
    return Verdict.BLOCKED, f"{path}: {f.get('errno')}"


def _open_by_handle(f: Mapping[str, Any]) -> tuple[Verdict, str]:
    tries = f.get("tries") or []
    if f.get("found"):
        via = next((t.get("mount") for t in tries if t.get("errno") == ""), "?")
        return Verdict.OPEN, f"the host canary's handle opened through {via}, token read"
    outcomes = ", ".join(f"{t.get('errno')} via {t.get('mount')}" for t in tries)
    return Verdict.BLOCKED, f"{f.get('mounts_tried', 0)} mount fds tried: {outcomes or 'none opened'}"


def _ptrace(f: Mapping[str, Any]) -> tuple[Verdict, str]:
    if f.get("pid") is None:
        hint = f" (that pid here is {f['hint_comm']!r})" if f.get("hint_comm") else ""
        return Verdict.BLOCKED, f"the host's canary process is not visible{hint}"
    if f.get("errno") == "":
        return Verdict.OPEN, f"PTRACE_SEIZE of the host's canary (pid {f['pid']}) succeeded; released at once"
    return Verdict.BLOCKED, f"canary visible as pid {f['pid']}, PTRACE_SEIZE {f.get('errno')}"


#: init_module's answers that mean the permission check passed and the kernel looked at the image.
_MODULE_PERMITTED = frozenset({"", "ENOEXEC", "EINVAL", "EKEYREJECTED", "EBADMSG", "EFAULT", "ENOKEY"})


def _kernel_module(f: Mapping[str, Any]) -> tuple[Verdict, str]:
    err = str(f.get("errno"))
    if err in _MODULE_PERMITTED:
        return Verdict.OPEN, f"init_module of a zero image: {_failed(err)} (past the permission check)"
    return Verdict.BLOCKED, f"init_module: {err}"


def _volume_symlink(f: Mapping[str, Any]) -> tuple[Verdict, str]:
    if f.get("found"):
        return Verdict.OPEN, f"{f.get('link')} -> {f.get('target')} read the host's canary"
    made = " (made inside: the host cannot write into this volume)" if f.get("made_inside") else ""
    return Verdict.BLOCKED, f"{f.get('link')} -> {f.get('target')}{made}: {f.get('errno') or 'no canary'}"


def _decide_one(
    p: Primitive, f: Mapping[str, Any], env: Mapping[str, Any], host: HostFacts, stat: StatFn
) -> tuple[Verdict, str]:
    if p.name == "runtime_exe":
        return _runtime_exe(f, stat)
    if p.name == "release_agent":
        return _release_agent(f, env)
    if p.name == "leaked_fd":
        return _leaked_fd(f)
    if p.name == "mknod_block":
        return _mknod_block(f, host)
    if p.name == "core_pattern":
        return _open_for_write(f, "/proc/sys/kernel/core_pattern")
    if p.name == "sysrq_trigger":
        return _open_for_write(f, "/proc/sysrq-trigger")
    if p.name == "open_by_handle":
        return _open_by_handle(f)
    if p.name == "ptrace":
        return _ptrace(f)
    if p.name == "kernel_module":
        return _kernel_module(f)
    return _volume_symlink(f)


def _not_here(p: Primitive, host: HostFacts, own_kernel: bool) -> str | None:
    """Why the primitive has no host meaning for this sandbox, or None."""
    if p.kernel_wide and own_kernel:
        return "the sandbox runs its own kernel"
    if p.name == "sysrq_trigger" and not host.has_sysrq:
        return "this kernel has no /proc/sysrq-trigger"
    if p.name == "kernel_module" and not host.has_modules:
        return "this kernel has no module support (no /proc/modules)"
    if p.name == "volume_symlink" and not host.volume:
        return "the driver attaches no volume"
    return None


def decide(
    lines: Mapping[str, Mapping[str, Any]],
    host: HostFacts,
    *,
    stat: StatFn = os.stat,
    primitives: Sequence[Primitive] = PRIMITIVES,
    failure: str = "",
) -> list[Result]:
    """One result per primitive, in catalogue order. ``failure`` says why the probe may have stopped."""
    env = lines.get("_env", {})
    own_kernel = bool(env.get("own_kernel"))
    out = []
    for p in primitives:
        f = lines.get(p.name)
        na = _not_here(p, host, own_kernel)
        if na is not None:
            seen = f" (inside: {json.dumps({k: v for k, v in f.items() if k != 'p'})[:160]})" if f else ""
            out.append(Result(p.name, Verdict.NA, na + seen))
        elif p.name in host.problems:
            out.append(Result(p.name, Verdict.ERROR, f"canary not planted: {host.problems[p.name]}"))
        elif f is None:
            out.append(Result(p.name, Verdict.ERROR, f"the probe said nothing about it{failure}"))
        elif "skipped" in f:
            out.append(Result(p.name, Verdict.ERROR, str(f["skipped"])))
        else:
            verdict, evidence = _decide_one(p, f, env, host, stat)
            out.append(Result(p.name, verdict, evidence))
    return out


def measurements(results: Sequence[Result], params: Mapping[str, Any]) -> list[Measurement]:
    """``escape.<primitive>`` (1 open, 0 blocked) for each decided one, then ``escape.open`` (how
    many are open) holding every verdict and its evidence, n/a and errors included."""
    out = [
        Measurement(
            f"escape.{r.name}",
            1.0 if r.verdict is Verdict.OPEN else 0.0,
            "bool",
            "lower",
            params=dict(params),
            metadata={"verdict": str(r.verdict), "evidence": r.evidence},
        )
        for r in results
        if r.verdict in (Verdict.OPEN, Verdict.BLOCKED)
    ]
    out.append(
        Measurement(
            "escape.open",
            float(sum(r.verdict is Verdict.OPEN for r in results)),
            "primitives",
            "lower",
            params=dict(params),
            metadata={
                "verdicts": {r.name: str(r.verdict) for r in results},
                "evidence": {r.name: r.evidence for r in results},
            },
        )
    )
    return out
