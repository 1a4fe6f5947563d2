"""A minimal busybox root filesystem, for tests and start-up benchmarks that need no built image.

The same tiny tree serves every driver's tests, so a property ("the image is never written to") is
checked against one definition of what the image holds: ``/etc/image-marker`` says ``pristine``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from isobench.errors import UsageError

__all__ = ["build_busybox_rootfs"]


def build_busybox_rootfs(root: Path) -> Path:
    """Static busybox plus one symlink per applet, and the directories a container mounts onto."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise UsageError("a busybox root filesystem needs busybox-static; apt-get install busybox-static")
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "mnt", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if applet != "busybox" and "/" not in applet and not link.exists():
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "image-marker").write_text("pristine\n")
    return root
