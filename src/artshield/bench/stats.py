"""Effects, intervals and verdicts for the bench: what a protection experiment's data can support.

The design. A cell is one condition (clean, protected, protected then purified, or clean through a
purifier) and one training seed: the mimic fine-tunes with that seed and generates from the same
P prompts, G times each, in every cell. The judge says yes or no per generation. So every
condition's outcomes form a table of training seeds x prompts (a cell's G generations of one
prompt averaged into one value), and two conditions are *paired* on both factors: the same seed
index and the same prompts. Generations of one prompt are strongly correlated (on the committed
standard run the two generations of a prompt agree on 82 % of pairs, 53 % if independent), and so
are a prompt's outcomes across seeds and conditions (some captions are easier to mimic); training
seeds differ a lot (0.48 / 0.50 / 0.80 for one row). A sound interval has to resample both.

The quantities. A verdict rests on paired *effects*, not on levels:
    relative mimicry   R = protected / clean, and for a purifier P: R_P = (protected + P) / (clean + P),
                       the protection's effect measured against that purifier's own control
    difference         protected - clean (and protected + P - (clean + P)), in success points
A level (one condition's mean success) is reported too, with the same machinery.

The procedure (why not a bootstrap). Seeds and prompts are crossed random factors. For the mean of
a seeds x prompts table Z (a level, or a paired difference), the method of moments of the two-way
random-effects model gives the variance of the mean as sigma_seed^2/S + sigma_prompt^2/P +
sigma_residual^2/(S P), each component from its mean square (floored at zero). The interval is
mean +- t * sqrt(variance). Its degrees of freedom are the delicate part: the seed mean square
rests on S - 1 = 2 df with 3 seeds, and Satterthwaite's formula, fed a seed mean square that came
out small by chance, hands the interval the prompts' 63 df exactly when its variance is too small.
So the df are Satterthwaite's computed with the seed mean square at its one-sided 75 % upper
confidence bound (chi-square), kept within [S - 1, P - 1]: with a real seed effect they fall to
about S - 1, with none they approach the prompts'. On simulated cells like the committed run's
(tests/test_stats.py: within-prompt correlation 0.75, seed means spread 0.08 to 0.25), the 95 %
intervals of a level, a difference and a ratio cover the truth at least 93 % of the time with 3
and with 5 seeds; the two-level percentile bootstrap this module used before covers about 80 %
with 3 seeds (a bootstrap over 3 seeds has 10 distinct compositions and shrinks the between-seed
variance by a third), and plain Satterthwaite df about 92.6 % with a strong seed effect. With
one seed, training-seed variance cannot be estimated and is left out (df = P - 1): the interval
is then about one training run, and results say how many seeds it rests on.
A ratio's interval is Fieller's: the set of R for which the paired table protected - R x clean has
a mean compatible with zero, with the same variance and df. It needs no log (it works when the
protected mimicry is 0), and it widens, up to unbounded, when the denominator is itself uncertain
(a purifier that leaves little mimicry in its control), which is what a ratio of two noisy means
should do. A p-value against R = 0.5 comes from the same t statistic, so an interval at level
1 - a excludes 0.5 exactly when p < a.

Multiplicity. A run judges many rows at once (20 protection rows on the standard preset, plus
each row's purified cells). Every test of a run (each row's R against 0.5, and each purified R_P
against 0.5) is one family, under Holm's step-down procedure at 5 %: the test of rank i (by
p-value) is judged at 0.05 / (m - i + 1) while the tests before it are rejected; from the first
one that is not, every later test is judged at that first one's level. Each effect's *adjusted
interval* is its Fieller interval at its own judged level, so a verdict read off the adjusted
intervals is Holm's decision. Levels and the unadjusted 95 % intervals are reported beside them.

The verdict rule, on adjusted intervals of relative mimicry (BAR = 0.5: a protection has to at
least halve what the mimic learns):

    inconclusive: one training seed of one prompt gives no interval (the Check tab's quick check)
    inconclusive: clean mimicry is too weak   clean success's 95 % lower bound < MIN_CLEAN_SUCCESS
    does not protect   R's lower bound > BAR: shown to leave more than half of the mimicry
    holds              R's upper bound <= BAR, and for every purifier P, R_P's upper bound <= BAR
    broken by P        R's upper bound <= BAR (holds unpurified), and R_P's lower bound > BAR:
                       after P the protection is shown to keep less than half of its effect
                       against P's own control
    inconclusive       anything else: the intervals cannot decide

Quality, the second axis. What the mimic makes can be worse without the style being lost (the
AdvDM, Mist and Anti-DreamBooth papers claim exactly that). A cell's judge-feature FID against the
artist's references is one figure per training seed, so the quality effect is the paired
difference of FID (protected - clean, and protected + P - (clean + P)) over seeds, with a t
interval on S - 1 df (no interval from one seed), under Holm over the quality tests of the run:
"degraded" when the lower bound is above 0, "improved" when the upper bound is below 0, else
"no change shown".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps

MIN_CLEAN_SUCCESS = 0.3
BAR = 0.5                 # relative mimicry a protection must be shown at or below
LEVEL = 0.95
ALPHA = 1 - LEVEL
RATIO_CAP = 50.0          # a Fieller bound beyond this is reported as unbounded
RESAMPLES = 4000          # the generation bootstrap of a single proportion (proportion_interval)


# ------------------------------------------------------------------------------------------- tables

def arrange(by_seed: dict[int, list[float]], per_prompt: int) -> dict[int, np.ndarray]:
    """A condition's outcomes as {seed: per-prompt means}: generation i is prompt i // per_prompt's
    (the bench generates each prompt `per_prompt` times in a row)."""
    out = {}
    for seed, values in by_seed.items():
        v = np.asarray(values, dtype=float)
        if per_prompt < 1 or len(v) == 0 or len(v) % per_prompt:
            raise ValueError(f"seed {seed}: {len(v)} outcomes are not {per_prompt} generations per prompt")
        out[seed] = v.reshape(-1, per_prompt).mean(axis=1)
    return out


def paired(*conditions: dict[int, np.ndarray]) -> tuple[list[int], list[np.ndarray]]:
    """The seeds every condition has, and each condition's seeds x prompts table on those seeds."""
    seeds = sorted(set.intersection(*(set(c) for c in conditions)))
    if not seeds:
        raise ValueError("the conditions share no training seed")
    tables = [np.stack([c[s] for s in seeds]) for c in conditions]
    if len({t.shape for t in tables}) != 1:
        raise ValueError("paired conditions must have the same prompts and generations")
    return seeds, tables


