"""How the guest drivers remember a probe boot's answer (the accel probe, the qemu driver's
microvm probe): a timeout is not a verdict.

A probe guest that was not ready in time says little on a loaded host: under TCG a boot that takes
3 s idle can take 30 s while other guests run, and the old caches turned one such slow boot into
"microvm fails here" (or "KVM unusable") for every later run. So each answer is stored with its
outcome:

- ``ok`` and ``failed`` (qemu exited with an error, the guest printed something that rules it
  out) are verdicts: kept until the cache key (host, kernel, qemu, image) changes;
- ``timeout`` is kept for :data:`TIMEOUT_TTL_S` only, so the runs right after a slow probe do not
  each pay for another one, and a later run probes again.

Entries written before outcomes were recorded cannot tell a timeout from a failure, so they are
read as absent and probed once more. ``isobench doctor`` shows every cached negative with its age
(:func:`describe`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

log = logging.getLogger(__name__)

__all__ = ["OUTCOMES", "TIMEOUT_TTL_S", "CachedAnswer", "Outcome", "describe", "load", "save"]

#: What a probe found: it worked, it failed for a reason, or it ran out of time (no verdict).
Outcome = Literal["ok", "failed", "timeout"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "failed", "timeout")

#: How long a timed-out probe's answer stands before a run probes again, seconds.
TIMEOUT_TTL_S = 3600.0


@dataclass(frozen=True)
class CachedAnswer:
    """One probe answer as read back: the probe's own fields plus when and how it was found."""

    fields: Mapping[str, Any]
    outcome: Outcome
    checked_at: float


def load(path: Path, *, now: float | None = None, ttl_s: float = TIMEOUT_TTL_S) -> CachedAnswer | None:
    """The answer cached at ``path``; None when there is none, it is unreadable, it predates
    outcomes, or it is a timeout older than ``ttl_s``."""
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("ignoring unreadable probe cache %s: %s", path, err)
        return None
    if not isinstance(d, dict) or d.get("outcome") not in OUTCOMES:
        log.info("probe cache %s records no outcome (older format): probing again", path)
        return None
    try:
        checked_at = float(d["checked_at"])
    except (KeyError, TypeError, ValueError):
        return None
    outcome = cast(Outcome, d["outcome"])
    now = time.time() if now is None else now
    if outcome == "timeout" and now - checked_at >= ttl_s:
        log.info(
            "probe cache %s: the timed-out probe is %.0f min old: probing again",
            path,
            (now - checked_at) / 60,
        )
        return None
    return CachedAnswer(d, outcome, checked_at)


def save(path: Path, fields: Mapping[str, Any], *, outcome: Outcome, checked_at: float) -> None:
    """Store one answer atomically (concurrent runs may probe at once; the last writer wins)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**fields, "outcome": outcome, "checked_at": checked_at}))
        tmp.rename(path)
    except OSError as err:
        log.warning("cannot cache the probe answer in %s: %s", path, err)


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def describe(
    outcome: Outcome,
    checked_at: float,
    *,
    cached: bool,
    path: Path | None = None,
    now: float | None = None,
    ttl_s: float = TIMEOUT_TTL_S,
) -> str:
    """How old a negative answer is and when it will be asked again ("" for a positive one)."""
    if outcome == "ok":
        return ""
    now = time.time() if now is None else now
    age = f"probed {_age(now - checked_at)} ago" if cached else "probed now"
    if outcome == "timeout":
        left = max(ttl_s - (now - checked_at), 0)
        return f"{age}; a timeout is no verdict: probed again after {_age(left)}"
    where = f"delete {path} to probe again" if path is not None else "kept until qemu or the kernel changes"
    return f"{age}; kept as a verdict ({where})"
