"""isobench.testing: the scripted sandbox and driver honour the protocols they stand in for."""

from __future__ import annotations

import pytest
from isobench.drivers.base import Accel, Driver, ExecResult, Sandbox, SandboxSpec, SandboxStats
from isobench.drivers.host import HostDriver
from isobench.drivers.qemu import QemuDriver
from isobench.errors import SandboxError
from isobench.testing import FakeDriver, FakeSandbox, Reply, UnscriptedExec, in_turn, workload_context


def test_first_matching_rule_answers_and_every_call_is_recorded() -> None:
    sb = FakeSandbox(script=[(r"^echo hi$", "hi\n"), (r"^echo", Reply(stdout="other\n", exit_code=3))])
    assert sb.exec(["echo", "hi"], timeout=5).stdout == "hi\n"
    other = sb.exec(["echo", "x"], timeout=7, env={"A": "1"}, stdin=b"in")
    assert (other.argv, other.exit_code, other.stdout, other.ok) == (("echo", "x"), 3, "other\n", False)
    assert sb.commands() == ["echo hi", "echo x"]
    assert (sb.calls[1].timeout, sb.calls[1].env, sb.calls[1].stdin) == (7, {"A": "1"}, b"in")


def test_a_callable_sees_the_argv_and_may_raise() -> None:
    def answer(argv: tuple[str, ...]) -> Reply:
        if argv[-1] == "boom":
            raise SandboxError("cannot start")
        return Reply(stdout=argv[-1])

    sb = FakeSandbox().on("^say ", answer)
    assert sb.exec(["say", "x"], timeout=1).stdout == "x"
    with pytest.raises(SandboxError, match="cannot start"):
        sb.exec(["say", "boom"], timeout=1)


def test_an_exec_result_is_returned_as_given() -> None:
    given = ExecResult(("t",), 0, "o", "e", 10, 20)
    assert FakeSandbox().on("^t$", given).exec(["t"], timeout=1) is given


def test_in_turn_answers_in_order_and_repeats_the_last() -> None:
    sb = FakeSandbox().on("^try$", in_turn(Reply(exit_code=1), "ok"))
    assert [sb.exec(["try"], timeout=1).stdout for _ in range(3)] == ["", "ok", "ok"]


def test_an_unscripted_command_fails_the_test() -> None:
    with pytest.raises(UnscriptedExec, match=r"no rule for 'rm -rf /'.*'\^true\$'"):
        FakeSandbox().on("^true$", "").exec(["rm", "-rf", "/"], timeout=1)


def test_sandbox_rules_of_the_base_class_hold() -> None:
    sb = FakeSandbox(SandboxSpec(name="s", run_id="r", network=True), stats=SandboxStats(memory_bytes=1.0))
    assert isinstance(sb, Sandbox)
    assert sb.address == "10.0.0.2" and sb.stats().memory_bytes == 1.0
    with pytest.raises(SandboxError, match="exec needs a command"):
        sb.exec([], timeout=1)
    sb.destroy()
    sb.destroy()
    assert [p.name for p in sb.phases] == ["create", "ready", "destroy"]
    with pytest.raises(SandboxError, match="fake sandbox s is destroyed"):
        sb.exec(["true"], timeout=1)


def test_execs_run_after_ready() -> None:
    sb = FakeSandbox().on("^true$", Reply(seconds=0.5))
    res = sb.exec(["true"], timeout=1)
    ready = next(p for p in sb.phases if p.name == "ready")
    assert ready.end_ns <= res.start_ns and res.end_ns - res.start_ns >= 500_000_000


def test_driver_like_a_real_one_shares_script_and_log_between_its_sandboxes() -> None:
    driver = FakeDriver.like(HostDriver, script=[("^a$", "1")])
    driver_type: type[Driver] = type(driver)  # it is a Driver by the protocol's class attributes
    assert (driver_type.name, driver_type.capabilities) == ("host", HostDriver.capabilities)
    ctx = workload_context(driver)
    with ctx.sandbox() as one, ctx.sandbox(vcpus=2) as two:
        driver.on("^b$", "2")  # reaches sandboxes already made
        assert one.exec(["a"], timeout=1).stdout == "1" and two.exec(["b"], timeout=1).stdout == "2"
    assert [sb.spec.vcpus for sb in driver.sandboxes] == [1, 2]
    assert all(sb.destroyed for sb in driver.sandboxes)
    assert driver.commands() == ["a", "b"]
    driver.close()
    one_name, two_name = (sb.name for sb in driver.sandboxes)
    assert driver.events == [
        f"create {one_name}",
        f"create {two_name}",
        f"destroy {two_name}",
        f"destroy {one_name}",
        "close host",
    ]


def test_probed_capabilities_of_a_fake_guest_name_its_accel() -> None:
    assert FakeDriver.like(QemuDriver).capabilities.accel is Accel.PENDING
    assert FakeDriver.like(QemuDriver, accel="kvm").probed_capabilities().accel is Accel.KVM
    assert FakeDriver.like(HostDriver).probed_capabilities().accel is None
    assert FakeDriver().probed_capabilities() == FakeDriver.capabilities
