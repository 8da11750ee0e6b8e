"""The bench's statistics (bench/stats.py): intervals that cover the truth on cells simulated like the
committed run's (where the procedure it replaces does not), Holm's levels, and each verdict on
constructed cells."""
import math

import numpy as np
import pytest

from artshield.bench import experiment, stats
from artshield.bench.experiment import Preset, summary

# --------------------------------------------------------------------------------------- a simulator

MU = {"clean": 0.7, "half": -0.55, "same": 0.7, "low": -2.0, "gone": -4.0}      # logits of the conditions' success
SEED_SD, PROMPT_SD, CELL_SD, DUPLICATE = 1.0, 2.0, 1.5, 0.5


def world(rng, seeds: int, conditions: list[str], prompts: int = 64, per: int = 2, seed_sd: float = SEED_SD,
          rho: float = 0.3) -> dict[str, np.ndarray]:
    """0/1 outcomes (seeds x prompts x generations) per condition, as the bench makes them: prompts
    shared by every condition (some are easier to mimic), a training-seed effect per condition,
    correlated between conditions of one seed index, and a prompt's generations near-duplicates of
    each other half the time (within-prompt correlation about 0.75; the committed run's is about 0.6)."""
    b = rng.normal(0, PROMPT_SD, prompts)
    shared = rng.normal(size=seeds)
    out = {}
    for c in conditions:
        a = seed_sd * (rho * shared + math.sqrt(1 - rho ** 2) * rng.normal(size=seeds))
        logit = MU[c] + a[:, None] + b[None, :] + rng.normal(0, CELL_SD, (seeds, prompts))
        y = (rng.random((seeds, prompts, per)) < (1 / (1 + np.exp(-logit)))[..., None]).astype(float)
        copy = rng.random((seeds, prompts, per)) < DUPLICATE
        copy[..., 0] = False
        out[c] = np.where(copy, y[..., :1], y)
    return out


def true_success(condition: str, seed_sd: float = SEED_SD) -> float:
    x = np.random.default_rng(99).normal(0, math.sqrt(seed_sd ** 2 + PROMPT_SD ** 2 + CELL_SD ** 2), 2_000_000)
    return float((1 / (1 + np.exp(-(MU[condition] + x)))).mean())


def old_bootstrap(y: np.ndarray, rng, resamples: int = 1000) -> tuple[float, float]:
    """The procedure before #27: resample seeds, then each chosen seed's generations, percentile 95 %."""
    s = y.shape[0]
    flat = y.reshape(s, -1)
    n = flat.shape[1]
    chosen = rng.integers(s, size=(resamples, s))
    picks = rng.integers(n, size=(resamples, s, n))
    means = flat[chosen[..., None], picks].mean(axis=(1, 2))
    return tuple(np.quantile(means, [0.025, 0.975]))


@pytest.mark.parametrize("seeds", [3, 5])
def test_intervals_cover_the_truth_on_cells_like_the_committed_runs_and_the_old_bootstrap_does_not(seeds):
    truth = {c: true_success(c) for c in ("clean", "half")}
    rng = np.random.default_rng(seeds)
    hits = {"level": 0, "difference": 0, "relative": 0, "old level": 0}
    within, spread = [], []
    sims = 800
    for _ in range(sims):
        cells = world(rng, seeds, ["clean", "half"])
        a, b = cells["half"].mean(axis=2), cells["clean"].mean(axis=2)
        within.append(np.corrcoef(cells["clean"][..., 0].ravel(), cells["clean"][..., 1].ravel())[0, 1])
        spread.append(cells["half"].mean(axis=(1, 2)).std(ddof=1))
        level = stats.level_interval(b, b.size * 2)
        diff = stats.difference(a, b, a.size * 2)
        rel = stats.ratio(a, b, a.size * 2)
        old = old_bootstrap(cells["clean"], rng)
        hits["level"] += level.low <= truth["clean"] <= level.high
        hits["difference"] += diff.low <= truth["half"] - truth["clean"] <= diff.high
        hits["relative"] += rel.low <= truth["half"] / truth["clean"] <= rel.high
        hits["old level"] += old[0] <= truth["clean"] <= old[1]
    coverage = {k: v / sims for k, v in hits.items()}
    assert np.mean(within) >= 0.6                        # generations of one prompt agree as on the committed run
    assert 0.08 <= np.mean(spread) <= 0.25               # seed means spread like Glaze@16's 0.48 / 0.50 / 0.80
    assert coverage["level"] >= 0.93 and coverage["difference"] >= 0.93 and coverage["relative"] >= 0.93, coverage
    if seeds == 3:
        assert coverage["old level"] < 0.93, coverage       # the procedure this replaced does not


