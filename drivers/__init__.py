"""Drivers: one folder per isolation technology, all behind :class:`isobench.drivers.base.Driver`."""
