"""Run configuration: defaults, overridden by an ``isobench.toml``, overridden by CLI flags.

Example ``isobench.toml``::

    [run]
    drivers = ["host", "container", "vm"]
    workloads = ["startup", "cpu"]
    budget = "20m"         # adaptive repetitions inside this wall time, a hard cap (the default mode) ...
    precision = "5%"       # ... until every counted figure's CI half-width is this close
    # repetitions = 5      # ... or a fixed number of repetitions instead of a budget
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

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from isobench.budget import AB_MAX_N, ADAPTIVE_MAX_N, DEFAULT_BUDGET_S, DEFAULT_PRECISION, FIRST_PASS_GRACE
from isobench.errors import ConfigError, UsageError

__all__ = ["SIZES", "RunConfig", "load_config", "load_variant", "parse_duration", "parse_precision"]

#: Workload sizes: ``auto`` is the quick sizes in a budgeted run and the full sizes with a fixed
#: repetition count; ``full`` and ``quick`` force one.
SIZES = ("auto", "full", "quick")

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
    #: Set when the user chose ``warmups``; otherwise a budgeted run has none (see with_default_budget).
    warmups_explicit: bool = False
    timeout: float = 600.0
    quick: bool = False
    #: Seconds the matrix may take, repetitions decided while running (isobench.budget); None: a
    #: fixed number of repetitions. ``with_default_budget`` makes the default run budgeted.
    budget: float | None = None
    #: Seconds past the budget the first pass (every cell at its minimum n) may run: the default
    #: budget's FIRST_PASS_GRACE budgets, so a default run measures every cell on a slower host too.
    #: A budget the user gave is a hard cap (0): what it predicts cannot finish is named, not started.
    first_pass_grace: float = 0.0
    #: Target relative half-width of a counted figure's 95% CI in a budgeted run.
    precision: float = DEFAULT_PRECISION
    #: Repetitions an uncapped cell may get at most in a budgeted run (workloads' own caps still
    #: apply); None: ADAPTIVE_MAX_N, or AB_MAX_N in an A/B run (``cap``).
    max_n: int | None = None
    #: Seed of the run order (None: drawn at start and recorded with the results).
    seed: int | None = None
    sizes: str = "auto"
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
        if self.budget is not None and self.budget <= 0:
            raise ConfigError(f"budget must be > 0 seconds, got {self.budget:g}")
        if self.max_n is not None and self.max_n < 3:
            raise ConfigError(f"max_n must be >= 3, got {self.max_n}")
        if not 0 < self.precision < 1:
            raise ConfigError(f"precision must be between 0% and 100%, got {self.precision:.1%}")
        if self.sizes not in SIZES:
            raise ConfigError(f"sizes must be one of {', '.join(SIZES)}, not {self.sizes!r}")

    def options(self) -> dict[str, Any]:
        """What an A/B run records of each configuration: its sandbox, driver and workload options."""
        return {
            "sandbox": {"vcpus": self.vcpus, "memory_mib": self.memory_mib, "cpuset": self.cpuset},
            "drivers": self.driver_options,
            "workloads": self.workload_params,
        }

    def cap(self, ab: bool = False) -> int:
        """The most repetitions an uncapped cell of a budgeted run gets (``ab``: of an A/B run)."""
        if self.max_n is not None:
            return self.max_n
        return AB_MAX_N if ab else ADAPTIVE_MAX_N

    def quickened(self) -> RunConfig:
        """The --quick smoke matrix: few repetitions, no warmup (workloads also shrink their sizes)."""
        return replace(self, quick=True, repetitions=min(self.repetitions, 3), warmups=0)

    def with_default_budget(self) -> RunConfig:
        """The run mode: a budget when one was given, or when neither ``repetitions`` nor --quick
        asked for a fixed count (the default run is budgeted); a budget *and* a repetition count
        contradict each other. The default budget's first pass may overrun it (``first_pass_grace``)."""
        if self.budget is not None and self.repetitions_explicit:
            raise ConfigError("a budget and a fixed repetition count exclude each other; choose one")
        budgeted = self
        if self.budget is None and not self.repetitions_explicit and not self.quick:
            budgeted = replace(
                self, budget=DEFAULT_BUDGET_S, first_pass_grace=FIRST_PASS_GRACE * DEFAULT_BUDGET_S
            )
        if budgeted.budget is not None and not self.warmups_explicit:
            # A warm-up round would cost a round of every cell; the budget spends that on
            # repetitions instead, which the median over >= 3 interleaved rounds needs more.
            budgeted = replace(budgeted, warmups=0)
        return budgeted


