"""A live run in one state dir, ``isobench gc --all`` from another: the live run's container (its
cgroups) survives, and gc names the run. Through the real host-wide registry, a real run lock and
a real container; marked integration (root).

This host is shared, so the gc runs with every driver replaced by a tripwire (a driver that cannot
spare live runs: gc must not sweep it while one lives) and a spy (one that can: it is handed the
live run to spare), so a regression fails this test instead of sweeping other people's resources.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from isobench.drivers.container import names
from isobench.liveruns import default_registry

pytestmark = pytest.mark.integration

LIVE_RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from isobench.drivers.base import DriverContext, SandboxSpec
    from isobench.drivers.container import ContainerDriver
    from isobench.runstate import RunLock
    state, run_id, image = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    with RunLock.acquire(state, run_id) as lock:
        drv = ContainerDriver(DriverContext(state_dir=state, work_dir=lock.work_dir, run_id=run_id))
        sb = drv.create(SandboxSpec(name="busy", run_id=run_id, image=image))
        try:
            print("ready", flush=True)
            sys.stdin.read()  # lives until the test closes its stdin
        finally:
            sb.destroy()
            drv.close()
    """
)

GC_WITH_TRIPWIRE = textwrap.dedent(
    """
    import sys
    import isobench.gc as gcmod
    class Tripwire:
        def __init__(self, ctx): pass
        def gc(self, run_id=None):
            if run_id is None:
                print("TRIPWIRE: the sweep ran", flush=True)
            return []
    class Spy:
        spares_live_runs = True
        def __init__(self, ctx): self.ctx = ctx
        def gc(self, run_id=None):
            if run_id is None:
                print("SPY spares", sorted(r.run_id for r in self.ctx.sparing.runs), flush=True)
                for run in self.ctx.sparing.runs:
                    self.ctx.sparing.spare(run, "spy thing")
            return []
    gcmod.all_drivers = lambda: {"tripwire": Tripwire, "spy": Spy}
    from isobench.cli import main
    sys.argv = ["isobench", "gc", "--all", "--state-dir", sys.argv[1]]
    main(prog_name="isobench")
    """
)


def cgroups_of(run_id: str) -> list[Path]:
    prefix = names.run_prefix(run_id)
    return [d for ctrl in Path("/sys/fs/cgroup").iterdir() if ctrl.is_dir() for d in ctrl.glob(f"{prefix}*")]


def test_gc_all_from_another_state_dir_leaves_a_live_run_alone(tmp_path: Path, rootfs: Path) -> None:
    run_id = f"t{os.getpid()}-{uuid.uuid4().hex[:6]}"
    live = subprocess.Popen(
        [sys.executable, "-c", LIVE_RUN, str(tmp_path / "state-a"), run_id, str(rootfs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert live.stdin is not None and live.stdout is not None
    try:
        assert live.stdout.readline().strip() == b"ready", live.stderr.read() if live.stderr else b""
        before = cgroups_of(run_id)
        assert before, "the live run's container has no cgroup"
        assert any(p.name.startswith(f"{run_id}.{live.pid}.") for p in default_registry().iterdir())
        gc = subprocess.run(
            [sys.executable, "-c", GC_WITH_TRIPWIRE, str(tmp_path / "state-b")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        text = gc.stdout + gc.stderr
        assert "TRIPWIRE" not in text and "tripwire: not swept" in " ".join(text.split())
        assert gc.returncode == 0, text
        assert run_id in text[text.index("SPY spares") :].splitlines()[0]
        assert f"spared 1 resource of live run {run_id} (pid {live.pid}): spy thing" in text
        assert f"run {run_id} (pid {live.pid}, state dir {tmp_path / 'state-a'})" in " ".join(text.split())
        assert cgroups_of(run_id) == before and all(p.is_dir() for p in before)
    finally:
        live.stdin.close()
        live.wait(timeout=60)
    assert live.returncode == 0
    assert cgroups_of(run_id) == []
    assert not any(p.name.startswith(f"{run_id}.") for p in default_registry().iterdir())
