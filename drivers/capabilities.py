"""What a driver is, as typed facts workloads, the CLI and reports ask instead of its name.

Every driver class declares ``capabilities: ClassVar[Capabilities]``: what kind of isolation it is,
what its sandboxes' root storage is, whether and where they see a volume, whether its hardening can
be switched off, how a command reaches the inside, and where it sits in tables. These are known
without an instance (the registry sorts by them) and never change. The one fact a driver learns on
the host, a guest's accelerator, is ``Accel.PENDING`` in the declaration and known from
``driver.probed_capabilities()`` (which runs the probe if it has not run yet).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BIND_VOLUME",
    "VOLUME_MOUNT",
    "Accel",
    "Capabilities",
    "DriverKind",
    "ExecModel",
    "LayerStackKind",
    "RootStorage",
    "Volume",
]

#: Where every isolating driver shows a volume inside its sandboxes.
VOLUME_MOUNT = "/data"
#: How the drivers that bind-mount it describe their volumes (a driver's ``metadata()["volume"]``).
BIND_VOLUME = f"bind mount of a host directory at {VOLUME_MOUNT}"


class DriverKind(enum.StrEnum):
    """Felter et al.'s three columns: the native baseline, processes on the host's kernel, guests."""

    NATIVE = "native"
    CONTAINER = "container"
    VM = "vm"


class RootStorage(enum.StrEnum):
    """What a sandbox's ``/`` (and its workdir) is stored on."""

    #: The host's own tree: never written to outside the sandbox's scratch workdir.
    HOST_FS = "host filesystem"
    #: The image as overlayfs lower layer, a per-sandbox upper layer on the host.
    OVERLAYFS = "overlayfs"
    #: A qcow2 overlay over the image's disk, seen by a guest kernel.
    QCOW2_OVERLAY = "qcow2 overlay"


class Volume(enum.StrEnum):
    """How a volume (``SandboxSpec.volume``, a host directory) is seen inside."""

    #: At its own host path: the sandbox runs on the host's tree.
    HOST_PATH = "host path"
    #: Mounted at ``/data`` (a bind mount, or a disk the guest mounts).
    DATA_MOUNT = "data mount"


class ExecModel(enum.StrEnum):
    """How ``Sandbox.exec`` reaches the inside."""

    #: A host process, started directly.
    DIRECT = "direct process"
    #: A process the runtime starts inside the sandbox's namespaces (a helper, ``runc exec``, bwrap).
    RUNTIME_EXEC = "runtime exec"
    #: A request to an agent inside the guest.
    GUEST_AGENT = "guest agent"


class LayerStackKind(enum.StrEnum):
    """How a driver stacks read-only layers under a sandbox (``SandboxSpec.layers``)."""

    #: Host directories as overlayfs lower layers under the sandbox's writable upper layer; the
    #: stack's tree is seen at ``/`` (merged with the image).
    OVERLAY_LOWERS = "overlayfs lower layers"
    #: A qcow2 backing chain, one image per layer, under a per-sandbox qcow2 overlay, attached as
    #: the guest's data disk and seen at ``/data``.
    QCOW2_CHAIN = "qcow2 backing chain"


class Accel(enum.StrEnum):
    """A guest's accelerator."""

    KVM = "kvm"
    TCG = "tcg"
    #: Not known yet: a probe decides it on first use (``Driver.probed_capabilities``).
    PENDING = "pending"


@dataclass(frozen=True)
class Capabilities:
    """A driver's answers to the questions workloads would otherwise ask of its name."""

    kind: DriverKind
    root_storage: RootStorage
    #: How a volume is seen inside; None: the driver cannot attach one.
    volume: Volume | None
    #: Its hardening can be switched off per sandbox (``options={"hardening": False}``), so the
    #: leakage workload scores both profiles.
    switchable_hardening: bool
    exec_model: ExecModel
    #: Tables list drivers by this, lowest first (ties by name): native, containers, guests.
    order: int
    #: Guests only (None otherwise): the accelerator, ``Accel.PENDING`` until probed.
    accel: Accel | None = None
    #: It applies ``SandboxSpec.io_bps`` (disk bandwidth throttling); others refuse a spec with it.
    io_throttle: bool = False
    #: It applies ``SandboxSpec.cpu_quota`` (a CPU-time quota in CPUs, fractions allowed); others
    #: refuse a spec with it.
    cpu_quota: bool = False
    #: How it stacks ``SandboxSpec.layers`` (None: it cannot; the runner refuses a spec with them).
    layer_stack: LayerStackKind | None = None

    def __post_init__(self) -> None:
        if (self.kind is DriverKind.VM) != (self.accel is not None):
            raise ValueError(f"a {self.kind} driver has accel {self.accel}: guests have one, others none")
        if (self.kind is DriverKind.NATIVE) != (self.root_storage is RootStorage.HOST_FS):
            raise ValueError(f"a {self.kind} driver cannot have {self.root_storage} root storage")

    @classmethod
    def container(
        cls,
        *,
        order: int,
        switchable_hardening: bool = False,
        io_throttle: bool = False,
        cpu_quota: bool = False,
        layer_stack: LayerStackKind | None = None,
    ) -> Capabilities:
        """A container runtime over the suite image: overlayfs root, volumes bind-mounted at ``/data``,
        commands started by the runtime in the sandbox's namespaces."""
        return cls(
            kind=DriverKind.CONTAINER,
            root_storage=RootStorage.OVERLAYFS,
            volume=Volume.DATA_MOUNT,
            switchable_hardening=switchable_hardening,
            exec_model=ExecModel.RUNTIME_EXEC,
            order=order,
            io_throttle=io_throttle,
            cpu_quota=cpu_quota,
            layer_stack=layer_stack,
        )

    @classmethod
    def vm(cls, *, order: int, layer_stack: LayerStackKind | None = None) -> Capabilities:
        """A guest of the suite image: qcow2 overlay root, the volume a disk mounted at ``/data``,
        commands through the in-guest agent, the accelerator decided by a probe."""
        return cls(
            kind=DriverKind.VM,
            root_storage=RootStorage.QCOW2_OVERLAY,
            volume=Volume.DATA_MOUNT,
            switchable_hardening=False,
            exec_model=ExecModel.GUEST_AGENT,
            order=order,
            accel=Accel.PENDING,
            io_throttle=True,
            layer_stack=layer_stack,
        )

    @property
    def guest(self) -> bool:
        """Its sandboxes run their own kernel."""
        return self.kind is DriverKind.VM

    def layers_path(self, subdir: str) -> str:
        """Where ``subdir`` of a layer stack's tree is seen inside a sandbox of this driver."""
        if self.layer_stack is None:
            raise ValueError("this driver stacks no layers")
        base = "" if self.layer_stack is LayerStackKind.OVERLAY_LOWERS else VOLUME_MOUNT
        return f"{base}/{subdir.strip('/')}"

    def volume_path(self, host_dir: Path) -> str:
        """Where a volume made of ``host_dir`` is seen inside a sandbox of this driver."""
        if self.volume is None:
            raise ValueError("this driver attaches no volumes")
        return str(host_dir) if self.volume is Volume.HOST_PATH else VOLUME_MOUNT

    def with_accel(self, accel: str) -> Capabilities:
        """These capabilities once a guest's accelerator is known (``"kvm"`` or ``"tcg"``)."""
        return dataclasses.replace(self, accel=Accel(accel))
