"""The published claims the bench exists to check, each read off a run's verdicts.

A claim names the protection, the budget, the mimics and (for a purification claim) the purifier
whose cells test it, and what it expects. Each matching row of a run's summary (one per artist and
mimic) is read with the run's own Holm-adjusted intervals and bar (stats.BAR, 0.5):

- "protects" (AdvDM/Mist stop TI and LoRA; ASPL stops DreamBooth): *supported* when relative
  mimicry is shown at or below the bar unpurified (upper bound <= bar), *not supported* when shown
  above it (lower bound > bar), else inconclusive;
- "fails" (Glaze does not stop a hypernetwork): the reverse;
- "broken" (a bilateral filter strips Glaze): testable only where the protection holds unpurified;
  *supported* when, after the purifier and against its own control, relative mimicry is shown above
  the bar, *not supported* when it is still shown at or below it. Where the protection does not
  hold unpurified there is nothing to strip, and the claim is not tested there.

A claim's verdict on mini is its rows' common verdict, "mixed" when they differ (each row is listed),
"not measured" when the run has none of its cells; the mimics it names that the run lacks are listed.
"""
from __future__ import annotations

from dataclasses import dataclass

MIMIC_NAMES = {"lora": "LoRA", "dreambooth": "DreamBooth", "textual-inversion": "TI", "hypernetwork": "hypernetwork"}


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    source: str
    protections: tuple[str, ...]
    mimics: tuple[str, ...]
    expects: str                       # "protects", "fails" or "broken"
    budget: float = 16.0
    purifier: str = "none"


CLAIMS = [
    Claim("advdm-mist", "AdvDM / Mist stop textual inversion and LoRA from learning the artwork's style",
          "AdvDM: Liang et al., ICML 2023; Mist: Liang and Wu, arXiv 2305.12683", ("advdm", "mist"), ("textual-inversion", "lora"),
          "protects"),
    Claim("glaze-hypernetwork", "Glaze does not stop a hypernetwork trained on glazed images",
          "a widely read public test of Glaze (2023)", ("glaze",), ("hypernetwork",), "fails"),
    Claim("bilateral-glaze", "A bilateral filter strips Glaze's perturbation", "a widely shared claim (2023)",
          ("glaze",), ("lora", "dreambooth", "textual-inversion", "hypernetwork"), "broken", purifier="bilateral"),
    Claim("aspl-dreambooth", "ASPL (Anti-DreamBooth) stops DreamBooth", "Van Le et al., ICCV 2023",
          ("aspl",), ("dreambooth",), "protects"),
]


def _side(interval: dict | None, bar: float) -> str | None:
    """'below' when the interval is at or below the bar, 'above' when above it, None when it crosses.
    An unbounded end is stored as None (JSON has no infinity): the interval reaches past the bar there."""
    if not interval:
        return None
    if interval["high"] is not None and interval["high"] <= bar:
        return "below"
    if interval["low"] is not None and interval["low"] > bar:
        return "above"
    return None


def read_row(claim: Claim, row: dict, bar: float) -> tuple[str, dict | None]:
    """(verdict of this row on the claim, the interval it rests on)."""
    relative = row.get("relative", {})
    unpurified = relative.get("none")
    side = _side(unpurified, bar)
    if claim.expects in ("protects", "fails"):
        if side is None:
            return "inconclusive", unpurified
        shown_protects = side == "below"
        return ("supported" if shown_protects == (claim.expects == "protects") else "not supported"), unpurified
    purified = relative.get(claim.purifier)
    if side == "above":
        return "not tested: does not protect unpurified", unpurified
    if side is None:
        return "inconclusive", unpurified
    after = _side(purified, bar)
    if after is None:
        return "inconclusive", purified
    return ("supported" if after == "above" else "not supported"), purified


def evaluate(results: dict) -> list[dict]:
    """One entry per claim: its matching rows (artist, mimic, protection, the interval, the row's
    reading) and the claim's verdict on this run."""
    bar = results.get("analysis", {}).get("bar", 0.5)
    out = []
    for claim in CLAIMS:
        rows = []
        for row in results.get("summary", []):
            if row["protection"] in claim.protections and row["mimicry"] in claim.mimics \
                    and float(row["budget"]) == claim.budget:
                verdict, interval = read_row(claim, row, bar)
                rows.append({"artist": row["artist"], "mimicry": row["mimicry"], "protection": row["protection"],
                             "budget": claim.budget, "interval": interval, "reading": verdict})
        readings = {r["reading"] for r in rows if not r["reading"].startswith("not tested")}
        verdict = "not measured" if not rows else "not tested" if not readings else \
            readings.pop() if len(readings) == 1 else "mixed"
        measured = {r["mimicry"] for r in rows}
        out.append({"claim": claim.key, "text": claim.text, "source": claim.source, "purifier": claim.purifier,
                    "expects": claim.expects, "rows": rows, "verdict": verdict,
                    "not_measured": [m for m in claim.mimics if m not in measured]})
    return out
