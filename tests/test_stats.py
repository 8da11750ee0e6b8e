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


# ------------------------------------------------------------------- known answers, written out

def _moments_by_hand(z: np.ndarray) -> tuple[float, float]:
    """The two-way method of moments and the bounded Satterthwaite df, one sum at a time."""
    from scipy import stats as sps

    s, p = z.shape
    g = sum(z[i, j] for i in range(s) for j in range(p)) / (s * p)
    row = [sum(z[i]) / p for i in range(s)]
    col = [sum(z[:, j]) / s for j in range(p)]
    ms_s = p * sum((r - g) ** 2 for r in row) / (s - 1)
    ms_p = s * sum((c - g) ** 2 for c in col) / (p - 1)
    ms_e = sum((z[i, j] - row[i] - col[j] + g) ** 2 for i in range(s) for j in range(p)) / ((s - 1) * (p - 1))
    var = max(ms_s - ms_e, 0) / (p * s) + max(ms_p - ms_e, 0) / (s * p) + ms_e / (s * p)
    high = max(ms_s, ms_e) * (s - 1) / sps.chi2.ppf(0.25, s - 1)
    total = high + ms_p - ms_e
    df = total ** 2 / (high ** 2 / (s - 1) + ms_p ** 2 / (p - 1) + ms_e ** 2 / ((s - 1) * (p - 1)))
    return var, min(max(df, s - 1), p - 1)


def test_spread_is_the_two_way_method_of_moments_written_out():
    # every mean square 1/6: no seed or prompt component, the variance of the mean is ms_res / 6
    z = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    assert stats.spread(z) == pytest.approx((1 / 36, 1.0))
    rng = np.random.default_rng(7)
    for s, p, seed_sd in ((3, 40, 0.0), (3, 40, 0.3), (5, 64, 0.15), (2, 5, 1.0), (4, 3, 0.05)):
        z = rng.normal(size=(s, 1)) * seed_sd + rng.normal(size=(1, p)) * 0.2 + rng.normal(size=(s, p)) * 0.1
        assert stats.spread(z) == pytest.approx(_moments_by_hand(z), rel=1e-9), (s, p, seed_sd)
    # a strong seed effect: df near S - 1; none: df up to the prompts' (bounded by P - 1)
    strong = np.arange(3.0)[:, None] + rng.normal(size=(3, 40)) * 0.01
    assert stats.spread(strong)[1] == pytest.approx(2.0, abs=0.05)
    flat = rng.normal(size=(5, 8)) * 0.01
    flat -= flat.mean(axis=1, keepdims=True)                 # seed means all equal: ms_seed 0
    assert stats.spread(flat)[1] <= 7 and stats.spread(flat) == pytest.approx(_moments_by_hand(flat))
    # one seed: prompts alone; one prompt: seeds alone; a constant table: no spread at all
    assert stats.spread(np.array([[0.0, 1, 1, 1]])) == pytest.approx((0.0625, 3))
    assert stats.spread(np.array([[0.0], [1], [1]])) == pytest.approx((1 / 9, 2))
    assert stats.spread(np.full((3, 4), 0.5)) == (0.0, 2.0)
    assert stats.spread(np.array([[0.0], [1.0]])) == pytest.approx((0.25, 1))      # two seeds, one prompt
    assert stats.spread(np.array([[0.0, 1.0]])) == pytest.approx((0.25, 1))        # one seed, two prompts
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # one of each: no estimate, and no numpy warning
        var, df = stats.spread(np.array([[0.5]]))
    assert math.isnan(var) and df == 0


