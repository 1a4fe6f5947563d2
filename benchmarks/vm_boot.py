"""Boot-to-agent-ready: the vm driver vs the same kernel/initramfs/disk under bare qemu-system-x86_64.

Side by side in one run, alternating, so both see the same host load. Target: driver/direct <= 1.15.
Usage: python benchmarks/vm_boot.py [--runs N] [--state-dir /var/lib/isobench]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.vm import VmDriver
from isobench.drivers.vm.agent import AgentChannel
from isobench.drivers.vm.driver import DEFAULT_CMDLINE
from isobench.images import find_image


def direct_boot(state: Path, accel: str, memory_mib: int) -> float:
    img = find_image(state)
    work = Path(tempfile.mkdtemp(prefix="isobench-bench-"))
    try:
        t0 = time.monotonic()
        overlay = work / "ov.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(img.disk), str(overlay)],
            check=True,
        )
        sock = work / "agent.sock"
        proc = subprocess.Popen(
            [
                "qemu-system-x86_64",
                "-machine",
                f"q35,accel={accel}",
                "-cpu",
                "qemu64" if accel == "tcg" else "host",
                "-m",
                str(memory_mib),
                "-smp",
                "1",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-kernel",
                str(img.kernel),
                "-initrd",
                str(img.initrd),
                "-append",
                DEFAULT_CMDLINE,
                "-drive",
                f"file={overlay},if=none,id=root,format=qcow2,cache=none,aio=native",
                "-device",
                "virtio-blk-pci,drive=root",
                "-device",
                "virtio-serial-pci",
                "-chardev",
                f"socket,id=agent,path={sock},server=on,wait=off",
                "-device",
                "virtserialport,chardev=agent,name=org.isobench.agent.0",
                "-serial",
                f"file:{work / 'console.log'}",
                "-no-reboot",
            ]
        )
        try:
            ch = AgentChannel.connect(str(sock), time.monotonic() + 10)
            _, ready_ns = ch.wait_ready(time.monotonic() + 120)
            took = ready_ns / 1e9 - t0
            ch.poweroff(time.monotonic() + 5)
            ch.close()
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return took
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--state-dir", type=Path, default=Path("/var/lib/isobench"))
    ap.add_argument("--memory-mib", type=int, default=512)
    args = ap.parse_args()
    drv = VmDriver(DriverContext(args.state_dir, Path(tempfile.gettempdir()), f"bench{int(time.time())}", {}))
    accel = drv.accel()
    via_driver: list[float] = []
    direct: list[float] = []
    phases: dict[str, list[float]] = {}
    mem: dict[str, list[float]] = {}
    try:
        for i in range(args.runs):
            direct.append(direct_boot(args.state_dir, accel, args.memory_mib))
            sb = drv.create(SandboxSpec(f"b{i}", drv.run_id, memory_mib=args.memory_mib))
            try:
                for p in sb.phases:
                    phases.setdefault(p.name, []).append(p.seconds)
                for k, v in sb.stats().items():
                    mem.setdefault(k, []).append(v)
            finally:
                sb.destroy()
            for p in sb.phases:
                if p.name in ("shutdown", "destroy"):
                    phases.setdefault(p.name, []).append(p.seconds)
            via_driver.append(next(p.seconds for p in sb.phases if p.name == "boot_total"))
    finally:
        drv.gc(drv.run_id)
        drv.close()
    d, q = statistics.median(via_driver), statistics.median(direct)
    print(f"accel={accel} runs={args.runs} memory={args.memory_mib}MiB")
    print(
        f"boot-to-agent-ready median: driver {d:.3f}s  direct qemu {q:.3f}s  ratio {d / q:.3f} (target <= 1.15)"
    )
    print(
        "driver phases (median s): " + ", ".join(f"{k}={statistics.median(v):.3f}" for k, v in phases.items())
    )
    print(
        "memory (median MiB): "
        + ", ".join(f"{k}={statistics.median(v) / 2**20:.1f}" for k, v in mem.items() if k.endswith("bytes"))
    )


if __name__ == "__main__":
    main()
