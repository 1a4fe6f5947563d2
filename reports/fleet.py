"""The fleet view of a run measured on several hosts (``isobench run --cluster``).

Every sample of a fleet run carries ``params["host"]``, so cells, summary rows and ratios to native
are per host everywhere (a ratio never takes its baseline from another host). The headline of such
a run is one host's (the one that ran the most drivers); this view puts each host's headline
figure side by side: one row per driver and question, one column per host, each figure coloured
against that host's own native baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import pandas as pd
from isobench.model import Sample
from isobench.results import Results

from .cells import driver_order
from .headline import Figure, Headline, build_headline

__all__ = ["HOST_PARAM", "Fleet", "fleet_view", "host_results", "hosts_of", "main_results"]

#: The param a fleet run's samples carry (``isobench.cluster.worker.HOST_PARAM``).
HOST_PARAM = "host"


def hosts_of(results: Results) -> list[str]:
    """The hosts a run's samples were measured on, sorted; empty for a single-host run."""
    return sorted({str(s.params[HOST_PARAM]) for s in results.samples if HOST_PARAM in s.params})


def _strip(s: Sample) -> Sample:
    return replace(s, params={k: v for k, v in s.params.items() if k != HOST_PARAM})


def host_results(results: Results, host: str) -> Results:
    """The run as ``host`` saw it: its samples only, without the host param (a one-host run)."""
    mine = [_strip(s) for s in results.samples if s.params.get(HOST_PARAM) == host]
    return replace(results, samples=mine)


@dataclass(frozen=True)
class Fleet:
    hosts: tuple[str, ...]
    headlines: Mapping[str, Headline]
    #: The host whose headline heads the report.
    main: str

    def rows(self) -> list[tuple[str, str, list[Figure | None]]]:
        """(driver, question title, the figure on each host) for every driver and question any
        host answered, in the headline's order."""
        drivers = sorted({d for h in self.headlines.values() for d in h.drivers}, key=driver_order)
        questions = {q.key: q for h in self.headlines.values() for q in h.questions}
        order = [q for h in self.headlines.values() for q in h.questions]
        keys = list(dict.fromkeys(q.key for q in order))
        rows = []
        for key in keys:
            for d in drivers:
                figs = [self.headlines[h].figure(d, key) for h in self.hosts]
                if any(f is not None for f in figs):
                    rows.append((d, questions[key].title, figs))
        return rows

    def table(self) -> pd.DataFrame:
        """The view as text (fleet.csv): the figure and its detail per host."""
        records = []
        for driver, question, figs in self.rows():
            row = {"driver": driver, "question": question}
            for host, f in zip(self.hosts, figs, strict=True):
                row[host] = "" if f is None else f"{f.text} ({f.detail})" if f.detail else f.text
            records.append(row)
        return pd.DataFrame.from_records(records, columns=["driver", "question", *self.hosts])


def fleet_view(results: Results) -> Fleet | None:
    """The fleet view, or None when the run has fewer than two hosts."""
    hosts = hosts_of(results)
    if len(hosts) < 2:
        return None
    headlines = {h: build_headline(host_results(results, h)) for h in hosts}
    main = min(hosts, key=lambda h: (-len(headlines[h].drivers), -len(headlines[h].figures), h))
    return Fleet(tuple(hosts), headlines, main)


def main_results(results: Results, fleet: Fleet | None) -> Results:
    """What the headline is built from: the main host's samples in a fleet run, else all."""
    return results if fleet is None else host_results(results, fleet.main)