def test_level_and_difference_intervals_written_out():
    from scipy import stats as sps

    rng = np.random.default_rng(8)
    a = np.clip(0.6 + rng.normal(size=(3, 1)) * 0.1 + rng.normal(size=(3, 20)) * 0.2, 0, 1)
    b = np.clip(a - 0.2 + rng.normal(size=(3, 20)) * 0.1, 0, 1)
    var, df = _moments_by_hand(a)
    half = sps.t.ppf(0.975, df) * math.sqrt(var)
    lv = stats.level_interval(a, 7)
    assert (lv.mean, lv.low, lv.high) == pytest.approx((a.mean(), a.mean() - half, a.mean() + half))
    assert (lv.seeds, lv.generations, lv.prompts, lv.df, lv.level, lv.p) == (3, 7, 20, pytest.approx(df), 0.95, None)
    narrow = stats.level_interval(a, 7, level=0.8)
    assert narrow.high - narrow.low == pytest.approx(2 * sps.t.ppf(0.9, df) * math.sqrt(var)) and narrow.level == 0.8
    # two seeds with a strong seed effect: 1 degree of freedom, still a finite interval
    two = np.array([[0.50, 0.51, 0.49, 0.50], [0.52, 0.51, 0.53, 0.52]])     # no prompt effect: df below 1, so 1
    var2, df2 = _moments_by_hand(two)
    lv2 = stats.level_interval(two, 1)
    assert df2 == 1 and lv2.df == 1
    assert (lv2.low, lv2.high) == pytest.approx((two.mean() - sps.t.ppf(0.975, 1) * math.sqrt(var2),
                                                 two.mean() + sps.t.ppf(0.975, 1) * math.sqrt(var2)))
    assert 0 < lv2.low and lv2.high < 1
    top = stats.level_interval(np.array([[1.0, 1, 1, 0.5], [1, 0.75, 1, 1], [1, 1, 0.5, 1]]), 1)
    assert top.high == 1.0 and top.low < top.mean                         # clipped to [0, 1]
    assert stats.level_interval(a * 0, 1).low == 0.0
    var, df = _moments_by_hand(a - b)
    d = stats.difference(a, b, 7)
    m = (a - b).mean()
    assert (d.mean, d.low, d.high) == pytest.approx((m, m - sps.t.ppf(0.975, df) * math.sqrt(var),
                                                     m + sps.t.ppf(0.975, df) * math.sqrt(var)))
    assert d.p == pytest.approx(2 * sps.t.sf(abs(m) / math.sqrt(var), df)) and d.null == 0.0 and d.df == pytest.approx(df)
    assert stats.difference(b, a, 7).p == pytest.approx(d.p) and stats.difference(b, a, 7).mean == pytest.approx(-m)
    wide = stats.difference(np.array([[1.0, 0.0, 1.0]] * 2), np.array([[0.0, 1.0, 0.0]] * 2), 1)
    assert wide.low == -1.0 and wide.high == 1.0                          # clipped to [-1, 1]
    # no variance: the difference is exact; it is either none (p = 1) or certain (p = 0)
    assert d == stats.Interval(d.mean, d.low, d.high, 3, 7, 20, d.df, 0.95, d.p, 0.0)      # the whole record
    same = stats.difference(a, a, 1)
    assert (same.mean, same.low, same.high, same.p) == (0.0, 0.0, 0.0, 1.0)
    assert same == stats.Interval(0.0, 0.0, 0.0, 3, 1, 20, same.df, 0.95, 1.0, 0.0)
    shifted = stats.difference(a, a - 0.25, 1)
    assert (shifted.low, shifted.high, shifted.p) == (pytest.approx(0.25), pytest.approx(0.25), 0.0)
    one = stats.difference(np.array([[0.75]]), np.array([[0.25]]), 4)
    assert one == stats.Interval(0.5, -1.0, 1.0, 1, 4, 1, 0, 0.95, 1.0, 0.0)


