"""SandboxBase and started_or_cleaned: the destroy and failed-create rules every driver shares."""

from __future__ import annotations

from pathlib import Path

import pytest
from isobench.drivers.base import (
    ExecRequest,
    ExecResult,
    PhaseClock,
    SandboxBase,
    SandboxSpec,
    SandboxStats,
    started_or_cleaned,
)
from isobench.errors import SandboxError, UsageError


class _Fake(SandboxBase):
    kind = "fake sandbox"

    def __init__(self, leftovers: list[str] | None = None) -> None:
        super().__init__(SandboxSpec(name="f", run_id="r"), PhaseClock(), workdir="/w")
        self.leftovers = leftovers or []
        self.teardowns = 0

    def _exec(self, req: ExecRequest) -> ExecResult:
        return ExecResult(req.argv, 0, "", "", 0, 0)

    def stats(self) -> SandboxStats:
        return SandboxStats()

    def _teardown(self) -> list[str]:
        self.teardowns += 1
        return list(self.leftovers)


def test_destroy_is_idempotent_and_timed() -> None:
    sb = _Fake()
    sb.destroy()
    sb.destroy()
    assert sb.teardowns == 1
    assert [p.name for p in sb.phases] == ["destroy"]
    assert sb.destroyed


def test_destroy_names_what_is_left_and_is_not_retried() -> None:
    sb = _Fake(["cgroup /x", "rm /y: busy"])
    with pytest.raises(
        SandboxError,
        match=r"teardown of fake sandbox f left resources \(cgroup /x; rm /y: busy\); run `isobench gc`",
    ):
        sb.destroy()
    sb.destroy()  # the record of what is left went with the error; a second call is a no-op
    assert sb.teardowns == 1


def test_exec_guard() -> None:
    sb = _Fake()
    with pytest.raises(SandboxError, match="exec needs a command"):
        sb.exec([], timeout=1)
    assert sb.exec(["true"], timeout=1).exit_code == 0
    sb.destroy()
    with pytest.raises(SandboxError, match="fake sandbox f is destroyed; create a new one"):
        sb.exec(["true"], timeout=1)


@pytest.mark.parametrize("exc", [SandboxError("mount failed"), KeyboardInterrupt()])
def test_failed_create_destroys_what_was_made(exc: BaseException) -> None:
    sb = _Fake()

    def start() -> None:
        raise exc

    with pytest.raises(type(exc)):
        started_or_cleaned(sb, start)
    assert sb.teardowns == 1


def test_failed_create_keeps_the_original_error_when_cleanup_fails_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sb = _Fake(["overlay /m"])

    def start() -> None:
        raise SandboxError("runc create failed")

    with pytest.raises(SandboxError, match="runc create failed"):
        started_or_cleaned(sb, start)
    assert "cleanup after failed create of f" in caplog.text and "overlay /m" in caplog.text


def test_successful_create_returns_the_sandbox() -> None:
    sb = _Fake()
    assert started_or_cleaned(sb, lambda: None) is sb
    assert sb.teardowns == 0


class _Failing(_Fake):
    def _exec(self, req: ExecRequest) -> ExecResult:
        return ExecResult(req.argv, 126, "", "exec /bin/true: no such file\n", 0, 0)


def test_ready_then_probe_times_ready_and_one_true() -> None:
    sb = _Fake()
    sb._ready_then_probe(timeout=5)
    assert [p.name for p in sb.phases] == ["ready", "exec"]
    assert (sb.workdir, sb.address) == ("/w", None)


def test_a_sandbox_that_cannot_run_true_says_so_with_its_stderr() -> None:
    with pytest.raises(
        SandboxError, match=r"fake sandbox f cannot run `true` \(exit 126\): exec /bin/true: no such"
    ):
        _Failing()._ready_then_probe(timeout=5)


def test_a_spec_resolves_its_volume_and_refuses_one_that_is_no_directory(tmp_path: Path) -> None:
    (tmp_path / "vol").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "vol")
    spec = SandboxSpec(name="f", run_id="r", volume=tmp_path / "link")
    assert spec.with_volume_resolved().volume == (tmp_path / "vol").resolve()
    bare = SandboxSpec(name="f", run_id="r")
    assert bare.with_volume_resolved() is bare
    with pytest.raises(UsageError, match=r"volume .*missing is not a directory; create it first"):
        SandboxSpec(name="f", run_id="r", volume=tmp_path / "missing").with_volume_resolved()
