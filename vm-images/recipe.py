"""What an image is made of, and the content hash that names a build.

The digest covers every input that changes the bytes of the image: the recipe version, the Debian
suite and package set, the agent and init sources, the guest kernel file and its module list, and
the disk size. Package *versions* are resolved at build time and recorded in ``image.json``; they
are not in the digest, so ``isobench image build --force`` is the way to pick up archive updates.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from isobench.errors import UsageError

__all__ = ["RECIPE_VERSION", "Recipe", "default_recipe", "host_kernel", "read_host_suite"]

#: Bump when the builder changes what it produces from the same inputs.
#: Bump when the build changes in a way the other inputs do not show.
#: 2: /isobench-fixtures (the overlay workload's lower-layer files).
RECIPE_VERSION = 2

#: The workload tools, the busybox the initramfs and network setup use, nothing else.
DEFAULT_PACKAGES: tuple[str, ...] = ("fio", "stress-ng", "iperf3", "sysbench", "sockperf", "busybox-static")

#: Modules the initramfs loads, in dependency order resolved from modules.dep at build time.
GUEST_MODULES: tuple[str, ...] = ("virtio_pci", "virtio_blk", "virtio_console", "virtio_net")

#: Documentation and locales the workloads never read: dropped to keep the image small.
PATH_EXCLUDES: tuple[str, ...] = (
    "/usr/share/man/*",
    "/usr/share/doc/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
)


@dataclass(frozen=True)
class Recipe:
    name: str
    suite: str
    kernel: Path
    modules_dir: Path
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    modules: tuple[str, ...] = GUEST_MODULES
    disk_size_mib: int = 4096
    variant: str = "essential"
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def kernel_version(self) -> str:
        return self.modules_dir.name

    def digest(self) -> str:
        """16 hex digits of sha256 over the recipe inputs (see module docstring)."""
        h = hashlib.sha256()
        inputs = asdict(self)
        inputs["kernel"] = str(self.kernel)
        inputs["modules_dir"] = str(self.modules_dir)
        inputs["recipe_version"] = RECIPE_VERSION
        h.update(json.dumps(inputs, sort_keys=True).encode())
        h.update(agent_source())
        h.update(init_script())
        h.update(_file_digest(self.kernel).encode())
        h.update(_file_digest(self.modules_dir / "modules.dep").encode())
        return h.hexdigest()[:16]


def agent_source() -> bytes:
    return resources.files("isobench.images").joinpath("agent/agent.c").read_bytes()


def init_script() -> bytes:
    return resources.files("isobench.images").joinpath("agent/init.sh").read_bytes()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}; install linux-image-cloud-amd64") from err
    return h.hexdigest()


def read_host_suite(os_release: Path = Path("/etc/os-release")) -> str:
    """The host's Debian codename: the image follows the host release the mirror serves."""
    try:
        text = os_release.read_text()
    except OSError as err:
        raise UsageError(f"cannot read {os_release}: {err.strerror}") from err
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.M)
    if not m:
        raise UsageError(f"{os_release} names no VERSION_CODENAME; pass --suite")
    return m.group(1)


def host_kernel(boot: Path = Path("/boot"), modules_root: Path = Path("/lib/modules")) -> tuple[Path, Path]:
    """The newest installed Debian cloud kernel and its module tree."""
    kernels = sorted(boot.glob("vmlinuz-*-cloud-amd64"), key=lambda p: _version_key(p.name))
    for kernel in reversed(kernels):
        version = kernel.name.removeprefix("vmlinuz-")
        mods = modules_root / version
        if (mods / "modules.dep").exists():
            return kernel, mods
    raise UsageError(
        f"no Debian cloud kernel with modules under {boot} and {modules_root}; "
        "run `apt-get install linux-image-cloud-amd64`"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def default_recipe(name: str = "default", suite: str | None = None, disk_size_mib: int = 4096) -> Recipe:
    kernel, mods = host_kernel()
    return Recipe(
        name=name,
        suite=suite or read_host_suite(),
        kernel=kernel,
        modules_dir=mods,
        disk_size_mib=disk_size_mib,
    )
