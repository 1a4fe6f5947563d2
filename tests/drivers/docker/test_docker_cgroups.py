"""Where Docker leaves a run's cgroup parent, and that close/gc find it there (fake host, no root)."""

from __future__ import annotations

from pathlib import Path

from isobench.drivers.docker.parents import remove_cgroup_parent, removed_cgroups
from isobench.hostsys import HostProbe
from isobench.hostsys.fake import fake_host
from isobench.liveruns import LiveRun, Sparing


def _parents(tmp_path: Path) -> dict[str, Path]:
    host_root = tmp_path
    cg = host_root / "sys/fs/cgroup"
    # the runner sat in a memory cgroup of its own (as on this CI host, where each shell job has
    # one); Docker's cgroupfs driver puts a relative parent below the daemon's cgroup there, and at
    # the root elsewhere
    made = {
        "memory-r1": cg / "memory/process_api/abc/isobench-docker-r1",
        "cpu-r1": cg / "cpu/isobench-docker-r1",
        "memory-r2": cg / "memory/process_api/abc/isobench-docker-r2",
        "not-ours": cg / "memory/process_api/abc/other",
    }
    for path in made.values():
        path.mkdir(parents=True)
    (made["memory-r1"] / "0123abcd").mkdir()  # a container cgroup Docker left under the parent
    return made


def _host(tmp_path: Path) -> HostProbe:
    return fake_host(tmp_path, "hybrid")


def test_a_runs_cgroup_parent_is_removed_below_the_runners_own_cgroup_too(tmp_path: Path) -> None:
    host = _host(tmp_path)
    made = _parents(tmp_path)
    assert remove_cgroup_parent(host, "r1") == []
    assert not made["memory-r1"].exists() and not made["cpu-r1"].exists()
    assert made["memory-r2"].exists() and made["not-ours"].exists()


def test_gc_of_every_run_takes_only_docker_parents(tmp_path: Path) -> None:
    host = _host(tmp_path)
    made = _parents(tmp_path)
    removed, left = removed_cgroups(host, None)
    assert left == []
    assert len(removed) == 3 and all(r.startswith("cgroup ") for r in removed)
    assert [p for p in made.values() if p.exists()] == [made["not-ours"]]


def test_a_sweep_spares_live_runs_and_containers_it_cannot_attribute(tmp_path: Path) -> None:
    host = _host(tmp_path)
    made = _parents(tmp_path)
    busy = tmp_path / "sys/fs/cgroup/cpu/isobench-docker-r3"
    (busy / "c0ffee").mkdir(parents=True)
    (busy / "c0ffee" / "cgroup.procs").write_text("4242\n")  # a container of a daemon nobody stopped
    sparing = Sparing((LiveRun("r2", 77, "1", "/state"),))
    removed, left = removed_cgroups(host, None, sparing)
    assert left == [] and sorted(removed) == sorted(f"cgroup {made[k]}" for k in ("memory-r1", "cpu-r1"))
    assert made["memory-r2"].exists() and busy.exists()
    assert sparing.spared_lines() == [
        f"spared 1 resource of live run r2 (pid 77): cgroup {made['memory-r2']}"
    ]
    assert sparing.kept_lines() == [
        f"cgroup {busy} (kept: its containers run, under a daemon of no dead run)"
    ]
