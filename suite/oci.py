"""Values from the container ecosystem that several drivers share, in one place."""

from __future__ import annotations

__all__ = ["DOCKER_DEFAULT_CAPABILITIES"]

#: Docker's (moby's) default capability set. The runc and bwrap drivers both grant it, so privileges
#: are not a difference between the reference drivers. (isobench's own container drops further, to the
#: OCI runtime-spec default of three.)
DOCKER_DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
)
