"""isobench: what isolation costs, and what it fails to hide.

The same workloads run natively, in isobench's own containers and in libvirt guests; every figure is
a :class:`~isobench.model.Sample` and every comparison is a ratio to native with a confidence interval.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