_DURATION = re.compile(r"^\s*(?P<num>[0-9]*\.?[0-9]+)\s*(?P<unit>s|m|min|h)?\s*$")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(value: str | float, what: str = "budget") -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"`` or ``"1.5h"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if m is None:
            raise UsageError(f"{what} {value!r} is not a duration; write e.g. 15m, 900s or 1h")
        seconds = float(m["num"]) * _UNIT_SECONDS[m["unit"]]
    if seconds <= 0:
        raise UsageError(f"{what} must be > 0 seconds, got {value!r}")
    return seconds


def parse_precision(value: str | float) -> float:
    """A fraction from ``"3%"`` or ``0.03``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        fraction = float(value)
    else:
        text = str(value).strip()
        try:
            fraction = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise UsageError(f"precision {value!r} is not a percentage; write e.g. 3%") from None
    if not 0 < fraction < 1:
        raise UsageError(f"precision must be between 0% and 100%, got {value!r}")
    return fraction


_RUN_KEYS: dict[str, type | tuple[type, ...]] = {
    "drivers": list,
    "workloads": list,
    "repetitions": int,
    "warmups": int,
    "timeout": (int, float),
    "quick": bool,
    "output": str,
    "state_dir": str,
    "budget": (str, int, float),
    "precision": (str, int, float),
    "max_n": int,
    "seed": int,
    "sizes": str,
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


def _in_file(path: Path, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except UsageError as err:
        raise ConfigError(f"{path}: run.{err}") from None


def _read_toml(path: Path, tables: tuple[str, ...]) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    unknown = set(raw) - set(tables)
    if unknown:
        raise ConfigError(
            f"{path}: unknown table(s) {', '.join(sorted(unknown))}; known: {', '.join(tables)}"
        )
    return raw


def _sandbox_updates(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    updates: dict[str, Any] = {}
    sandbox = _check_table(raw.get("sandbox", {}), "sandbox", _SANDBOX_KEYS, path)
    for k, v in sandbox.items():
        if k == "cpuset":
            if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v):
                raise ConfigError(f"{path}: sandbox.cpuset must be a list of CPU numbers")
            updates[k] = tuple(v)
        else:
            updates[k] = v
    return updates


def _option_tables(raw: dict[str, Any], path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    updates: dict[str, dict[str, dict[str, Any]]] = {}
    for table in ("drivers", "workloads"):
        section = raw.get(table, {})
        if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
            raise ConfigError(f"{path}: [{table}.<name>] entries must be tables")
        updates["driver_options" if table == "drivers" else "workload_params"] = {
            k: dict(v) for k, v in section.items()
        }
    return updates


def _apply(cfg: RunConfig, updates: dict[str, Any], path: Path) -> RunConfig:
    known = {f.name for f in fields(RunConfig)}
    assert set(updates) <= known
    try:
        return replace(cfg, **updates)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def load_config(path: Path | None, base: RunConfig | None = None) -> RunConfig:
    cfg = base or RunConfig()
    if path is None:
        return cfg
    raw = _read_toml(path, ("run", "sandbox", "drivers", "workloads"))
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
        elif k == "warmups":
            updates.update(warmups=v, warmups_explicit=True)
        elif k == "budget":
            updates[k] = _in_file(path, parse_duration, v)
        elif k == "precision":
            updates[k] = _in_file(path, parse_precision, v)
        else:
            updates[k] = v
    updates.update(_sandbox_updates(raw, path))
    updates.update(_option_tables(raw, path))
    return _apply(cfg, updates, path)


def load_variant(path: Path, base: RunConfig) -> RunConfig:
    """One configuration of an A/B run: ``base`` with the file's [sandbox], [drivers.X] and
    [workloads.X] on top (a driver's or workload's table is merged key by key into base's). How the
    run runs ([run]) is the same for both sides, so a variant file may not set it."""
    raw = _read_toml(path, ("sandbox", "drivers", "workloads"))
    updates = _sandbox_updates(raw, path)
    for key, tables in _option_tables(raw, path).items():
        merged = {k: dict(v) for k, v in getattr(base, key).items()}
        for name, table in tables.items():
            merged[name] = {**merged.get(name, {}), **table}
        updates[key] = merged
    return _apply(base, updates, path)
