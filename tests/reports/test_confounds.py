"""What else differs between a comparison's sides: settings, host software, accelerator."""

from __future__ import annotations

import copy
from typing import Any

from isobench.reports.confounds import confounds
from isobench.results import Results

#: A run record as `isobench run` writes it (the parts confounds reads), from a real run here.
RUN: dict[str, Any] = {
    "run_id": "base",
    "config": {"vcpus": 1, "memory_mib": 512, "cpuset": None, "driver_options": {}},
    "host": {
        "hostname": "vm",
        "kernel": "6.18.44-fc-v657",
        "cpu_model": "AMD EPYC",
        "cpus": 2,
        "memory_bytes": 25276510208,
        "cgroup_mode": "hybrid",
        "cpu_governor": None,
        "isobench_commit": "d2903788",
        "versions": {"qemu": "QEMU emulator version 7.2.22", "fio": "fio-3.33"},
    },
    "drivers": {"host": {"isolation": "none"}, "vm": {"accel": "tcg"}, "qemu": {"accel": "tcg"}},
}


def _run(run_id: str, **changes: Any) -> Results:
    run = copy.deepcopy(RUN) | {"run_id": run_id}
    for path, value in changes.items():
        *parents, key = path.split("__")
        doc = run
        for p in parents:
            doc = doc.setdefault(p, {})
        doc[key] = value
    return Results(run=run, samples=[])


def test_runs_that_differ_only_in_the_code_have_no_confound() -> None:
    assert confounds([_run("a")], [_run("b", host__isobench_commit="0123abcd")]) == []


def test_sandbox_settings_and_driver_options_are_named() -> None:
    base = [_run("a")]
    cur = [_run("b", config__memory_mib=1024, config__driver_options={"container": {"hardening": False}})]
    (line,) = confounds(base, cur)
    assert line == (
        "the sides ran under different settings (memory_mib 512 vs 1024; drivers.container.hardening "
        "default vs false): a change may be the setting's, not the code's"
    )


def test_host_software_and_hardware_are_named() -> None:
    cur = [
        _run(
            "b",
            host__kernel="6.19.0",
            host__versions__qemu="QEMU emulator version 8.0.0",
            host__memory_bytes=2**34,
        )
    ]
    (line,) = confounds([_run("a")], cur)
    assert line == (
        "the host differs between the sides (kernel 6.18.44-fc-v657 vs 6.19.0; memory 23.5 GiB vs "
        "16.0 GiB; qemu QEMU emulator version 7.2.22 vs QEMU emulator version 8.0.0): a change may be the "
        "host's, not the code's"
    )


def test_guests_on_another_accelerator_are_named_per_driver() -> None:
    (line,) = confounds([_run("a")], [_run("b", drivers__vm__accel="kvm")])
    assert line.startswith("the guests' accelerator differs between the sides (vm tcg vs kvm): ")


def test_several_runs_a_side_compare_as_sets_and_unrecorded_facts_are_no_difference() -> None:
    # the baseline's two runs straddle an upgrade: the sides differ as sets of kernels
    base = [_run("a1"), _run("a2", host__kernel="6.19.0")]
    assert confounds(base, [_run("b", host__kernel="6.19.0")]) == [
        "the host differs between the sides (kernel 6.18.44-fc-v657/6.19.0 vs 6.19.0): a change may "
        "be the host's, not the code's"
    ]
    # a run written before a fact was recorded (no host record at all) is not a difference
    old = Results(run={"run_id": "old", "config": RUN["config"]}, samples=[])
    assert confounds([old], [_run("b")]) == []


def _fleet(run_id: str, kernels: dict[str, str], client_kernel: str = "6.1") -> Results:
    """A fleet run's record: the client's machine in ``host``, each measuring host under ``cluster``."""
    hosts = {
        name: {"name": name, "info": {**RUN["host"], "hostname": name.split("@")[-1], "kernel": kernel}}
        for name, kernel in kernels.items()
    }
    run = copy.deepcopy(RUN) | {
        "run_id": run_id,
        "cluster": {"scheduler": "tcp://127.0.0.1:8786", "hosts": hosts},
    }
    run["host"] = {**RUN["host"], "kernel": client_kernel}
    return Results(run=run, samples=[])


def test_a_fleet_compares_each_measuring_host_not_the_client() -> None:
    base = _fleet("a", {"w1@h1": "6.18", "w2@h2": "6.18"})
    cur = _fleet("b", {"w1@h1": "6.18", "w2@h2": "6.19"}, client_kernel="6.2")  # the client upgraded too
    assert confounds([base], [cur]) == [
        "the host differs between the sides (w2@h2: kernel 6.18 vs 6.19): a change may be the host's, "
        "not the code's"
    ]
    # a fleet against a local run: the hostnames differ, which compare says on its own
    assert confounds([base], [_run("local", host__kernel="6.19")]) == []
