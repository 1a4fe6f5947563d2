"""Parser of the helper's progress report (see the protocol at the top of ``isobench_ctr.c``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from isobench.model import PhaseTiming

__all__ = ["HelperReport", "parse_report"]


@dataclass(frozen=True)
class HelperReport:
    started_ns: int | None = None
    phases: tuple[PhaseTiming, ...] = ()
    #: Host pid of the container's pid 1.
    container_pid: int | None = None
    ready: bool = False
    #: When the workload's execve was called (run mode) and when the helper saw it exit.
    exec_ns: int | None = None
    exited_ns: int | None = None
    errors: tuple[str, ...] = field(default=())

    @property
    def error(self) -> str | None:
        return self.errors[0] if self.errors else None


def parse_report(text: str) -> HelperReport:
    phases: list[PhaseTiming] = []
    errors: list[str] = []
    started = pid = exec_ns = exited = None
    ready = False
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        parts = rest.split()
        try:
            if tag == "P" and len(parts) == 3:
                phases.append(PhaseTiming(parts[0], int(parts[1]), int(parts[2])))
            elif tag == "S" and parts:
                started = int(parts[0])
            elif tag == "C" and parts:
                pid = int(parts[0])
            elif tag == "R":
                ready = True
            elif tag == "X" and parts:
                exec_ns = int(parts[0])
            elif tag == "W" and parts:
                exited = int(parts[0])
            elif tag == "E":
                errors.append(rest.strip())
        except ValueError:
            errors.append(f"unreadable helper report line: {line!r}")
    return HelperReport(
        started_ns=started,
        phases=tuple(phases),
        container_pid=pid,
        ready=ready,
        exec_ns=exec_ns,
        exited_ns=exited,
        errors=tuple(errors),
    )
