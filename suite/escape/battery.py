"""Running the battery in one sandbox: the probe goes in on the exec's stdin (every driver passes
stdin, the guest agent included), runs from the sandbox's workdir, and is removed after."""

from __future__ import annotations

import logging
from pathlib import Path

from isobench.drivers.base import Sandbox
from isobench.errors import WorkloadError
from isobench.escape.canaries import Canaries
from isobench.escape.verdicts import Result, decide, parse_lines

log = logging.getLogger(__name__)

__all__ = ["SHIP", "run_battery"]

#: Write stdin to $1, run it with the rest of the arguments, remove it whatever happened.
SHIP = 'p="$1"; shift; cat > "$p" && chmod 700 "$p" && "$p" "$@"; rc=$?; rm -f "$p"; exit $rc'


def run_battery(
    sandbox: Sandbox,
    canaries: Canaries,
    probe: Path,
    *,
    volume_inside: str | None,
    timeout: float = 60.0,
) -> list[Result]:
    work = sandbox.workdir
    argv = [
        "sh",
        "-c",
        SHIP,
        "sh",
        f"{work}/isobench-escape-probe",
        "run",
        *canaries.probe_args(work=work, volume=volume_inside),
    ]
    res = sandbox.exec(argv, timeout=timeout, stdin=probe.read_bytes())
    lines = parse_lines(res.stdout)
    if "_env" not in lines:
        raise WorkloadError(
            f"the escape probe printed nothing in {sandbox.name} (exit {res.exit_code}): "
            f"{(res.stderr.strip() or res.stdout.strip())[-200:] or 'no output'}"
        )
    failure = "" if "_done" in lines else f" (the probe stopped early: exit {res.exit_code})"
    results = decide(lines, canaries.host_facts(volume=volume_inside is not None), failure=failure)
    for r in results:
        log.info("escape %s %s: %s (%s)", sandbox.name, r.name, r.verdict, r.evidence)
    return results
