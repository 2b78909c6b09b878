"""Statistics on hand-made result frames whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from losscmp import stats


def per_seed_from_images(per_image: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-seed scores from ``loss -> array (seeds, images)`` of per-image Dice: each trial's
    score is the mean over its images, as a dataset-level score would be."""
    return pd.DataFrame(
        [
            {"loss": loss, "seed": seed, "score": float(row.mean())}
            for loss, values in per_image.items()
            for seed, row in enumerate(values)
        ]
    )


def realistic(rng: np.random.Generator, quality: float, noise: float = 0.03) -> np.ndarray:
    """3 seeds × 40 images: shared seed and image effects plus the loss's own noise."""
    seed_effect = np.array([0.01, -0.02, 0.015])[:, None]
    image_effect = np.random.default_rng(0).normal(0, 0.1, 40)[None, :]
    return np.clip(quality + seed_effect + image_effect + rng.normal(0, noise, (3, 40)), 0, 1)


# ---------------------------------------------------------------- seeds: mean, sd, interval


def test_summarize_seeds_by_hand():
    summary = stats.summarize_seeds([0.7, 0.8, 0.9])
    assert summary.n == 3
    assert summary.mean == pytest.approx(0.8)
    assert summary.std == pytest.approx(0.1)  # sample sd: sqrt((0.01 + 0 + 0.01) / 2)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t(0.975, df=2) = 4.3027
    assert summary.ci_low == pytest.approx(0.8 - half)
    assert summary.ci_high == pytest.approx(0.8 + half)


def test_interval_is_clipped_to_the_score_range():
    summary = stats.summarize_seeds([0.0, 0.02, 0.2], bounds=(0.0, 1.0))
    assert summary.ci_low == 0.0
    assert summary.ci_high < 1.0
    assert stats.summarize_seeds([0.95, 0.99, 1.0], bounds=(0.0, 1.0)).ci_high == 1.0


def test_summarize_seeds_one_seed_has_no_spread_or_interval():
    summary = stats.summarize_seeds([0.75])
    assert summary.mean == 0.75
    assert math.isnan(summary.std) and math.isnan(summary.ci_low) and math.isnan(summary.ci_high)


def test_summarize_seeds_ignores_nan_and_handles_none_left():
    assert stats.summarize_seeds([0.5, math.nan, 0.7]).mean == pytest.approx(0.6)
    assert stats.summarize_seeds([math.nan]).n == 0


# ---------------------------------------------------------------- Holm


def test_holm_on_known_p_values():
    # sorted 0.01, 0.03, 0.04 with m = 3: 0.03, 0.06, max(0.06, 0.04) = 0.06
    adjusted = stats.holm([0.04, 0.01, 0.03])
    assert adjusted.tolist() == pytest.approx([0.06, 0.03, 0.06])


def test_holm_caps_at_one_and_skips_nan():
    adjusted = stats.holm([0.5, math.nan, 0.2])
    assert adjusted[0] == pytest.approx(min(1.0, max(0.4, 0.5)))  # 2*0.2 = 0.4, then 1*0.5
    assert math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.4)
    assert stats.holm([0.9, 0.8]).tolist() == [1.0, 1.0]


def test_holm_single_p_is_unchanged():
    assert stats.holm([0.02]).tolist() == [0.02]


# ---------------------------------------------------------------- paired test over seeds


def per_seed_frame(scores: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"loss": loss, "seed": seed, "score": value}
            for loss, values in scores.items()
            for seed, value in enumerate(values)
        ]
    )


def test_paired_t_test_by_hand():
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1 / sqrt 3) = 3.4641, df 2
    candidate = pd.Series([0.6, 0.7, 0.8])
    best = pd.Series([0.5, 0.5, 0.5])
    expected = 2 * scipy_stats.t.sf(0.2 / (0.1 / math.sqrt(3)), df=2)  # 0.0742
    assert stats.paired_seed_p(candidate, best) == pytest.approx(expected)
    assert expected == pytest.approx(0.0742, abs=1e-4)


