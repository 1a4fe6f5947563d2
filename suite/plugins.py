"""Finding plugins by module: the driver folders and the workload modules (asv's ``tool_name`` way).

Adding a driver or a workload touches nothing else: the registry imports every module of its
package and keeps those that expose the plugin attribute (``DRIVER``, ``WORKLOAD``).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["plugins"]


def _modules(package: str) -> Iterator[str]:
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        yield info.name


def plugins(package: str, attr: str, what: str) -> Iterator[tuple[str, Any]]:
    """(module name, its ``attr``) of every module of ``package`` that has one. A module that fails
    to import is logged (as ``what``, e.g. "driver folder") and skipped: a broken plugin must not
    take the others down."""
    for modname in _modules(package):
        try:
            mod = importlib.import_module(f"{package}.{modname}")
        except Exception as err:
            log.warning("%s %s failed to import: %s", what, modname, err)
            continue
        found = getattr(mod, attr, None)
        if found is not None:
            yield modname, found
