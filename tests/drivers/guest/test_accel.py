"""The accel decision: the cached probe (fake /dev/kvm and boots), and the real probe boot's
reading of qemu through fake qemu binaries (shell scripts), so no KVM or root is needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from isobench.drivers.guest import accel
from isobench.drivers.guest.accel import AccelChoice, AccelProbe, choose_accel, probe_accel, qemu_probe_boot
from isobench.drivers.guest.probecache import TIMEOUT_TTL_S, Outcome
from isobench.errors import DriverUnavailable
from isobench.hostsys import HostProbe


def _fake_kvm(tmp_path: Path) -> HostProbe:
    """A host whose /dev/kvm exists (and opens: a plain file here)."""
    (tmp_path / "dev").mkdir(exist_ok=True)
    (tmp_path / "dev/kvm").write_text("")
    return HostProbe(root=tmp_path)


def test_accel_kvm_works(tmp_path: Path) -> None:
    res = probe_accel(tmp_path, host=_fake_kvm(tmp_path), boot=lambda *_: ("ok", "banner"))
    assert (res.usable, res.accel) == (True, "kvm")
    again = probe_accel(
        tmp_path,
        host=_fake_kvm(tmp_path),
        boot=lambda *_: pytest.fail("cached result must not boot again"),
    )
    assert again.cached and again.accel == "kvm"


def test_accel_kvm_missing(tmp_path: Path) -> None:
    res = probe_accel(
        tmp_path, host=HostProbe(root=tmp_path), boot=lambda *_: pytest.fail("no probe without /dev/kvm")
    )
    assert (res.usable, res.accel) == (False, "tcg")
    assert "missing" in res.reason


def test_accel_probe_fails_on_kvm_pvm(tmp_path: Path) -> None:
    (tmp_path / "sys/module/kvm_pvm").mkdir(parents=True)
    res = probe_accel(
        tmp_path,
        host=_fake_kvm(tmp_path),
        boot=lambda *_: ("failed", "KVM internal error: emulation failure"),
    )
    assert (res.usable, res.accel) == (False, "tcg")
    assert res.reason.startswith("kvm-pvm:") and "emulation failure" in res.reason
    # qemu said why: a verdict, kept, and doctor says how old it is and how to ask again
    again = probe_accel(
        tmp_path,
        host=_fake_kvm(tmp_path),
        boot=lambda *_: pytest.fail("a genuine failure is cached"),
    )
    assert (again.usable, again.cached, again.outcome) == (False, True, "failed")
    assert "kept as a verdict" in again.described() and again.described().startswith(res.reason)


def _cache_file(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "guest").glob("accel-*.json")
    return found


def test_a_timed_out_kvm_probe_is_no_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Silence until the deadline (a loaded host) decides this run, and later runs probe again."""
    boots: list[str] = []

    def slow(_deadline: float) -> tuple[Outcome, str]:
        boots.append("timeout")
        return "timeout", "no kernel output within 10s"

    kvm = _fake_kvm(tmp_path)
    first = probe_accel(tmp_path, host=kvm, boot=slow)
    assert (first.usable, first.outcome) == (False, "timeout")
    assert "a timeout is no verdict" in first.described()
    # the runs right after reuse it (no probe storm on a loaded host), and say when it expires
    soon = probe_accel(tmp_path, host=kvm, boot=lambda *_: pytest.fail("within TTL"))
    assert soon.cached and soon.outcome == "timeout" and "probed again after" in soon.described()
    # once it has expired, the next run probes again, and a real answer replaces it
    t0 = first.checked_at
    monkeypatch.setattr("time.time", lambda: t0 + TIMEOUT_TTL_S + 1)
    later = probe_accel(tmp_path, host=kvm, boot=lambda *_: ("ok", "banner"))
    assert (later.usable, later.cached, later.outcome) == (True, False, "ok") and boots == ["timeout"]


def test_an_accel_cache_of_the_old_format_is_probed_again(tmp_path: Path) -> None:
    """Old entries cannot tell a timeout from a failure (this host had cached one such timeout)."""
    kvm = _fake_kvm(tmp_path)
    probe_accel(tmp_path, host=kvm, boot=lambda *_: ("ok", "banner"))
    _cache_file(tmp_path).write_text(
        '{"usable": false, "accel": "tcg", "reason": "kvm-pvm: KVM probe boot failed: no kernel'
        ' output within 10s", "cached": false, "checked_at": 1796036481.49}'
    )
    res = probe_accel(tmp_path, host=kvm, boot=lambda *_: ("ok", "banner"))
    assert (res.usable, res.cached) == (True, False)


def test_tcg_asked_for_runs_no_probe() -> None:
    assert choose_accel("vm", "tcg", lambda: pytest.fail("accel=tcg must not probe")) == ("tcg", None)


def test_auto_falls_back_to_tcg_and_kvm_asked_for_is_refused() -> None:
    bad = AccelProbe(False, "tcg", "kvm-pvm: emulation failure")
    assert choose_accel("qemu", "auto", lambda: bad) == ("tcg", bad)
    with pytest.raises(DriverUnavailable, match=r"KVM was requested but is unusable here: kvm-pvm"):
        choose_accel("qemu", "kvm", lambda: bad)
    good = AccelProbe(True, "kvm", "a KVM probe guest booted")
    assert choose_accel("vm", "kvm", lambda: good) == ("kvm", good)


