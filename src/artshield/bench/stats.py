"""Intervals and verdicts for the bench: what a protection experiment's data can support.

A cell's outcome is, per training seed, the judge's yes/no for each generation (is it in the
artist's style?). Mimicry success is their mean. Its 95 % interval comes from a two-level
bootstrap: resample the training seeds with replacement, then each chosen seed's generations with
replacement, and take the 2.5th and 97.5th percentiles of the mean. With one seed it is the
generations' bootstrap alone, which leaves training-seed variance out: results say how many seeds
each interval rests on.

The verdict rule, written once here and applied to intervals, never to point estimates:

    bar = half of clean success's lower bound
    holds             the upper bound of every cell (no purifier, and each purifier) is <= bar
    does not protect  the unpurified cell's lower bound is > bar: it is clearly not below the bar
    broken by P       the unpurified cell's upper bound is <= bar, and P's lower bound is > bar
    inconclusive      anything else: the intervals cannot decide

and, before all of these, "inconclusive: clean mimicry is too weak" when clean success's lower
bound is below MIN_CLEAN_SUCCESS (there is nothing to protect against).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_CLEAN_SUCCESS = 0.3
DECIDED_ALONE = ("does not protect", "inconclusive: clean")   # verdicts no purified cell can change
LEVEL = 0.95
RESAMPLES = 4000


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    seeds: int
    generations: int

    def to_dict(self) -> dict:
        return {"mean": round(self.mean, 4), "low": round(self.low, 4), "high": round(self.high, 4),
                "seeds": self.seeds, "generations": self.generations}


def interval(outcomes: list[list[float]], resamples: int = RESAMPLES, seed: int = 0,
             level: float = LEVEL) -> Interval:
    """The mean of per-generation outcomes (one list per training seed) with its bootstrap interval
    over seeds, then generations."""
    groups = [np.asarray(g, dtype=float) for g in outcomes if len(g)]
    if not groups:
        raise ValueError("an interval needs at least one generation")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):
        chosen = rng.integers(len(groups), size=len(groups))
        values = [groups[k][rng.integers(len(groups[k]), size=len(groups[k]))] for k in chosen]
        means[i] = np.concatenate(values).mean()
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(np.concatenate(groups).mean()), float(low), float(high), len(groups),
                    int(sum(len(g) for g in groups)))


def verdict(clean: Interval, unpurified: Interval, purified: dict[str, Interval]) -> str:
    """The bench's verdict for one protection (see the module's docstring for the rule)."""
    if clean.low < MIN_CLEAN_SUCCESS:
        return "inconclusive: clean mimicry is too weak to measure a protection"
    bar = clean.low / 2
    if unpurified.high <= bar and all(p.high <= bar for p in purified.values()):
        return "holds"
    if unpurified.low > bar:
        return "does not protect"
    if unpurified.high <= bar:
        breaking = sorted((name for name, p in purified.items() if p.low > bar),
                          key=lambda n: -purified[n].mean)
        if breaking:
            return "broken by " + ", ".join(breaking)
    return "inconclusive"


def worst_case(unpurified: Interval, purified: dict[str, Interval]) -> tuple[str, Interval]:
    """The cell with the highest upper bound over no purifier and every purifier: what the verdict
    "holds" has to beat."""
    cells = {"none": unpurified, **purified}
    name = max(cells, key=lambda n: (cells[n].high, cells[n].mean))
    return name, cells[name]


def proportion_interval(rate: float, n: int) -> Interval:
    """The interval of a success rate over n outcomes of one seed (read back from the rate)."""
    k = round(rate * n)
    return interval([[1.0] * k + [0.0] * (n - k)])


def final_without_purifiers(clean: list[list[float]], unpurified: list[list[float]]) -> str | None:
    """The verdict when the clean and unpurified outcomes alone decide it, whatever the purifiers
    give: "does not protect" or clean mimicry too weak. None when the purified cells are needed."""
    decided = verdict(interval(clean), interval(unpurified), {})
    return decided if decided.startswith(DECIDED_ALONE) else None
