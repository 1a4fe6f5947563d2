"""Container cold start: isobench's own runtime vs ``runc run`` vs the ``unshare`` + ``chroot`` floor
(and, through the Driver protocol, vs the runc, docker and bwrap drivers).

Every contender starts ``/bin/true`` in the same busybox root filesystem and is timed the same way:
``time.perf_counter()`` around the whole call, from the caller's call until everything the start
made is gone again (teardown included: the container driver's ``run_cold`` returns after its
``destroy`` phase, ``runc run`` after deleting its container, ``unshare`` after its namespaces die). Rounds interleave all contenders in shuffled order,
in one process, so machine drift hits them alike. Also reported: the cost of each namespace (the
default set minus one), of the cgroup, of hardening, of a cold run's upper layer on disk instead
of in memory, and the median of every phase.

    .venv/bin/python benchmarks/container_start.py [--rounds 40] [--rootfs DIR] [--json FILE]

Targets (issue 18, with the runtime hardening on): container <= 0.20 x runc and <= 1.3 x floor with
pid+mount+uts+ipc+net namespaces, a cgroup and an overlay root, all timed end to end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from isobench.drivers.base import Driver, DriverContext, SandboxSpec
from isobench.drivers.bwrap import BwrapDriver
from isobench.drivers.container import ContainerDriver
from isobench.drivers.docker import DockerDriver
from isobench.drivers.runc import RuncDriver
from isobench.images.busybox import build_busybox_rootfs
from isobench.stats import ratio_ci, summarize

TARGET_VS_RUNC = 0.20
TARGET_VS_FLOOR = 1.3
FULL_NS = ["pid", "mount", "uts", "ipc", "net", "cgroup"]
#: The configuration the targets are stated for.
TARGET_NS = ["pid", "mount", "uts", "ipc", "net"]


def runc_bundle(bundle: Path, rootfs: Path) -> None:
    bundle.mkdir(parents=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    cfg_path = bundle / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["root"] = {"path": str(rootfs), "readonly": True}
    cfg["process"]["args"] = ["/bin/true"]
    cfg["process"]["terminal"] = False
    cfg_path.write_text(json.dumps(cfg))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--rootfs", type=Path, help="root filesystem to use (default: a fresh busybox one)")
    ap.add_argument("--no-variants", action="store_true", help="skip the per-namespace/cgroup variants")
    ap.add_argument(
        "--no-protocol",
        action="store_true",
        help="skip the Driver-protocol peers (runc, docker, bwrap drivers)",
    )
    ap.add_argument("--json", type=Path, help="also write every sample here")
    ap.add_argument(
        "--no-pandas", action="store_true", help="do not load pandas first (the runner has it loaded)"
    )
    args = ap.parse_args()
    if not args.no_pandas:
        # A runner process is big; spawning must not get slower with it (no fork of this process).
        import pandas  # noqa: F401
    if os.geteuid() != 0:
        print("run as root (namespaces, cgroups, mounts)", file=sys.stderr)
        return 2
    have_runc = shutil.which("runc") is not None
    run_id = f"bench{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix=f"isobench-{run_id}-"))
    shm_work = Path(tempfile.mkdtemp(prefix=f"isobench-{run_id}-", dir="/dev/shm"))
    try:
        rootfs = args.rootfs or build_busybox_rootfs(tmp / "rootfs")
        driver_state = Path(os.environ.get("ISOBENCH_STATE", "/var/lib/isobench"))
        driver = ContainerDriver(DriverContext(state_dir=driver_state, work_dir=tmp / "work", run_id=run_id))
        driver.helper()  # compile outside the timed region
        runc_root = tmp / "runc-state"
        if have_runc:
            runc_bundle(tmp / "bundle", rootfs)
        samples: dict[str, list[float]] = defaultdict(list)
        phases: dict[str, list[float]] = defaultdict(list)
        clone_s: dict[str, list[float]] = defaultdict(list)  # the clone() syscall alone, per variant
        # CPU of this process and its children per start (getrusage): far steadier than wall time
        # on a loaded host; the kernel's deferred work (namespace and cgroup teardown) is not in it.
        cpu_s: dict[str, list[float]] = defaultdict(list)
        counter = iter(range(10**9))

        # The container's directory on tmpfs instead of this host's disk: what its journal updates
        # (its mkdir and rmdir; a cold run's upper and work dirs are in memory already) cost in a
        # start. Not a configuration the driver uses; a measurement.
        shm_driver = ContainerDriver(DriverContext(state_dir=driver_state, work_dir=shm_work, run_id=run_id))

        def ours(
            name: str, options: Mapping[str, Any], keep_phases: bool = False, drv: ContainerDriver = driver
        ) -> Callable[[], None]:
            def go() -> None:
                spec = SandboxSpec(name=f"b{next(counter)}", run_id=run_id, image=rootfs, options=options)
                c = cpu_now()
                t = time.perf_counter()
                run = drv.run_cold(spec, ["/bin/true"])
                took = time.perf_counter() - t
                cpu_s[name].append(cpu_now() - c)
                if run.result.exit_code != 0:
                    raise SystemExit(f"{name}: /bin/true failed: {run.result.stderr}")
                # End to end like the external contenders: run_cold returns after teardown.
                samples[name].append(took)
                clone = run.phase("clone")
                if clone is not None:
                    clone_s[name].append(clone.seconds)
                if keep_phases:
                    for p in run.phases:
                        phases[p.name].append(p.seconds)

            return go

        def external(name: str, argv_fn: Callable[[], list[str]]) -> Callable[[], None]:
            def go() -> None:
                argv = argv_fn()
                c = cpu_now()
                t = time.perf_counter()
                subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)
                samples[name].append(time.perf_counter() - t)
                cpu_s[name].append(cpu_now() - c)

            return go

        contenders: dict[str, Callable[[], None]] = {
            "container (target ns, hardening)": ours("container", {"namespaces": TARGET_NS}, True),
            "floor: unshare -pfmuin chroot": external(
                "floor", lambda: ["unshare", "-pfmuin", "--fork", "chroot", str(rootfs), "/bin/true"]
            ),
            # The floor plus the same work, without hardening: the target namespaces, a cgroup
            # with limits, the overlay root with /proc, /sys, /dev and pivot_root. What the
            # container costs beyond it is what hardening costs; what it costs beyond the floor,
            # the work the floor does not do.
            "floor + same work: target, no hardening": ours(
                "floor+work", {"namespaces": TARGET_NS, "hardening": False}
            ),
            "floor + mounts: target, no cgroup, no hardening": ours(
                "floor+mounts", {"namespaces": TARGET_NS, "hardening": False, "cgroup": False}
            ),
        }
        if have_runc:
            contenders["runc run"] = external(
                "runc",
                lambda: [
                    "runc",
                    "--root",
                    str(runc_root),
                    "run",
                    "--bundle",
                    str(tmp / "bundle"),
                    f"isobench-{run_id}-runc-{next(counter)}",
                ],
            )
        if not args.no_variants:
            contenders["variant: all 6 ns (default)"] = ours("all6", {"namespaces": FULL_NS})
            for ns in ("pid", "uts", "ipc", "net", "cgroup"):
                rest = [n for n in FULL_NS if n != ns]
                contenders[f"variant: default minus {ns}"] = ours(f"minus-{ns}", {"namespaces": rest})
            contenders["variant: default plus user"] = ours("plus-user", {"namespaces": [*FULL_NS, "user"]})
            contenders["variant: rootless (subids)"] = ours(
                "rootless", {"namespaces": FULL_NS, "rootless": True, "subids": "100000:65536"}
            )
            contenders["variant: mount ns only"] = ours("mount-only", {"namespaces": ["mount"]})
            contenders["variant: default, no cgroup"] = ours(
                "no-cgroup", {"namespaces": FULL_NS, "cgroup": False}
            )
            contenders["variant: default, no hardening"] = ours(
                "no-hardening", {"namespaces": FULL_NS, "hardening": False}
            )
            contenders["variant: target, container dir on tmpfs"] = ours(
                "dirs-on-tmpfs", {"namespaces": TARGET_NS}, drv=shm_driver
            )
            # What the cold run's in-memory upper layer saves: the same start with it on this
            # host's disk (overlayfs volatile), as before.
            contenders["variant: target, cold upper on disk"] = ours(
                "upper-on-disk", {"namespaces": TARGET_NS, "cold_upper": "disk"}
            )
            # What making the record and cgroup while the helper starts saves: the same start with
            # both made before it (the order before issue 18's last step).
            serial_driver = ContainerDriver(
                DriverContext(state_dir=driver_state, work_dir=tmp / "work-serial", run_id=run_id),
                overlap=False,
            )
            contenders["variant: target, record and cgroup before the helper starts"] = ours(
                "serial-setup", {"namespaces": TARGET_NS}, drv=serial_driver
            )
            glibc = glibc_helper(driver_state)
            if glibc is not None:
                # What building the helper with musl saves: the same source built with glibc.
                glibc_driver = ContainerDriver(
                    DriverContext(state_dir=driver_state, work_dir=tmp / "work-glibc", run_id=run_id),
                    helper=glibc,
                )
                contenders["variant: target, helper built with glibc"] = ours(
                    "glibc-helper", {"namespaces": TARGET_NS}, drv=glibc_driver
                )
        # The same start through the Driver protocol (create -> exec /bin/true -> destroy), where the
        # peers are the runc, docker and bwrap drivers: what a user of `isobench run` gets from each
        # (docker: the daemon path, dockerd -> containerd -> shim -> runc, removal included).
        peers: dict[str, Driver] = {"proto-container": driver}
        peer_types: tuple[tuple[str, Callable[[DriverContext], Driver]], ...] = (
            ("proto-runc", RuncDriver),
            ("proto-docker", DockerDriver),
            ("proto-bwrap", BwrapDriver),
        )
        for name, cls in () if args.no_protocol else peer_types:
            peer = cls(DriverContext(state_dir=driver_state, work_dir=tmp / name, run_id=run_id))
            if peer.availability().ok:
                peer.metadata()  # a private dockerd starts (and the image is imported) untimed
                peers[name] = peer

        def proto(name: str, drv: Driver) -> Callable[[], None]:
            def go() -> None:
                t = time.perf_counter()
                sb = drv.create(SandboxSpec(name=f"p{next(counter)}", run_id=run_id, image=rootfs))
                try:
                    if not sb.exec(["/bin/true"], timeout=30).ok:
                        raise SystemExit(f"{name}: /bin/true failed")
                finally:
                    sb.destroy()
                samples[name].append(time.perf_counter() - t)

            return go

        for name, drv in peers.items():
            contenders[f"protocol: {name.removeprefix('proto-')}"] = proto(name, drv)
        resident = driver.create(SandboxSpec(name="resident", run_id=run_id, image=rootfs))

        def exec_into() -> None:
            t = time.perf_counter()
            if not resident.exec(["/bin/true"], timeout=30).ok:
                raise SystemExit("exec of /bin/true failed")
            samples["exec-into"].append(time.perf_counter() - t)

        contenders["exec into a running container"] = exec_into
        try:
            for go in contenders.values():  # warm-up round: page cache, helper binary, runc binary
                go()
            samples.clear()
            phases.clear()
            clone_s.clear()
            cpu_s.clear()
            order = list(contenders.values())
            for _ in range(args.rounds):
                random.shuffle(order)
                for go in order:
                    go()
        finally:
            resident.destroy()
            for drv in peers.values():
                drv.close()
        leftovers = [x for drv in peers.values() for x in drv.gc(run_id)]
        verdicts = report(samples, phases, clone_s, have_runc, args.rounds)
        report_cpu(cpu_s)
        if not args.no_variants:
            helper_image_costs(driver)
        if leftovers:
            print(f"\nWARNING: gc removed leftovers: {leftovers}")
        # Again last: the ratios are what gets quoted, and the tables above push them off a screen.
        print("\ntargets (as above)")
        print("\n".join(verdicts))
        if args.json:
            args.json.write_text(
                json.dumps({"samples": samples, "phases": phases, "clone": clone_s}, indent=1)
            )
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(shm_work, ignore_errors=True)


def glibc_helper(state_dir: Path) -> Path | None:
    """The helper's source built static with glibc, where the driver builds it with musl (else None:
    the driver's own build is that already)."""
    # Imported here: the rest of this script also runs on the code before the musl build.
    from isobench.drivers.container.helper import HELPER
    from isobench.hostsys.cbuild import ensure_built

    if not HELPER.prefer_musl or HELPER.builds()[0] == (False, True):
        return None
    return ensure_built(dataclasses.replace(HELPER, prefer_musl=False, static_only=True), state_dir)


