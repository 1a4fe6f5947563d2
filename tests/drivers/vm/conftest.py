"""The guest every vm test describes, and its spelling per golden file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from isobench.drivers.vm.domain import DomainConfig, NetConfig
from isobench.drivers.vm.hypervisor import ESX, QEMU_MICROVM, XEN

_DATA = Path("/v/isobench-run1-g0.data.img")


@pytest.fixture
def guest_config() -> DomainConfig:
    """A TCG guest with a network; its description names a pid that cannot exist (a dead owner)."""
    return DomainConfig(
        name="isobench-run1-g0",
        accel="tcg",
        memory_mib=512,
        vcpus=2,
        kernel=Path("/img/vmlinuz"),
        initrd=Path("/img/initrd.img"),
        cmdline="console=ttyS0 quiet",
        overlay=Path("/runs/g0.qcow2"),
        backing=Path("/img/rootfs.ext4"),
        console_log=Path("/runs/g0.console.log"),
        cpuset=(0, 1),
        net=NetConfig("isobench-run1", "52:54:00:10:00:02"),
        description="isobench run_id=run1 pid=999999999",
    )


@pytest.fixture
def domain_cases(guest_config: DomainConfig) -> dict[str, DomainConfig]:
    """golden file -> config: the two qemu spellings the driver runs, and one per other hypervisor."""
    return {
        "domain_tcg_net.xml": guest_config,
        "domain_kvm.xml": dataclasses.replace(guest_config, accel="kvm", cpuset=None, net=None, vcpus=1),
        # the limits workload's disk probe: 20 MiB/s read and write on both disks
        "domain_tcg_iotune.xml": dataclasses.replace(
            guest_config, net=None, data_disk=_DATA, io_bps=20 * 1024 * 1024
        ),
        "domain_xen.xml": dataclasses.replace(
            guest_config, hypervisor=XEN, agent_socket=Path("/runs/g0.agent.sock"), data_disk=_DATA
        ),
        # the micro kernel on microvm: vmlinux (PVH), every virtio device on virtio-mmio
        "domain_microvm.xml": dataclasses.replace(
            guest_config,
            hypervisor=QEMU_MICROVM,
            kernel=Path("/img/kernel-micro/vmlinux"),
            initrd=Path("/img/kernel-micro/initrd-abc.img"),
            data_disk=_DATA,
        ),
        # 510 MiB: ESXi sizes memory in 4 MiB steps, so the XML asks for 512
        "domain_esx.xml": dataclasses.replace(guest_config, hypervisor=ESX, memory_mib=510, data_disk=_DATA),
    }