def spread(z: np.ndarray) -> tuple[float, float]:
    """(variance of the mean of the seeds x prompts table z, degrees of freedom): two-way crossed
    random effects by the method of moments, components floored at zero. The df are Satterthwaite's
    for that variance, computed with the seed mean square at its one-sided 75 % upper confidence
    bound and kept within [S - 1, P - 1] (the module docstring says why). With one seed, prompts
    alone (training-seed variance cannot be estimated); with one prompt, seeds alone; with one of
    each, nothing (nan, 0)."""
    s, p = z.shape
    if s == 1 and p == 1:
        return math.nan, 0
    if s == 1 or p == 1:
        flat = z.ravel()
        return float(flat.var(ddof=1) / flat.size), flat.size - 1
    grand, rows, cols = z.mean(), z.mean(axis=1), z.mean(axis=0)
    ms_seed = p * float(((rows - grand) ** 2).sum()) / (s - 1)
    ms_prompt = s * float(((cols - grand) ** 2).sum()) / (p - 1)
    residual = z - rows[:, None] - cols[None, :] + grand
    ms_res = float((residual ** 2).sum()) / ((s - 1) * (p - 1))
    seed_part = max(ms_seed - ms_res, 0.0) / p          # sigma_seed^2
    prompt_part = max(ms_prompt - ms_res, 0.0) / s      # sigma_prompt^2
    var = seed_part / s + prompt_part / p + ms_res / (s * p)
    # Satterthwaite with the seed mean square at its upper bound: a seed mean square that came out
    # small by chance (it has S - 1 df) must not buy the interval the prompts' degrees of freedom
    seed_high = max(ms_seed, ms_res) * (s - 1) / float(sps.chi2.ppf(1 - SEED_BOUND, s - 1))
    terms = [(seed_high, s - 1), (ms_prompt, p - 1), (-ms_res, (s - 1) * (p - 1))]
    total = sum(t for t, _ in terms)
    df = total ** 2 / sum(t * t / d for t, d in terms) if total > 0 else s - 1
    return var, float(min(max(df, s - 1), p - 1))


