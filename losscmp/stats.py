"""Which differences between losses are real: intervals over seeds, paired tests, Holm.

Methods (the report's caption names them too):

- **Spread and interval.** A loss's headline score is one number per seed
  (e.g. dataset-level Dice at that trial's best epoch). We report the mean and
  the sample standard deviation (ddof=1) over seeds and a 95 % Student-t
  interval over seeds, ``mean ± t(0.975, n-1) · sd / sqrt(n)``, clipped to the
  score's range. Seeds are the unit that repeats the whole experiment, so the
  interval answers "where would the mean land if we trained again". One seed
  gives no interval (NaN).
- **Paired test against the best.** For every loss other than the best, a
  paired t-test over seeds on the per-seed differences of the headline score
  (two-sided; the p of ``scipy.stats.ttest_rel``, tested against it). Pairing
  by seed removes what a seed gives every loss alike (initial weights, batch
  order, augmentations); the scored (test) images are the same for every trial,
  so the per-seed scores are already paired by image.
- **Multiple comparisons.** Holm's step-down correction over the losses
  compared with the best (NaN p-values are left out of the family and stay
  NaN). A loss is *indistinguishable from the best* when its Holm-adjusted p
  is at least ``alpha`` (0.05); where no test can run (one seed, no score)
  the verdict is missing, not "indistinguishable". The best itself is marked
  indistinguishable where at least one loss was tested against it (it is in the
  group ≈ marks) and missing where none could be, so a one-seed table says no
  verdict at all rather than a lone True. Holm takes the best as named in advance, but these same
  scores chose it, so its lead looks larger than chance alone gives: with k
  losses that are in truth equal, some loss is called different from the best
  in about 5 % of cases with k = 2, 6-7.5 % with 4 and 8-10 % with 8 (simulated
  with 3 or 5 seeds and normal run-to-run noise, whose size does not matter: a
  seed's shared effect cancels in the differences, and t has no scale). Holm
  over every pair of losses would hold 5 % (4 % there with 4 losses), at the
  cost of twice the tests with 4 losses; the report keeps the k - 1 comparisons
  with the best.

Why not a test over images (Wilcoxon over images per seed, or a bootstrap
over seeds × images)? Those treat the scored images as the replication
and miss run-to-run variation: two runs of the same loss differ by more than
their images' noise says. In a simulation with two equal losses, a
run-to-run sd of 0.03 and 40 images, a hierarchical seeds × images bootstrap
called them different in 74 % of cases with 1 seed, 23 % with 3 and 13 % with
5; the seed-level t-test in 3-6 % (``tests/test_stats.py::test_false_positive_rate``
checks that rate). So one seed gives no p-value: one training run per loss
cannot show that a difference is real.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

CONFIDENCE = 0.95
ALPHA = 0.05
CI_METHOD = "95% t-interval over seeds"
TEST_METHOD = "paired t-test over seeds vs the best, Holm-adjusted"
NO_BOUNDS = (-math.inf, math.inf)


@dataclass(frozen=True)
class SeedSummary:
    """Mean, spread and confidence interval of one loss's per-seed scores."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarize_seeds(
    values: Sequence[float],
    confidence: float = CONFIDENCE,
    bounds: tuple[float, float] = NO_BOUNDS,
) -> SeedSummary:
    """Mean ± sd and the Student-t interval over seeds (NaNs dropped).

    The interval is clipped to ``bounds``, the score's possible range (Dice
    cannot exceed 1), which the symmetric t-interval ignores.
    """
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    n = array.size
    if n == 0:
        return SeedSummary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(array.mean())
    if n == 1:
        return SeedSummary(1, mean, math.nan, math.nan, math.nan)
    std = float(array.std(ddof=1))
    # Student's t quantile; scipy.special, not scipy.stats, whose import alone takes ~0.5 s.
    half_width = special.stdtrit(n - 1, 0.5 + confidence / 2) * std / math.sqrt(n)
    low, high = bounds
    return SeedSummary(n, mean, std, max(low, mean - half_width), min(high, mean + half_width))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order; NaNs stay NaN and don't count."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = present.size
    order = present[np.argsort(p[present], kind="stable")]
    running_max = 0.0
    for position, index in enumerate(order):
        running_max = max(running_max, (m - position) * p[index])
        adjusted[index] = min(1.0, running_max)
    return adjusted