def test_fieller_bounds_are_where_the_t_test_turns_and_the_p_value_is_its():
    from scipy import stats as sps

    rng = np.random.default_rng(9)
    b = np.clip(0.6 + rng.normal(size=(4, 1)) * 0.08 + rng.normal(size=(4, 30)) * 0.25, 0, 1)
    a = np.clip(0.5 * b + rng.normal(size=(4, 30)) * 0.15 + 0.1, 0, 1)
    r = stats.ratio(a, b, 2)
    var0, df = _moments_by_hand(a - 0.5 * b)
    z0 = a.mean() - 0.5 * b.mean()
    assert r.mean == pytest.approx(a.mean() / b.mean()) and r.df == pytest.approx(df) and r.null == 0.5
    assert r.p == pytest.approx(2 * sps.t.sf(abs(z0) / math.sqrt(var0), df))
    q2 = sps.t.ppf(0.975, df) ** 2

    def outside(x):
        return (a.mean() - x * b.mean()) ** 2 - q2 * _moments_by_hand(a - x * b)[0]
    assert abs(outside(r.low)) < 1e-7 and abs(outside(r.high)) < 1e-7
    assert outside(r.low - 1e-3) > 0 > outside(r.low + 1e-3) and outside(r.high - 1e-3) < 0 < outside(r.high + 1e-3)
    assert 0 < r.low < r.mean < r.high < 2 * r.mean
    var8, df8 = _moments_by_hand(a - 0.8 * b)
    assert stats.ratio(a, b, 2, null=0.8).p == pytest.approx(2 * sps.t.sf(abs(a.mean() - 0.8 * b.mean()) /
                                                                        math.sqrt(var8), df8), rel=1e-6)
    wider = stats.ratio(a, b, 2, level=0.99)
    assert wider.low < r.low and wider.high > r.high and wider.level == 0.99
    # a lower bound at 0 when 0 is not rejected; no clean mimicry at all: unbounded
    faint = np.zeros((4, 30))
    faint[1, 3] = 0.5                                         # one success: a mean compatible with 0
    assert stats.ratio(faint, b, 2).low == 0.0 and stats.ratio(faint, b, 2).high < math.inf
    none = stats.ratio(a, np.zeros_like(b), 2)
    assert (none.mean, none.low, none.high) == (math.inf, 0.0, math.inf)
    # a bound past RATIO_CAP is reported unbounded; a single cell gives no interval at all
    small = b * 0.02
    small[0, 0] = 0.5
    far = stats.ratio(a, small, 2)
    assert far.high == math.inf and far.low > 1.0
    one = stats.ratio(np.array([[0.3]]), np.array([[0.6]]), 3, level=0.9, null=0.4)
    assert one == stats.Interval(0.5, 0.0, math.inf, 1, 3, 1, 0, 0.9, 1.0, 0.4)
    assert none == stats.Interval(math.inf, 0.0, math.inf, 4, 2, 30, none.df, 0.95, none.p, 0.5)
    assert none.df == pytest.approx(_moments_by_hand(a - 0.5 * np.zeros_like(b))[1]) and 0 <= none.p <= 1
    assert r == stats.Interval(r.mean, r.low, r.high, 4, 2, 30, r.df, 0.95, r.p, 0.5)
    # no variance of a - 0.5 b: p is 1 when the ratio is exactly 0.5, else 0
    c = np.full((3, 4), 0.5)
    assert stats.ratio(c * 0.5, c, 1).p == 1.0 and stats.ratio(c * 0.25, c, 1).p == 0.0


def test_holm_levels_known_answers():
    alphas = [round(1 - lv, 9) for lv in stats.holm_levels([0.01, 0.04, 0.03, 0.2])]
    # ranks: 0.01 at 0.05/4 (rejected), 0.03 at 0.05/3 (kept: stops), 0.04 and 0.2 at that same 0.05/3
    assert alphas == [0.0125, round(0.05 / 3, 9), round(0.05 / 3, 9), round(0.05 / 3, 9)]
    assert [round(1 - lv, 9) for lv in stats.holm_levels([0.0125, 0.001], alpha=0.05)] == [0.05, 0.025]
    assert [round(1 - lv, 9) for lv in stats.holm_levels([0.02, float("nan"), 0.001], alpha=0.1)] == \
        [0.05, 0.1, round(0.1 / 3, 9)]
    assert stats.holm_levels([]) == []
    # a p-value equal to its step's alpha is kept (not below it), and stops the procedure there
    at_step = stats.ALPHA / 2
    assert [round(1 - lv, 9) for lv in stats.holm_levels([at_step, 0.03])] == [0.025, 0.025]


def _iv(low, high, seeds=3, df=10.0, mean=None):
    return stats.Interval(mean if mean is not None else (low + high) / 2, low, high, seeds, 2, 64, df)