SEED_BOUND = 0.75          # the one-sided confidence of the seed mean square's bound in `spread`


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval at `level`; `p` is the two-sided p-value against `null`
    (None for levels); `high` is inf when unbounded (a ratio over an uncertain denominator)."""
    mean: float
    low: float
    high: float
    seeds: int
    generations: int
    prompts: int = 0
    df: float = 0
    level: float = LEVEL
    p: float | None = None
    null: float | None = None

    def to_dict(self) -> dict:
        d = {"mean": _r(self.mean), "low": _r(self.low), "high": _r(self.high), "seeds": self.seeds,
             "generations": self.generations, "prompts": self.prompts, "df": round(float(self.df), 2), "level": round(self.level, 6)}
        if self.p is not None:
            d.update(p=float(f"{self.p:.4g}"), null=self.null)
        return d

    def excludes(self, value: float) -> bool:
        return self.low > value or self.high < value


def _r(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 4)


def _t(df: float, level: float) -> float:
    return float(sps.t.ppf(1 - (1 - level) / 2, df)) if df > 0 else math.inf


def level_interval(table: np.ndarray, generations: int, level: float = LEVEL) -> Interval:
    """A condition's mean success with its interval (clipped to [0, 1])."""
    var, df = spread(table)
    half = _t(df, level) * math.sqrt(var) if df > 0 else math.inf
    m = float(table.mean())
    return Interval(m, max(0.0, m - half), min(1.0, m + half), table.shape[0], generations, table.shape[1], df, level)


def difference(a: np.ndarray, b: np.ndarray, generations: int, level: float = LEVEL) -> Interval:
    """mean(a) - mean(b) for paired tables of success rates, with its interval (within [-1, 1], where
    a difference of rates lies) and its p-value against 0."""
    z = a - b
    var, df = spread(z)
    m = float(z.mean())
    if df == 0 or var == 0:
        return Interval(m, m if var == 0 else -1.0, m if var == 0 else 1.0, z.shape[0], generations,
                        z.shape[1], df, level, 0.0 if var == 0 and m else 1.0, 0.0)
    se = math.sqrt(var)
    half = _t(df, level) * se
    return Interval(m, max(-1.0, m - half), min(1.0, m + half), z.shape[0], generations, z.shape[1], df, level,
                    float(2 * sps.t.sf(abs(m) / se, df)), 0.0)


def ratio(a: np.ndarray, b: np.ndarray, generations: int, level: float = LEVEL, null: float = BAR) -> Interval:
    """mean(a) / mean(b) for paired tables (a ratio of non-negative means), with Fieller's interval
    and the p-value of the t test of mean(a - null * b) = 0."""
    ma, mb = float(a.mean()), float(b.mean())
    s, p = a.shape
    est = ma / mb if mb > 0 else math.inf
    var0, df = spread(a - null * b)
    if df == 0:
        return Interval(est, 0.0, math.inf, s, generations, p, 0, level, 1.0, null)
    z0 = ma - null * mb
    pval = 1.0 if var0 == 0 and z0 == 0 else (0.0 if var0 == 0 else float(2 * sps.t.sf(abs(z0) / math.sqrt(var0), df)))
    q2 = _t(df, level) ** 2

    def outside(r: float) -> float:         # > 0 where r is rejected
        return (ma - r * mb) ** 2 - q2 * spread(a - r * b)[0]

    if not math.isfinite(est):
        return Interval(est, 0.0, math.inf, s, generations, p, df, level, pval, null)
    low = 0.0
    if outside(0.0) > 0:
        low = optimize.brentq(outside, 0.0, est, xtol=1e-7) if est > 0 else 0.0
    high, top = math.inf, max(2 * est, 1.0)
    while top <= RATIO_CAP:
        if outside(top) > 0:
            high = optimize.brentq(outside, est, top, xtol=1e-7)
            break
        top *= 2
    return Interval(est, low, high, s, generations, p, df, level, pval, null)


# ------------------------------------------------------------------------------------ multiplicity

def holm_levels(pvalues: list[float | None], alpha: float = ALPHA) -> list[float]:
    """Holm's step-down procedure at family-wise `alpha`: for each test, the confidence level
    (1 - its judged alpha) its adjusted interval uses. A test is rejected exactly when its p-value
    is below its judged alpha; a test without a p-value counts as p = 1."""
    ps = [1.0 if p is None or not math.isfinite(p) else p for p in pvalues]
    m = len(ps)
    judged: list[float] = [alpha] * m
    stopped = None
    for rank, i in enumerate(sorted(range(m), key=lambda k: ps[k])):
        a = alpha / (m - rank)
        if stopped is None and ps[i] >= a:
            stopped = a
        judged[i] = a if stopped is None else stopped
    return [1 - a for a in judged]