def paired_seed_p(candidate: pd.Series, best: pd.Series) -> float:
    """Two-sided paired t-test p over the seeds both have (Series indexed by seed).

    NaN with fewer than two shared seeds. Differences that are all equal have
    no spread to test against: p = 1 when they are all zero, else 0.
    """
    pairs = pd.concat([candidate, best], axis=1, keys=["candidate", "best"]).dropna()
    if len(pairs) < 2:
        return math.nan
    differences = (pairs["candidate"] - pairs["best"]).to_numpy()
    if np.allclose(differences, differences[0], rtol=0.0, atol=1e-12):
        return 1.0 if abs(differences[0]) <= 1e-12 else 0.0
    n = differences.size
    t = differences.mean() / (differences.std(ddof=1) / math.sqrt(n))
    return float(2 * special.stdtr(n - 1, -abs(t)))  # scipy.stats.ttest_rel's p, two-sided


def compare_losses(
    per_seed: pd.DataFrame,
    *,
    alpha: float = ALPHA,
    bounds: tuple[float, float] = NO_BOUNDS,
    higher_is_better: bool = True,
    diverged: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Rank losses by their mean per-seed score and test each against the best.

    ``per_seed``: columns ``loss, seed, score`` (one headline number per trial;
    NaN for a trial without one, e.g. diverged). Returns one row per loss,
    indexed by loss, best first: ``n_seeds, mean, std, ci_low, ci_high, rank,
    p_value, p_holm, indistinguishable_from_best``. ``bounds`` clips the
    intervals to the score's range; ``higher_is_better=False`` (calibration error) makes
    the lowest mean the best. ``diverged`` (loss -> seeds diverged) ranks a loss after
    every loss with fewer: its mean is over the seeds that survived, and a loss that
    diverged on two seeds of three must not be crowned on the third.
    """
    scores = per_seed.pivot(index="seed", columns="loss", values="score")
    losses = list(dict.fromkeys(per_seed["loss"]))
    summaries = {loss: summarize_seeds(scores[loss].to_numpy(), bounds=bounds) for loss in losses}
    table = pd.DataFrame.from_dict(
        {loss: vars(summary) for loss, summary in summaries.items()}, orient="index"
    ).rename(columns={"n": "n_seeds"})
    table.index.name = "loss"
    table["rank"] = _ranks(table["mean"], diverged or {}, higher_is_better)
    table = table.sort_values("rank", na_position="last", kind="stable")
    table["p_value"] = math.nan
    if table["mean"].notna().any():
        best = table.index[0]
        for loss in table.index[1:]:
            table.loc[loss, "p_value"] = paired_seed_p(scores[loss], scores[best])
    table["p_holm"] = holm(table["p_value"].to_numpy())
    table["indistinguishable_from_best"] = _verdicts(table, alpha)
    return table


def _ranks(means: pd.Series, diverged: Mapping[str, int], higher_is_better: bool) -> pd.Series:
    """1 for the best: fewest diverged seeds, then the best mean; equal keys share the
    lower rank; no mean, no rank."""
    sign = -1.0 if higher_is_better else 1.0
    keys = {
        loss: (diverged.get(loss, 0), sign * mean)
        for loss, mean in means.items()
        if not math.isnan(mean)
    }
    ordered = sorted(keys.values())
    ranks = [ordered.index(keys[loss]) + 1 if loss in keys else pd.NA for loss in means.index]
    return pd.Series(ranks, index=means.index, dtype="Int64")


def _verdicts(table: pd.DataFrame, alpha: float) -> pd.Series:
    """True/False where a test ran; missing (not False) where none could, e.g. one seed.
    The best is True where a test ran against it (trivially as good as itself), else
    missing too: one seed gave the column a lone True, read back as True/NaN."""
    tested = table["p_holm"].notna()
    verdict = pd.Series(pd.NA, index=table.index, dtype="boolean")
    verdict[tested] = table.loc[tested, "p_holm"] >= alpha
    if tested.any():
        verdict.iloc[0] = True
    return verdict
