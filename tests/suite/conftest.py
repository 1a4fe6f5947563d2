"""Test doubles the runner's tests share: a logging fake driver and the Workload protocol's defaults."""

from typing import ClassVar

from isobench.drivers.base import DriverContext
from isobench.testing import FakeDriver


def logging_driver(ctx: DriverContext, log: list[str], name: str = "fake") -> FakeDriver:
    """A driver whose sandboxes run anything (exit 0, no output) and log their life cycle in ``log``."""
    return FakeDriver.like(
        FakeDriver.capabilities,
        name=name,
        ctx=ctx,
        script=[("", "")],
        metadata={"accel": "tcg", "fake": True},
        events=log,
    )


class WorkloadDefaults:
    """The Workload protocol's class attributes at their defaults: each test workload that derives
    from it states only its name and what it does."""

    description: ClassVar[str] = ""
    tools: ClassVar[tuple[str, ...]] = ()
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None


def balanced(log: list[str]) -> bool:
    created = {line.split()[1] for line in log if line.startswith("create")}
    destroyed = {line.split()[1] for line in log if line.startswith("destroy")}
    return created == destroyed and len(created) > 0