def test_verdict_boundaries():
    clean = _iv(0.5, 0.8)
    v = stats.verdict
    assert v(clean, _iv(0.2, 0.5), {"jpeg": _iv(0.1, 0.5)}) == "holds"                     # at the bar: holds
    assert v(clean, _iv(0.5, 0.9), {}) == "inconclusive"                                     # low at the bar
    assert v(clean, _iv(0.51, 0.9), {}) == "does not protect"
    assert v(clean, _iv(0.2, 0.51), {}) == "inconclusive"
    assert v(clean, _iv(0.2, 0.4), {"jpeg": _iv(0.3, 0.6)}) == "inconclusive"
    assert v(clean, _iv(0.2, 0.4), {"jpeg": _iv(0.5, 0.9)}) == "inconclusive"               # a P's low at the bar
    assert v(clean, _iv(0.2, 0.4), {"jpeg": _iv(0.6, 0.9, mean=0.7), "blur": _iv(0.1, 0.2),
                                    "median": _iv(0.55, 1.5, mean=0.9)}) == "broken by median, jpeg"
    assert v(_iv(0.3, 0.8), _iv(0.2, 0.4), {}) == "holds"                                    # clean low at the floor
    assert v(_iv(0.29, 0.8), _iv(0.2, 0.4), {}).startswith("inconclusive: clean mimicry is too weak")
    assert v(clean, _iv(0.2, 0.4, seeds=1), {}) == stats.ONE_SEED
    assert v(_iv(0.5, 0.8, seeds=2), _iv(0.2, 0.4, seeds=2), {}) == "holds"                 # two seeds are enough
    assert v(_iv(0.5, 0.8, seeds=1), _iv(0.2, 0.4), {}) == stats.ONE_SEED
    assert v(_iv(0.5, 0.8, df=0), _iv(0.2, 0.4), {}).startswith("inconclusive: one training seed of one prompt")
    assert v(clean, _iv(0.2, 0.4, df=0), {}).startswith("inconclusive: one training seed of one prompt")
    d = stats.decided_without_purifiers
    assert d(clean, _iv(0.2, 0.5)) is None and d(clean, _iv(0.5, 0.9)) == "inconclusive"
    assert d(clean, _iv(0.51, 0.9)) == "does not protect" and d(clean, _iv(0.2, 0.51)) == "inconclusive"
    assert d(_iv(0.29, 0.8), _iv(0.6, 0.9)).startswith("inconclusive: clean mimicry is too weak")
    assert d(_iv(0.3, 0.8), _iv(0.6, 0.9)) == "does not protect"
    assert d(clean, _iv(0.6, 0.9, seeds=1)) == stats.ONE_SEED == d(_iv(0.5, 0.8, seeds=1), _iv(0.6, 0.9))
    assert d(_iv(0.5, 0.8, seeds=2), _iv(0.6, 0.9, seeds=2)) == "does not protect"
    assert d(_iv(0.5, 0.8, df=0), _iv(0.6, 0.9)).startswith("inconclusive: one training seed of one")
    assert d(clean, _iv(0.6, 0.9, df=0)).startswith("inconclusive: one training seed of one")
    q = stats.quality_word
    assert q(_iv(0.1, 2)) == "degraded" and q(_iv(-2, -0.1)) == "improved"
    assert q(_iv(0.0, 2)) == q(_iv(-2, 0.0)) == "no change shown" and q(_iv(1, 2, df=0)) == "cannot tell (one seed)"