def test_satterthwaites_df_without_the_seed_bound_would_undercover_with_three_seeds(monkeypatch):
    """The seed mean square's upper bound in stats.spread is what keeps 3 seeds honest: with the
    mean square itself (a "bound" at 37 %, where the chi-square quantile equals its 2 df: plain
    Satterthwaite), coverage falls below 93 %."""
    truth = true_success("clean", 1.4)
    monkeypatch.setattr(stats, "SEED_BOUND", 1 - 0.6321)
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(300):
        y = world(rng, 3, ["clean"], seed_sd=1.4)["clean"].mean(axis=2)
        i = stats.level_interval(y, y.size)
        hits += i.low <= truth <= i.high
    assert hits / 300 < 0.93


def test_fieller_interval_is_the_ratios_and_opens_when_the_denominator_is_uncertain():
    rng = np.random.default_rng(0)
    cells = world(rng, 5, ["clean", "half", "gone"])
    a, b = cells["half"].mean(axis=2), cells["clean"].mean(axis=2)
    r = stats.ratio(a, b, 1)
    assert r.low < a.mean() / b.mean() == r.mean < r.high < math.inf
    # the interval contains exactly the ratios the t test does not reject
    for x in (r.low - 0.02, r.high + 0.02):
        assert stats.ratio(a, b, 1, null=x).p < 0.05
    for x in (r.low + 0.02, r.high - 0.02):
        assert stats.ratio(a, b, 1, null=x).p > 0.05
    rare = np.zeros_like(b)
    rare[0, :2] = 1.0                                         # two successes in 320 prompt-seeds: compatible with 0
    assert stats.ratio(a, rare, 1).high == math.inf           # so the ratio is unbounded
    assert stats.ratio(np.zeros_like(a), b, 1).mean == 0.0    # no mimicry at all: a ratio of 0, no log needed


def test_holm_judges_each_test_at_its_step_and_stops_at_the_first_it_keeps():
    levels = stats.holm_levels([0.001, 0.04, 0.012, 0.3])
    alphas = [round(1 - lv, 6) for lv in levels]
    # sorted: 0.001 <= 0.05/4 (rejected), 0.012 <= 0.05/3 (rejected), 0.04 > 0.05/2: kept, and all after it
    assert alphas == [0.0125, 0.025, round(0.05 / 3, 6), 0.025]
    assert stats.holm_levels([0.5]) == [0.95] and stats.holm_levels([None, 0.01]) == [0.95, 0.975]


def test_one_seed_leaves_training_seed_variance_out_and_one_of_each_cannot_be_estimated():
    y = np.array([[1.0, 0.0, 1.0, 1.0]])
    var, df = stats.spread(y)
    assert df == 3 and var == pytest.approx(y.var(ddof=1) / 4)
    assert stats.spread(np.array([[1.0]]))[1] == 0
    i = stats.level_interval(np.array([[0.5]]), 16)
    assert (i.low, i.high) == (0.0, 1.0)


# ---------------------------------------------------------------------------- verdicts on cells

PURIFIERS = ["jpeg", "bilateral"]
PRESET = Preset(artists=["a"], protections=["x"], budgets=[8], purifiers=PURIFIERS, mimicry=["lora"],
                seeds=[0, 1, 2, 3, 4], generations_per_prompt=2)


def records(protected: str, by_purifier: dict[str, str], controls: str = "clean", clean: str = "clean",
            seed: int = 0) -> list[dict]:
    """Cells of one protection row: clean, the protection, its purified cells and the controls, drawn
    from the simulator with the conditions named (5 seeds, 64 prompts, 2 generations each)."""
    rng = np.random.default_rng(seed)
    names = [clean, protected, controls, *by_purifier.values()]
    drawn = world(rng, 5, sorted(set(names)))
    out = []

    def add(protection, purifier, condition):
        for s in range(5):
            y = drawn[condition][s].ravel().astype(int).tolist()
            out.append({"artist": "a", "mimicry": "lora", "protection": protection,
                        "budget": 8.0 if protection != "none" else 0, "purifier": purifier, "seed": s,
                        "outcomes": y, "mimicry_success": float(np.mean(y)), "prompts": len(y),
                        "domain_fid": 50.0 + (20.0 if condition in ("gone", "half") and protection != "none" else 0)
                        + s, "domain_kid": 0.01 + (0.004 if condition == "gone" and protection != "none" else 0)
                        + 0.001 * s})
    add("none", "none", clean)
    add("x", "none", protected)
    for q, cond in by_purifier.items():
        add("none", q, controls)
        add("x", q, cond)
    return out