def test_p_values_and_intervals_equal_scipy_stats():
    """stats.py computes them with scipy.special (a light import); scipy.stats is the reference."""
    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 10):
        for _ in range(20):
            best = rng.uniform(0.4, 0.9, n)
            candidate = best - rng.normal(0.02, rng.uniform(0.001, 0.05), n)
            expected = scipy_stats.ttest_rel(candidate, best).pvalue
            got = stats.paired_seed_p(pd.Series(candidate), pd.Series(best))
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)
            summary = stats.summarize_seeds(candidate)
            low, high = scipy_stats.t.interval(
                0.95, n - 1, loc=candidate.mean(), scale=scipy_stats.sem(candidate)
            )
            assert (summary.ci_low, summary.ci_high) == pytest.approx((low, high), rel=1e-9)


def test_pairing_is_by_seed_label_not_position():
    candidate = pd.Series([0.6, 0.7, 0.8], index=[2, 0, 1])
    best = pd.Series([0.5, 0.5, 0.5], index=[0, 1, 2])
    assert stats.paired_seed_p(candidate, best) == pytest.approx(0.0742, abs=1e-4)
    # only shared seeds count; fewer than two gives no test
    assert math.isnan(stats.paired_seed_p(pd.Series([0.6], index=[5]), best))


def test_identical_losses_are_not_different():
    rng = np.random.default_rng(1)
    scores = realistic(rng, 0.8)
    per_seed = per_seed_from_images({"a": scores, "b": scores.copy()})
    table = stats.compare_losses(per_seed)
    assert table.loc["b", "p_value"] == 1.0
    assert table["indistinguishable_from_best"].all()


def test_clearly_better_loss_is_significant():
    rng = np.random.default_rng(2)
    per_seed = per_seed_from_images(
        {"good": realistic(rng, 0.85), "bad": realistic(rng, 0.65), "worse": realistic(rng, 0.5)}
    )
    table = stats.compare_losses(per_seed)
    assert list(table.index) == ["good", "bad", "worse"]
    assert table["rank"].tolist() == [1, 2, 3]
    assert table.loc["bad", "p_holm"] < 0.01
    assert table.loc["worse", "p_holm"] < 0.01
    assert table["indistinguishable_from_best"].tolist() == [True, False, False]


def test_holm_is_applied_to_the_comparisons():
    per_seed = per_seed_frame(
        {"best": [0.8, 0.82, 0.81], "b": [0.7, 0.75, 0.78], "c": [0.5, 0.55, 0.52]}
    )
    table = stats.compare_losses(per_seed)
    raw = table["p_value"].to_numpy()
    assert table["p_holm"].to_numpy()[1:] == pytest.approx(stats.holm(raw[1:]))


def test_small_noisy_difference_is_indistinguishable():
    rng = np.random.default_rng(3)
    per_seed = per_seed_frame(
        {"a": list(0.80 + rng.normal(0, 0.03, 3)), "b": list(0.79 + rng.normal(0, 0.03, 3))}
    )
    table = stats.compare_losses(per_seed)
    assert table.iloc[1]["p_holm"] > 0.05
    assert table["indistinguishable_from_best"].all()


def test_seeds_that_disagree_are_not_significant():
    # b beats a by 0.19 on seed 0 and loses by 0.01 on seeds 1 and 2: a winner by one lucky seed.
    base = np.full((3, 30), 0.7) + np.random.default_rng(4).normal(0, 0.01, (3, 30))
    shift = np.array([0.1, -0.1, -0.1])[:, None]
    per_seed = per_seed_from_images({"a": base, "b": base + shift + 0.09})
    table = stats.compare_losses(per_seed)
    assert table.index[0] == "b"
    assert table.iloc[1]["p_value"] > 0.05