def test_seed_difference_is_a_t_interval_on_the_seeds_both_have():
    from scipy import stats as sps

    a, b = {0: 50.0, 1: 55.0, 2: 61.0, 7: 1.0}, {0: 45.0, 1: 52.0, 2: 52.0, 3: 9.0}
    d = stats.seed_difference(a, b)
    diffs = np.array([5.0, 3.0, 9.0])
    half = sps.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert (d.mean, d.low, d.high, d.seeds, d.df) == (pytest.approx(17 / 3), pytest.approx(17 / 3 - half),
                                                      pytest.approx(17 / 3 + half), 3, 2)
    assert (d.generations, d.prompts, d.level, d.null) == (0, 0, 0.95, 0.0)
    assert d.p == pytest.approx(2 * sps.t.sf((17 / 3) / (diffs.std(ddof=1) / math.sqrt(3)), 2))
    assert stats.seed_difference(a, b, level=0.5).high < d.high
    lone = stats.seed_difference({0: 3.0}, {0: 1.0, 1: 2.0}, level=0.9)
    assert lone == stats.Interval(2.0, -math.inf, math.inf, 1, 0, 0, 0, 0.9, None, 0.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # no seed in common: nan, without numpy's warning
        assert math.isnan(stats.seed_difference({0: 1.0}, {1: 1.0}).mean)
    assert stats.seed_difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0}).p == 0.0          # exact: no spread
    assert stats.seed_difference({0: 2.0, 1: 3.0}, {0: 2.0, 1: 3.0}).p == 1.0


def test_proportion_interval_and_the_interval_record():
    i = stats.proportion_interval(0.5, 400)
    assert i.mean == 0.5 and (i.seeds, i.generations, i.prompts, i.df) == (1, 400, 400, 399)
    se = math.sqrt(0.25 / 400)
    assert i.low == pytest.approx(0.5 - 1.96 * se, abs=0.006) and i.high == pytest.approx(0.5 + 1.96 * se, abs=0.006)
    assert stats.proportion_interval(0.5, 400, seed=1) != i and stats.proportion_interval(0.5, 400) == i
    assert (stats.proportion_interval(0.0, 30).low, stats.proportion_interval(1.0, 30).high) == (0.0, 1.0)
    assert stats.proportion_interval(0.333, 3).mean == pytest.approx(1 / 3)              # rounded to whole outcomes
    assert stats.proportion_interval(0.2, 50, resamples=200).high != stats.proportion_interval(0.2, 50).high
    record = stats.Interval(0.123456, -0.5, math.inf, 3, 2, 64, 5.4321, 0.98765432, 0.000123456, 0.5).to_dict()
    assert record == {"mean": 0.1235, "low": -0.5, "high": None, "seeds": 3, "generations": 2, "prompts": 64,
                      "df": 5.43, "level": 0.987654, "p": 0.0001235, "null": 0.5}
    assert "p" not in stats.Interval(0.5, 0.4, 0.6, 3, 2).to_dict()
    assert stats.Interval(0.5, 0.4, 0.6, 3, 2).excludes(0.39) and stats.Interval(0.5, 0.4, 0.6, 3, 2).excludes(0.61)
    assert not stats.Interval(0.5, 0.4, 0.6, 3, 2).excludes(0.4) and not stats.Interval(0.5, 0.4, 0.6, 3, 2).excludes(0.6)


def test_arrange_and_paired_tables():
    t = stats.arrange({3: [1, 0, 1, 1, 0, 0], 1: [1, 1, 1, 1, 0, 1]}, 2)
    assert {k: v.tolist() for k, v in t.items()} == {3: [0.5, 1.0, 0.0], 1: [1.0, 1.0, 0.5]}
    assert stats.arrange({0: [1, 0, 1]}, 1)[0].tolist() == [1.0, 0.0, 1.0]
    for bad in (({0: [1, 0, 1]}, 2), ({0: []}, 1), ({0: [1, 0]}, 0)):
        with pytest.raises(ValueError, match="seed 0"):
            stats.arrange(*bad)
    seeds, (x, y) = stats.paired({2: np.array([1.0, 0]), 0: np.array([0.0, 0]), 5: np.array([1.0, 1])},
                                 {0: np.array([1.0, 1]), 2: np.array([0.5, 0]), 9: np.array([0.0, 0])})
    assert seeds == [0, 2] and x.tolist() == [[0.0, 0.0], [1.0, 0.0]] and y.tolist() == [[1.0, 1.0], [0.5, 0.0]]
    with pytest.raises(ValueError, match="^the conditions share no training seed$"):
        stats.paired({0: np.zeros(2)}, {1: np.zeros(2)})
    with pytest.raises(ValueError, match="^paired conditions must have the same prompts and generations$"):
        stats.paired({0: np.zeros(2)}, {0: np.zeros(3)})
