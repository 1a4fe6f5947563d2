"""The host-system layer every driver and the suite share: what the host is (:class:`HostProbe`,
carried in ``DriverContext``), its cgroups (:mod:`~isobench.hostsys.cgroups`) and its links and
network namespaces (:mod:`~isobench.hostsys.links`). Nothing here imports a driver."""

from isobench.hostsys.probe import DEFAULT_LIBVIRT_URI, HostProbe, Tools

__all__ = ["DEFAULT_LIBVIRT_URI", "HostProbe", "Tools"]