def test_one_seed_gives_no_p_value_and_calls_nothing_different():
    per_seed = per_seed_frame({"a": [0.9], "b": [0.3]})
    table = stats.compare_losses(per_seed)
    assert math.isnan(table.loc["b", "p_value"])
    assert table["indistinguishable_from_best"].all()


def test_loss_without_any_score_has_no_rank():
    per_seed = pd.DataFrame(
        {
            "loss": ["a", "a", "dead", "dead"],
            "seed": [0, 1, 0, 1],
            "score": [0.8, 0.82] + [math.nan] * 2,
        }
    )
    table = stats.compare_losses(per_seed)
    assert list(table.index) == ["a", "dead"]
    assert pd.isna(table.loc["dead", "rank"])
    assert pd.isna(table.loc["dead", "indistinguishable_from_best"])  # untested, not "equal"


def test_a_loss_with_diverged_seeds_ranks_after_the_losses_without():
    """Its mean is over the seeds that survived: dice diverged on two seeds of three and
    scored 0.9 on the third; crowned, it would also leave every other loss untested."""
    per_seed = pd.DataFrame(
        {
            "loss": ["dice"] * 3 + ["focal"] * 3 + ["tversky"] * 3 + ["bce"] * 3,
            "seed": [0, 1, 2] * 4,
            "score": [math.nan, math.nan, 0.9, 0.70, 0.72, 0.71, 0.60, 0.65, 0.62]
            + [0.5, math.nan, 0.55],
        }
    )
    table = stats.compare_losses(per_seed, diverged={"dice": 2, "bce": 1})
    assert list(table.index) == ["focal", "tversky", "bce", "dice"]
    assert table["rank"].tolist() == [1, 2, 3, 4]
    assert table.loc["dice", "mean"] == pytest.approx(0.9)  # shown, not crowned
    # tversky is tested against focal (three pairs), as it would be without dice
    expected = scipy_stats.ttest_rel([0.70, 0.72, 0.71], [0.60, 0.65, 0.62]).pvalue
    assert table.loc["tversky", "p_value"] == pytest.approx(expected)
    assert math.isnan(table.loc["dice", "p_value"])  # one pair with focal: no test
    crowned = stats.compare_losses(per_seed)  # the mean over survivors alone
    assert crowned.index[0] == "dice"


def test_equal_keys_share_the_lower_rank():
    per_seed = per_seed_frame({"a": [0.7, 0.8], "b": [0.8, 0.7], "c": [0.1, 0.2]})
    assert stats.compare_losses(per_seed)["rank"].tolist() == [1, 1, 3]


def test_one_seed_marks_nothing_indistinguishable():
    """No test ran, so no verdict on any row, the best's included (it read True/NaN)."""
    per_seed = pd.DataFrame({"loss": ["a", "b"], "seed": [0, 0], "score": [0.8, 0.1]})
    table = stats.compare_losses(per_seed)
    assert table["indistinguishable_from_best"].isna().all()


def test_the_best_is_indistinguishable_from_itself_where_a_test_ran():
    per_seed = pd.DataFrame(
        {"loss": ["a", "a", "b", "b", "c"], "seed": [0, 1, 0, 1, 0], "score": [0.8] * 5}
    )
    verdicts = stats.compare_losses(per_seed)["indistinguishable_from_best"]
    assert verdicts[["a", "b"]].tolist() == [True, True] and pd.isna(verdicts["c"])


def test_false_positive_rate():
    """Equal losses, each training run off by its own N(0, 0.03): the test says
    'different' in about alpha of the cases (the claim in the stats docstring)."""
    rng = np.random.default_rng(0)
    repeats, seeds = 400, 3
    shared_seed_effect = rng.normal(0, 0.02, (repeats, 1, seeds))
    runs = 0.7 + shared_seed_effect + rng.normal(0, 0.03, (repeats, 2, seeds))
    rejections = sum(
        stats.paired_seed_p(pd.Series(run[0]), pd.Series(run[1])) < stats.ALPHA for run in runs
    )
    assert 0.02 <= rejections / repeats <= 0.09