def helper_image_costs(driver: ContainerDriver, n: int = 60) -> None:
    """What running every helper from a sealed memfd costs: an exec from the memfd against one from
    the file (the helper's usage error: exec, parse, exit), and the copy runc makes per start
    (memfd_create + write + seal of the binary), which this driver makes once per driver."""
    # Imported here: the rest of this script also runs on the code before the sealed helper.
    from isobench.drivers.container.helper import ARGV0, seal_helper

    image = driver.helper_image()
    path = str(image.path)
    times: dict[str, list[float]] = defaultdict(list)

    def spawn(name: str, executable: str, fds: tuple[int, ...]) -> None:
        t = time.perf_counter()
        subprocess.run([ARGV0], executable=executable, pass_fds=fds, capture_output=True, check=False)
        times[name].append(time.perf_counter() - t)

    for _ in range(n):
        spawn("exec from file", path, ())
        spawn("exec from memfd", image.executable, (image.fd,))
        t = time.perf_counter()
        os.close(seal_helper(image.path).fd)
        times["copy+seal per start"].append(time.perf_counter() - t)
    size = image.path.stat().st_size / 2**20
    print(f"\nthe sealed helper image ({size:.1f} MiB), medians of {n}")
    for name, vals in times.items():
        print(f"  {name:22s} {summarize(vals).median * 1e3:8.3f} ms")


