"""The escape battery per driver: one row per driver (and hardening profile), one column per
primitive, each cell open / blocked / n/a / error; the evidence behind every cell in a second table.

Both come from the ``escape.open`` sample, which holds every verdict (n/a and errors included); a
cell of the workload that failed outright is a row of errors saying why.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
from isobench.escape import PRIMITIVES
from isobench.model import Sample
from isobench.results import Results

from .cells import driver_order

__all__ = ["EVIDENCE_COLUMNS", "escape_evidence", "escape_table", "primitive_column"]

EVIDENCE_COLUMNS = ("driver", "profile", "primitive", "verdict", "evidence")


def primitive_column(name: str, *, short: bool = True) -> str:
    """A heading: the primitive's short name (or its title), with its CVE where it has one."""
    p = next((p for p in PRIMITIVES if p.name == name), None)
    if p is None:
        return name
    text = (p.short or p.title) if short else p.title
    return f"{text} ({p.cve})" if p.cve else text


def _profile(params: dict[str, Any]) -> str:
    if "hardening" not in params:
        return ""
    return "hardening on" if params["hardening"] in (True, "true", "True") else "hardening off"


def _rows(samples: Iterable[Sample]) -> list[tuple[str, str, dict[str, str], dict[str, str]]]:
    """(driver, profile, verdicts, evidence) per driver and profile, the last repetition's."""
    found: dict[tuple[str, str], tuple[dict[str, str], dict[str, str]]] = {}
    for s in samples:
        if s.workload != "escape" or s.warmup:
            continue
        key = (s.driver, _profile(dict(s.params)))
        if s.value is None and s.error:
            why = f"the cell failed: {s.error}"
            found.setdefault(key, ({p.name: "error" for p in PRIMITIVES}, {p.name: why for p in PRIMITIVES}))
        elif s.metric == "escape.open":
            verdicts = s.metadata.get("verdicts") or {}
            evidence = s.metadata.get("evidence") or {}
            found[key] = (
                {str(k): str(v) for k, v in verdicts.items()},
                {str(k): str(v) for k, v in evidence.items()},
            )
    order = sorted(found, key=lambda k: (driver_order(k[0]), k[1] != "hardening on", k[1]))
    return [(d, prof, *found[(d, prof)]) for d, prof in order]


def _samples(results: Results | Iterable[Sample]) -> list[Sample]:
    return list(results.samples if isinstance(results, Results) else results)


def escape_table(results: Results | Iterable[Sample]) -> pd.DataFrame:
    rows = []
    for driver, profile, verdicts, _ in _rows(_samples(results)):
        row: dict[str, Any] = {"driver": driver, "profile": profile}
        for p in PRIMITIVES:
            row[primitive_column(p.name)] = verdicts.get(p.name, "error")
        row["open"] = sum(v == "open" for v in verdicts.values())
        rows.append(row)
    columns = ["driver", "profile", *(primitive_column(p.name) for p in PRIMITIVES), "open"]
    return pd.DataFrame(rows, columns=columns)


def escape_evidence(results: Results | Iterable[Sample]) -> pd.DataFrame:
    rows = [
        {
            "driver": driver,
            "profile": profile,
            "primitive": primitive_column(p.name, short=False),
            "verdict": verdicts.get(p.name, "error"),
            "evidence": evidence.get(p.name, "not recorded"),
        }
        for driver, profile, verdicts, evidence in _rows(_samples(results))
        for p in PRIMITIVES
    ]
    return pd.DataFrame(rows, columns=list(EVIDENCE_COLUMNS))
