"""Run configuration: defaults, overridden by an ``isobench.toml``, overridden by CLI flags.

Example ``isobench.toml``::

    [run]
    drivers = ["host", "container", "vm"]
    workloads = ["startup", "cpu"]
    repetitions = 5
    warmups = 1
    timeout = 600          # seconds per matrix cell
    output = "results"
    state_dir = "/var/lib/isobench"

    [sandbox]              # one spec for every driver: matched CPU and memory
    vcpus = 1
    memory_mib = 512
    cpuset = [1]

    [drivers.vm]           # passed to that driver as its options
    accel = "auto"

    [workloads.cpu]        # passed to that workload as its params
    events = 5000
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from isobench.errors import ConfigError

__all__ = ["RunConfig", "load_config"]

DEFAULT_STATE_DIR = Path("/var/lib/isobench")


@dataclass(frozen=True)
class RunConfig:
    #: None means "every driver available on this host".
    drivers: tuple[str, ...] | None = None
    #: None means the default workload set.
    workloads: tuple[str, ...] | None = None
    repetitions: int = 5
    #: Set when the user chose ``repetitions`` (``-n`` or ``[run] repetitions``): workloads' own
    #: repetition caps then give way to it.
    repetitions_explicit: bool = False
    warmups: int = 1
    timeout: float = 600.0
    quick: bool = False
    output: Path = Path("results")
    state_dir: Path = DEFAULT_STATE_DIR
    vcpus: int = 1
    memory_mib: int = 512
    cpuset: tuple[int, ...] | None = None
    driver_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    workload_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.repetitions < 1:
            raise ConfigError(f"repetitions must be >= 1, got {self.repetitions}")
        if self.warmups < 0:
            raise ConfigError(f"warmups must be >= 0, got {self.warmups}")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.vcpus < 1:
            raise ConfigError(f"sandbox.vcpus must be >= 1, got {self.vcpus}")
        if self.memory_mib < 64:
            raise ConfigError(f"sandbox.memory_mib must be >= 64, got {self.memory_mib}")

    def quickened(self) -> RunConfig:
        """The --quick smoke matrix: few repetitions, no warmup (workloads also shrink their sizes)."""
        return replace(self, quick=True, repetitions=min(self.repetitions, 3), warmups=0)


_RUN_KEYS: dict[str, type | tuple[type, ...]] = {
    "drivers": list,
    "workloads": list,
    "repetitions": int,
    "warmups": int,
    "timeout": (int, float),
    "quick": bool,
    "output": str,
    "state_dir": str,
}
_SANDBOX_KEYS: dict[str, type | tuple[type, ...]] = {"vcpus": int, "memory_mib": int, "cpuset": list}


def _check_table(
    table: Any, name: str, keys: dict[str, type | tuple[type, ...]], src: Path
) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{src}: [{name}] must be a table")
    for k, v in table.items():
        if k not in keys:
            raise ConfigError(f"{src}: unknown key {name}.{k}; known: {', '.join(keys)}")
        want = keys[k]
        if isinstance(v, bool) and want is not bool:
            raise ConfigError(f"{src}: {name}.{k} has the wrong type (bool)")
        if not isinstance(v, want):
            raise ConfigError(f"{src}: {name}.{k} has the wrong type ({type(v).__name__})")
    return table


def load_config(path: Path | None, base: RunConfig | None = None) -> RunConfig:
    cfg = base or RunConfig()
    if path is None:
        return cfg
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    unknown = set(raw) - {"run", "sandbox", "drivers", "workloads"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown table(s) {', '.join(sorted(unknown))}; known: run, sandbox, drivers, workloads"
        )
    updates: dict[str, Any] = {}
    run = _check_table(raw.get("run", {}), "run", _RUN_KEYS, path)
    for k, v in run.items():
        if k in ("drivers", "workloads"):
            if not all(isinstance(x, str) for x in v):
                raise ConfigError(f"{path}: run.{k} must be a list of names")
            updates[k] = tuple(v)
        elif k in ("output", "state_dir"):
            updates[k] = Path(v)
        elif k == "repetitions":
            updates.update(repetitions=v, repetitions_explicit=True)
        else:
            updates[k] = v
    sandbox = _check_table(raw.get("sandbox", {}), "sandbox", _SANDBOX_KEYS, path)
    for k, v in sandbox.items():
        if k == "cpuset":
            if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v):
                raise ConfigError(f"{path}: sandbox.cpuset must be a list of CPU numbers")
            updates[k] = tuple(v)
        else:
            updates[k] = v
    for table in ("drivers", "workloads"):
        section = raw.get(table, {})
        if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
            raise ConfigError(f"{path}: [{table}.<name>] entries must be tables")
        updates["driver_options" if table == "drivers" else "workload_params"] = {
            k: dict(v) for k, v in section.items()
        }
    known = {f.name for f in fields(RunConfig)}
    assert set(updates) <= known
    try:
        return replace(cfg, **updates)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