@pytest.mark.parametrize("protected, purified, clean, expected", [
    ("same", {"jpeg": "same", "bilateral": "same"}, "clean", "does not protect"),
    ("gone", {"jpeg": "gone", "bilateral": "gone"}, "clean", "holds"),
    ("gone", {"jpeg": "gone", "bilateral": "same"}, "clean", "broken by bilateral"),
    ("half", {"jpeg": "half", "bilateral": "half"}, "clean", "inconclusive"),
    ("gone", {"jpeg": "gone", "bilateral": "gone"}, "gone", "inconclusive: clean mimicry is too weak"),
])
def test_each_verdict_on_constructed_cells(protected, purified, clean, expected):
    (row,) = summary(records(protected, purified, clean=clean), PRESET)
    assert row["verdict"].startswith(expected), row["relative"]
    rel = row["relative"]["none"]
    assert rel["level"] >= 0.95 and rel["low"] <= rel["mean"] and (rel["high"] is None or rel["mean"] <= rel["high"])
    if expected == "holds":
        assert all(v["high"] <= stats.BAR for v in row["relative"].values())
    if expected.startswith("broken"):
        assert row["relative"]["bilateral"]["low"] > stats.BAR and row["worst_purifier"] == "bilateral"


def test_a_purifier_that_lowers_mimicry_by_itself_is_judged_against_its_own_control():
    """Bilateral lowers mimicry by itself (like DiffPure's 0.21 against clean 0.63) and leaves the
    protected images exactly what it leaves the clean ones: the protection is gone. Judged against
    clean, the purified cell is below half of clean mimicry and could never be found to break it;
    judged against bilateral's own control, it is broken."""
    cells = records("gone", {"jpeg": "gone", "bilateral": "low"}, controls="low")
    (row,) = summary(cells, PRESET)
    assert row["verdict"] == "broken by bilateral", row["relative"]
    assert row["bilateral"] < row["clean"] / 2


def test_the_quality_axis_reads_paired_fid_differences_over_seeds():
    (row,) = summary(records("gone", {"jpeg": "gone", "bilateral": "gone"}), PRESET)
    q = row["quality"]["none"]
    assert q["fid_difference"]["mean"] == pytest.approx(20.0) and q["verdict"] == "degraded"
    assert row["quality_verdict"] == "degraded" and row["quality"]["jpeg"]["verdict"] == "degraded"
    assert q["kid_difference"]["mean"] == pytest.approx(0.004) and q["kid_difference"]["seeds"] == 5


def test_holm_widens_every_rows_interval_in_a_larger_family():
    one = summary(records("half", {"jpeg": "half", "bilateral": "half"}), PRESET)[0]
    many_records = []
    for k, name in enumerate(["x", "y", "z"]):
        for r in records("half", {"jpeg": "half", "bilateral": "half"}, seed=0):
            many_records.append({**r, "protection": name} if r["protection"] == "x" else r)
    preset = Preset(**{**PRESET.__dict__, "protections": ["x", "y", "z"]})
    rows = summary([r for i, r in enumerate(many_records)
                    if r["protection"] != "none" or i < len(many_records) // 3], preset)
    wide = rows[0]["relative"]["none"]
    assert wide["level"] > one["relative"]["none"]["level"]
    assert wide["high"] is None or wide["high"] - wide["low"] > one["relative"]["none"]["high"] - one["relative"]["none"]["low"]


def test_a_block_family_judges_each_artist_and_mimic_as_if_it_were_run_alone():
    a = records("half", {"jpeg": "half", "bilateral": "half"}, seed=0)
    b = [{**r, "artist": "b"} for r in records("half", {"jpeg": "half", "bilateral": "half"}, seed=1)]
    both = {**PRESET.__dict__, "artists": ["a", "b"]}
    alone = {row["artist"]: row for name, recs in (("a", a), ("b", b))
             for row in summary(recs, Preset(**{**both, "artists": [name]}))}
    per_block = summary(a + b, Preset(**both | {"holm_family": "artist-mimicry"}))
    one_family = summary(a + b, Preset(**both))
    for row, wide in zip(per_block, one_family):
        assert row["relative"] == alone[row["artist"]]["relative"]            # the other block changes nothing
        assert wide["relative"]["none"]["level"] > row["relative"]["none"]["level"]
    assert [c["difference"] for c in experiment.controls(a + b, 2, "artist-mimicry") if c["artist"] == "a"] \
        == [c["difference"] for c in experiment.controls(a, 2)]
    assert experiment.analysis(per_block, "artist-mimicry")["multiplicity"].startswith("Holm within each artist x mimic")
    with pytest.raises(ValueError, match="holm_family"):
        summary(a, Preset(**PRESET.__dict__ | {"holm_family": "prompt"}))