# -- the probe boot itself, against fake qemu binaries ---------------------------------------
def _fake_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    """A 'qemu' that records its pid and argv, then runs ``body`` in the probe's directory."""
    script = tmp_path / "fake-qemu"
    script.write_text(f'#!/bin/sh\necho $$ > "$PROBE_PID"\necho "$@" > "$PROBE_ARGV"\n{body}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PROBE_PID", str(tmp_path / "pid"))
    monkeypatch.setenv("PROBE_ARGV", str(tmp_path / "argv"))
    return str(script)


def _gone(tmp_path: Path) -> bool:
    pid = int((tmp_path / "pid").read_text())
    return not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _boot(tmp_path: Path, binary: str, deadline: float = 10) -> tuple[Outcome, str]:
    return qemu_probe_boot(deadline, binary=binary, kernel=tmp_path / "vmlinuz")


def test_probe_boot_sees_the_kernel_banner_and_kills_the_guest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qemu = _fake_qemu(tmp_path, monkeypatch, "echo 'Linux version 6.1.0-cloud' > console.log\nexec sleep 60")
    assert _boot(tmp_path, qemu) == ("ok", "kernel banner seen")
    assert _gone(tmp_path)
    argv = (tmp_path / "argv").read_text().split()
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-cpu") + 1] == "host,-arch-capabilities"
    assert argv[argv.index("-kernel") + 1] == str(tmp_path / "vmlinuz")


@pytest.mark.parametrize("pause", ["", "sleep 0.2\n"], ids=["at-once", "line-by-line"])
def test_probe_boot_reads_kvm_pvm_emulation_failure_while_qemu_stays_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pause: str
) -> None:
    # qemu pauses the guest on a KVM internal error and keeps running: the log is the answer.
    # The probe's read can fall between qemu's lines (CI once saw "Suberror: 1" alone): the
    # verdict must not depend on where it fell.
    error = "echo 'KVM internal error. Suberror: 1' >&2\n"
    if pause:  # the grace only bounds the wait: a loaded host may put the second line late
        monkeypatch.setattr(accel, "ERROR_GRACE_S", 5.0)
    qemu = _fake_qemu(tmp_path, monkeypatch, f"{error}{pause}echo 'emulation failure' >&2\nexec sleep 60")
    assert _boot(tmp_path, qemu) == ("failed", "KVM internal error: emulation failure")
    assert _gone(tmp_path)
    # another suberror, with no "emulation failure" after it, is reported as qemu said it
    monkeypatch.setattr(accel, "ERROR_GRACE_S", 0.5)
    other = _fake_qemu(tmp_path, monkeypatch, error.replace("1", "3") + "exec sleep 60")
    assert _boot(tmp_path, other) == ("failed", "KVM internal error. Suberror: 3")
    assert _gone(tmp_path)


def test_probe_boot_when_qemu_exits_or_stays_silent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    qemu = _fake_qemu(tmp_path, monkeypatch, "echo 'Could not access KVM kernel module' >&2\nexit 1")
    outcome, why = _boot(tmp_path, qemu)
    assert outcome == "failed" and why.startswith("qemu exited with 1") and "Could not access KVM" in why
    silent = _fake_qemu(tmp_path, monkeypatch, "exec sleep 60")
    assert _boot(tmp_path, silent, deadline=0.3) == ("timeout", "no kernel output within 0.3s")
    assert _gone(tmp_path)
    outcome, why = _boot(tmp_path, str(tmp_path / "no-such-qemu"))
    assert outcome == "failed" and "cannot run" in why


def test_probe_accel_boots_qemu_directly_and_caches_per_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qemu = _fake_qemu(tmp_path, monkeypatch, "echo 'Linux version 6.1' > console.log\nexec sleep 60")
    monkeypatch.setattr(
        "isobench.drivers.guest.accel.qemu_probe_boot", lambda d, binary: _boot(tmp_path, binary, d)
    )
    res = probe_accel(tmp_path / "state", binary=qemu, host=_fake_kvm(tmp_path))
    assert (res.usable, res.accel, res.cached) == (True, "kvm", False)
    cached = list((tmp_path / "state" / "guest").glob("accel-*.json"))
    assert len(cached) == 1


def test_accel_choice_probes_once_and_reports_what_it_decided_by() -> None:
    calls: list[int] = []

    def probe() -> AccelProbe:
        calls.append(1)
        return AccelProbe(False, "tcg", "kvm-pvm: no kernel output within 10s")

    choice = AccelChoice("qemu", "auto", probe)
    assert choice() == "tcg" and choice() == "tcg" and len(calls) == 1
    assert choice.details() == {
        "accel": "tcg",
        "kvm_usable": False,
        "kvm_probe": "kvm-pvm: no kernel output within 10s",
        "kvm_reason": "kvm-pvm: no kernel output within 10s",
    }
    assert choice.metadata() == {
        "isolation": "vm",
        "accel": "tcg",
        "accel_reason": "kvm-pvm: no kernel output within 10s",
    }
    forced = AccelChoice("vm", "tcg", lambda: pytest.fail("accel=tcg must not probe"))
    assert forced.details() == {"accel": "tcg"} and forced.metadata() == {"isolation": "vm", "accel": "tcg"}