def cpu_now() -> float:
    """CPU seconds of this process and of its reaped children (and theirs), user and system."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def report_cpu(cpu_s: Mapping[str, list[float]]) -> None:
    print("\nCPU per start (this process and its children, mean): the work itself, without the waiting")
    for name, vals in sorted(cpu_s.items(), key=lambda kv: sum(kv[1]) / len(kv[1])):
        print(f"  {name:16s} {sum(vals) / len(vals) * 1e3:8.2f} ms")


def report(
    samples: Mapping[str, list[float]],
    phases: Mapping[str, list[float]],
    clone_s: Mapping[str, list[float]],
    have_runc: bool,
    rounds: int,
) -> list[str]:
    """Print the tables; return the target verdict lines."""

    def ms(x: float) -> str:
        return f"{x * 1e3:8.2f} ms"

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"cold start of /bin/true, {rounds} interleaved rounds, medians [95% CI]; load average {load}")
    for name, vals in samples.items():
        s = summarize(vals)
        print(
            f"  {name:16s} {ms(s.median)}  [{s.ci_low * 1e3:.2f}, {s.ci_high * 1e3:.2f}]  "
            f"min {s.min * 1e3:.2f}  cov {s.cov:.2f}"
        )
    ours = samples["container"]
    print("\nratios of medians (bootstrap 95% CI)")
    verdicts: list[str] = []
    checks = [("floor", TARGET_VS_FLOOR)] + ([("runc", TARGET_VS_RUNC)] if have_runc else [])
    for other, target in checks:
        r = ratio_ci(ours, samples[other])
        verdict = "MEETS" if r.value <= target else "MISSES"
        verdicts.append(
            f"  container / {other:5s} = {r.value:5.2f}  [{r.ci_low:.2f}, {r.ci_high:.2f}]  "
            f"target <= {target}: {verdict}"
        )
        print(verdicts[-1])
    print("\nwhere the difference to the floor is, ratios of medians")
    for a, b, what in (
        ("floor+mounts", "floor", "namespaces' mounts, overlay root, pivot_root, the driver"),
        ("floor+work", "floor+mounts", "the cgroup (mkdir, limits, attach, rmdir)"),
        ("container", "floor+work", "hardening"),
    ):
        r = ratio_ci(samples[a], samples[b])
        print(f"  {a:12s} / {b:12s} = {r.value:5.2f}  [{r.ci_low:.2f}, {r.ci_high:.2f}]  ({what})")
    if "glibc-helper" in samples:
        r = ratio_ci(samples["glibc-helper"], samples["container"])
        print(f"  helper built with glibc / with musl = {r.value:5.2f}  [{r.ci_low:.2f}, {r.ci_high:.2f}]")
    if "serial-setup" in samples:
        r = ratio_ci(samples["serial-setup"], samples["container"])
        print(
            f"  record and cgroup before the helper / while it starts = {r.value:5.2f}  "
            f"[{r.ci_low:.2f}, {r.ci_high:.2f}]"
        )
    if "proto-container" in samples:
        print("\nthrough the Driver protocol (create -> exec /bin/true -> destroy), ratios of medians")
        for other in ("proto-runc", "proto-docker", "proto-bwrap"):
            if other in samples:
                r = ratio_ci(samples["proto-container"], samples[other])
                print(
                    f"  container / {other.removeprefix('proto-'):5s} = {r.value:5.2f}  "
                    f"[{r.ci_low:.2f}, {r.ci_high:.2f}]"
                )
    if "all6" in samples:
        base = summarize(samples["all6"]).median
        clone_base = summarize(clone_s["all6"]).median
        print("\nvariants vs the default (6 namespaces, cgroup, overlay, hardening): median start and the")
        print("clone() syscall alone (the namespace creation cost, far less noisy than the whole start)")
        for name, vals in samples.items():
            if name in {
                "container",
                "floor",
                "runc",
                "exec-into",
                "floor+work",
                "floor+mounts",
            } or name.startswith("proto-"):
                continue
            med = summarize(vals).median
            cl = summarize(clone_s[name]).median
            print(
                f"  {name:16s} {ms(med)}  delta {(med - base) * 1e3:+7.2f} ms   "
                f"clone {cl * 1e3:6.3f} ms  delta {(cl - clone_base) * 1e3:+7.3f} ms"
            )
    print("\nphases of the target configuration (median)")
    for name, vals in sorted(phases.items(), key=lambda kv: -summarize(kv[1]).median):
        print(f"  {name:16s} {ms(summarize(vals).median)}")
    return verdicts


if __name__ == "__main__":
    sys.exit(main())
