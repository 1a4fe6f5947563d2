"""The guest core: what the ``vm`` (libvirt) and ``qemu`` (direct) drivers share about one guest.

Not a driver: this folder has no ``DRIVER``, so the registry (drivers/base.py) skips it. Both guest
drivers are thin launchers over it: ``vm`` turns a guest into libvirt domain XML and a domain's
lifecycle, ``qemu`` into a command line and a process's lifecycle. Everything else lives here, once:

- ``agent``: the host side of the in-guest agent protocol (exec, ready frame, power-off);
- ``boot``: the end of a boot, agent connected and ready, or one error (:class:`BootTimeout`);
- ``accel``: KVM or TCG, decided by a probe boot of QEMU itself (no libvirt), cached per host;
- ``options``: the options both drivers take, the frozen :class:`GuestOptions` their own extend;
- ``image``: image lookup and checks, and the per-guest qcow2 overlay;
- ``launcher``: what both launchers check before a create, and the guest metadata of every sample;
- ``datadisk``: the volume as a raw ext4 disk (``vdb`` at ``/data``);
- ``memory``: qemu's own memory (smaps without guest RAM), the guest's view, host pre-checks;
- ``phases``: guest clock readings mapped onto the host timeline (boot phases);
- ``sandbox``: :class:`GuestSandbox`, the sandbox half both drivers share (exec, stats);
- ``process``: spawning and killing a qemu process, reading its logs.

Nothing here imports libvirt, so the ``qemu`` driver works on hosts without libvirt-python.
"""
