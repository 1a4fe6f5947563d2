"""The ``overlay`` workload: what overlayfs semantics cost, next to the same operations on a VM's or
the host's root storage.

* copy-up: the first 4 KiB write into a lower-layer file copies the whole file up; later writes do
  not. Measured by file size.
* whiteout: deleting a lower file; deleting a lower directory (whiteouts for its entries), then
  recreating it (an opaque directory).
* rename of a lower directory: without ``redirect_dir`` rename(2) fails with EXDEV and ``mv`` falls
  back to copy + delete. The rename(2) result is probed separately (perl, Essential in Debian) and
  recorded, the ``mv`` time is what users experience.

The files must pre-exist in the image's lower layer (``FIXTURES_DIR``, see ``FIXTURES``). A driver
whose root storage is the host's own filesystem (the native baseline) must never write to it, so
for it they are staged in the sandbox's workdir first: a native filesystem with no copy-on-write.
Timing is inside the sandbox with ``date +%s%N`` around each command; ``overlay.noop`` is that
harness's own cost (two ``date`` and one ``/bin/true``) for reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from isobench.drivers.base import RootStorage, Sandbox
from isobench.errors import WorkloadError
from isobench.model import Measurement
from isobench.workloads._common import BaseWorkload, Budget, Params, run_checked
from isobench.workloads.base import WorkloadContext

__all__ = [
    "DIR_ENTRIES",
    "FIXTURES",
    "FIXTURES_DIR",
    "WORKLOAD",
    "OverlayParams",
    "OverlayWorkload",
    "overlay_measurements",
    "overlay_script",
    "parse_overlay_output",
    "stage_script",
]

FIXTURES_DIR = "/isobench-fixtures"
#: Lower-layer files by name and size (bytes). Non-sparse (copy-up skips holes), fixed content.
FIXTURES: dict[str, int] = {
    "file-4k": 4 << 10,
    "file-64k": 64 << 10,
    "file-1m": 1 << 20,
    "file-16m": 16 << 20,
    "file-256m": 256 << 20,
    "whiteout-file": 4 << 10,
}
#: Lower-layer directories, each holding this many 4 KiB files named f000, f001, ...
FIXTURE_DIRS = ("dir-delete", "dir-rename", "dir-probe")
DIR_ENTRIES = 100


@dataclass(frozen=True)
class OverlayParams(Params):
    workload: ClassVar[str] = "overlay"

    files: tuple[str, ...] = field(
        default=("file-4k", "file-64k", "file-1m", "file-16m", "file-256m"),
        metadata={"choices": tuple(f for f in FIXTURES if f.startswith("file-"))},
    )
    fixtures_dir: str = field(default=FIXTURES_DIR, metadata={"path": True})

    @classmethod
    def quick(cls) -> OverlayParams:
        return cls(files=("file-4k", "file-1m", "file-16m"))


def stage_script(target: str) -> str:
    """Creates the fixtures under ``target`` (a root on the host's own tree), same names, sizes and layout."""
    lines = ["set -e", f"mkdir -p {target}"]
    for name, size in FIXTURES.items():
        lines.append(f"head -c {size} /dev/zero | tr '\\0' 'i' > {target}/{name}")
    for d in FIXTURE_DIRS:
        lines.append(
            f"mkdir -p {target}/{d}; i=0; while [ $i -lt {DIR_ENTRIES} ]; do "
            f"head -c 4096 /dev/zero > {target}/{d}/f$(printf %03d $i); i=$((i+1)); done"
        )
    lines.append("sync")
    return "\n".join(lines)


def overlay_script(fixtures: str, files: Iterable[str]) -> str:
    f = fixtures
    dd = "dd if=/dev/zero bs=4096 count=1 conv=notrunc status=none of="
    lines = [
        "set -u",
        'm() { label=$1; shift; s=$(date +%s%N); "$@" || { echo "fail $label"; exit 1; }; '
        'e=$(date +%s%N); echo "t $label $((e-s))"; }',
        f"[ -d {f} ] || {{ echo 'missing {f}'; exit 3; }}",
        "m noop /bin/true",
    ]
    for name in files:
        lines += [
            f'echo "size {name} $(stat -c %s {f}/{name})"',
            f"m first_write:{name} {dd}{f}/{name}",
            f"m later_write:{name} {dd}{f}/{name}",
        ]
    lines += [
        f"m delete_file rm {f}/whiteout-file",
        f"m delete_dir rm -rf {f}/dir-delete",
        f"m recreate_dir mkdir {f}/dir-delete",
        f"m rename_dir mv {f}/dir-rename {f}/dir-renamed",
        "if command -v perl >/dev/null 2>&1; then "
        'perl -e \'if (rename($ARGV[0], $ARGV[1])) { print "rename ok\\n" } '
        'else { printf "rename errno %d\\n", $!+0 }\' '
        f"{f}/dir-probe {f}/dir-probed; else echo 'rename unknown'; fi",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class OverlayOutput:
    seconds: Mapping[str, float]
    sizes: Mapping[str, int]
    rename: str


def parse_overlay_output(stdout: str) -> OverlayOutput:
    if re.search(r"^missing ", stdout, re.MULTILINE):
        raise WorkloadError(
            f"the image has no {FIXTURES_DIR}; rebuild it with the current recipe (isobench image build --force)"
        )
    failed = re.search(r"^fail (\S+)", stdout, re.MULTILINE)
    if failed:
        raise WorkloadError(f"overlay step {failed.group(1)} failed inside the sandbox")
    seconds = {
        m.group(1): int(m.group(2)) / 1e9 for m in re.finditer(r"^t (\S+) (-?\d+)$", stdout, re.MULTILINE)
    }
    if not seconds or any(v < 0 for v in seconds.values()):
        raise WorkloadError("overlay timings missing or negative; the sandbox needs GNU date (+%s%N)")
    sizes = {m.group(1): int(m.group(2)) for m in re.finditer(r"^size (\S+) (\d+)$", stdout, re.MULTILINE)}
    rm = re.search(r"^rename (ok|unknown|errno \d+)$", stdout, re.MULTILINE)
    rename = "unknown"
    if rm:
        rename = {"errno 18": "EXDEV"}.get(rm.group(1), rm.group(1))
    return OverlayOutput(seconds, sizes, rename)


def overlay_measurements(out: OverlayOutput, files: Iterable[str], staged: bool) -> list[Measurement]:
    meta = {
        "tool": "sh + date +%s%N",
        "fixtures": "staged in workdir (native fs, no copy-on-write)" if staged else "image lower layer",
    }
    result: list[Measurement] = []

    def add(
        metric: str, key: str, params: Mapping[str, object], extra: Mapping[str, object] | None = None
    ) -> None:
        if key not in out.seconds:
            raise WorkloadError(f"overlay output has no {key} timing")
        result.append(
            Measurement(metric, out.seconds[key], "seconds", "lower", params, {**meta, **(extra or {})})
        )

    add("overlay.noop", "noop", {})
    for name in files:
        expected = FIXTURES[name]
        if out.sizes.get(name) != expected:
            raise WorkloadError(
                f"fixture {name} has {out.sizes.get(name)} bytes, expected {expected}; rebuild the image"
            )
        p = {"file": name, "size_bytes": expected}
        add("overlay.first_write", f"first_write:{name}", p)
        add("overlay.later_write", f"later_write:{name}", p)
    add("overlay.delete_file", "delete_file", {"size_bytes": FIXTURES["whiteout-file"]})
    add("overlay.delete_dir", "delete_dir", {"entries": DIR_ENTRIES})
    add("overlay.recreate_dir", "recreate_dir", {"entries": 0})
    add("overlay.rename_dir", "rename_dir", {"entries": DIR_ENTRIES}, {"rename_syscall": out.rename})
    return result


class OverlayWorkload(BaseWorkload):
    name = "overlay"
    description = "copy-up by file size, whiteouts, opaque dirs, dir rename (EXDEV)"
    tools = ("sh", "date", "dd", "stat", "rm", "mv", "mkdir", "head", "tr")
    precision_figures = ("overlay.*",)
    params_type = OverlayParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params = OverlayParams.of(ctx)
        budget = self.budget(ctx)
        # A sandbox on the host's own tree: never write into its root.
        staged = ctx.driver.capabilities.root_storage is RootStorage.HOST_FS
        with ctx.sandbox() as sandbox:
            fixtures = params.fixtures_dir
            if staged:
                fixtures = f"{sandbox.workdir.rstrip('/')}/isobench-fixtures"
                run_checked(
                    sandbox, ["sh", "-c", stage_script(fixtures)], timeout=budget.left(), what="staging"
                )
            res = self._run(sandbox, fixtures, params.files, budget)
        return overlay_measurements(parse_overlay_output(res), params.files, staged)

    def _run(self, sandbox: Sandbox, fixtures: str, files: Iterable[str], budget: Budget) -> str:
        res = sandbox.exec(["sh", "-c", overlay_script(fixtures, files)], timeout=budget.left())
        if not res.ok and not re.search(r"^(missing|fail) ", res.stdout, re.MULTILINE):
            raise WorkloadError(f"overlay script failed (exit {res.exit_code}): {res.stderr.strip()[:200]}")
        return res.stdout


WORKLOAD = OverlayWorkload