# ------------------------------------------------------------------------------------------ verdicts

# one training seed: prompts give an interval, but not the spread between the mimic's own training runs
# (on mini a hypernetwork's clean mimicry went from 0.19 to 0.61 between two seeds), so no verdict
ONE_SEED = "inconclusive: too few samples (one training seed leaves the mimic's seed-to-seed spread unmeasured)"


def verdict(clean: Interval, relative: Interval, purified: dict[str, Interval]) -> str:
    """The verdict of one protection row from its clean level (95 %) and its adjusted intervals of
    relative mimicry: unpurified (`relative`) and per purifier against its control (module docstring)."""
    if clean.df == 0 or relative.df == 0:
        return "inconclusive: one training seed of one prompt gives no interval"
    if min(clean.seeds, relative.seeds) < 2:
        return ONE_SEED
    if clean.low < MIN_CLEAN_SUCCESS:
        return "inconclusive: clean mimicry is too weak to measure a protection"
    if relative.low > BAR:
        return "does not protect"
    if relative.high <= BAR:
        if all(r.high <= BAR for r in purified.values()):
            return "holds"
        breaking = sorted((q for q, r in purified.items() if r.low > BAR), key=lambda q: -purified[q].mean)
        if breaking:
            return "broken by " + ", ".join(breaking)
    return "inconclusive"


def decided_without_purifiers(clean: Interval, relative: Interval) -> str | None:
    """The verdict when the clean and unpurified cells decide it whatever the purifiers give (no
    purified cell can make it "holds" or "broken"): None when the purified cells are needed. With
    the 95 % interval: a Holm-adjusted one is wider, so what is decided here stays decided."""
    if clean.df == 0 or relative.df == 0:
        return "inconclusive: one training seed of one prompt gives no interval"
    if min(clean.seeds, relative.seeds) < 2:
        return ONE_SEED
    if clean.low < MIN_CLEAN_SUCCESS:
        return "inconclusive: clean mimicry is too weak to measure a protection"
    if relative.high > BAR:
        return "does not protect" if relative.low > BAR else "inconclusive"
    return None


def quality_word(diff: Interval) -> str:
    """The quality verdict from an (adjusted) interval of the FID difference."""
    if diff.df == 0:
        return "cannot tell (one seed)"
    if diff.low > 0:
        return "degraded"
    if diff.high < 0:
        return "improved"
    return "no change shown"


def seed_difference(a: dict[int, float], b: dict[int, float], level: float = LEVEL) -> Interval:
    """The paired difference of a per-seed figure (FID) over the seeds both have, t interval on S - 1 df."""
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds], dtype=float)
    if len(d) < 2:
        m = float(d.mean()) if len(d) else math.nan
        return Interval(m, -math.inf, math.inf, len(d), 0, 0, 0, level, None, 0.0)
    se = float(d.std(ddof=1) / math.sqrt(len(d)))
    m = float(d.mean())
    half = _t(len(d) - 1, level) * se
    p = 1.0 if se == 0 and m == 0 else (0.0 if se == 0 else float(2 * sps.t.sf(abs(m) / se, len(d) - 1)))
    return Interval(m, m - half, m + half, len(d), 0, 0, len(d) - 1, level, p, 0.0)


# ----------------------------------------------------------------------- a single proportion (erase)

def proportion_interval(rate: float, n: int, resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """A success rate over n independent outcomes with its 95 % percentile bootstrap interval (the
    erasure tables: each outcome is a different prompt and seed of one model)."""
    k = round(rate * n)
    values = np.array([1.0] * k + [0.0] * (n - k))
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):
        means[i] = values[rng.integers(n, size=n)].mean()
    low, high = np.quantile(means, [ALPHA / 2, 1 - ALPHA / 2])
    return Interval(float(values.mean()), float(low), float(high), 1, n, n, n - 1)


def paired_proportion_difference(a: list[int], b: list[int], resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """mean(a) - mean(b) for two 0/1 outcomes on the same items (prompts, each with its own seed),
    with a 95 % percentile bootstrap interval that resamples the items, both outcomes together."""
    z = np.asarray(a, float) - np.asarray(b, float)
    rng = np.random.default_rng(seed)
    means = np.array([z[rng.integers(len(z), size=len(z))].mean() for _ in range(resamples)])
    low, high = np.quantile(means, [ALPHA / 2, 1 - ALPHA / 2])
    return Interval(float(z.mean()), float(low), float(high), 1, len(z), len(z), len(z) - 1)
