"""One exception hierarchy. Every user-facing failure is one line that says what to do."""

from __future__ import annotations


class IsobenchError(Exception):
    """Base of every error isobench raises on purpose. ``str(err)`` is the one line shown to users."""

    exit_code = 1


class UsageError(IsobenchError):
    """Bad input from the user: unknown names, malformed config, unwritable paths."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file that cannot be read or does not validate."""


class DriverUnavailable(IsobenchError):
    """A driver cannot run on this host; the message says why (asv's EnvironmentUnavailable)."""

    exit_code = 2


class SandboxError(IsobenchError):
    """Creating, running or tearing down a sandbox failed."""


class WorkloadError(IsobenchError):
    """A workload ran but its result is not valid (tool failed, output unparseable, checks failed)."""


class CellTimeout(IsobenchError):
    """One matrix cell exceeded its deadline."""


class ResultsError(IsobenchError):
    """Results on disk are missing, corrupt or of an unknown schema version."""

    exit_code = 2


class GcIncomplete(SandboxError):
    """A driver's gc removed what it could, and these resources are still there. ``str(err)`` names
    them; ``removed`` and ``leftovers`` (one line each) let ``isobench gc`` list both."""

    def __init__(self, removed: list[str], leftovers: list[str]) -> None:
        super().__init__(f"{len(leftovers)} left: {'; '.join(leftovers)}")
        self.removed = removed
        self.leftovers = leftovers
