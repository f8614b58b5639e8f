from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, f1_score, roc_auc_score

from galaxy_morphology.core.metrics import (
    _draw_weights,
    _weighted_metrics,
    bootstrap_intervals,
    calibration_metrics,
    classification_metrics,
    elliptical_vote_share,
    expected_calibration_error,
    paired_bootstrap,
    reliability_curve,
    to_binary,
    volunteer_agreement,
)


def scored(n: int, seed: int, noise: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.3, "elliptical", "spiral")
    p = np.clip(to_binary(labels) * 0.7 + 0.15 + rng.normal(0, noise, n), 0, 1)
    return labels, p


def test_point_values_are_scikit_learns() -> None:
    labels, p = scored(300, seed=1)
    intervals = bootstrap_intervals(labels, p, draws=200, seed=0)
    reference = classification_metrics(labels, p)
    for name in ("f1_macro", "f1_elliptical", "recall_spiral", "precision_elliptical", "accuracy", "roc_auc"):
        assert intervals[name].value == pytest.approx(reference[name])
    assert intervals["brier"].value == pytest.approx(brier_score_loss(to_binary(labels), p))
    for interval in intervals.values():
        assert interval.low <= interval.value <= interval.high


def test_each_draw_equals_the_metric_on_the_rows_drawn() -> None:
    labels, p = scored(120, seed=2)
    truth = to_binary(labels)
    weights = _draw_weights(len(p), draws=3, seed=5)
    values = _weighted_metrics(truth, p, weights)
    for draw, counts in enumerate(weights):
        rows = np.repeat(np.arange(len(p)), counts.astype(int))  # the resample, duplicates kept
        assert values["roc_auc"][draw] == pytest.approx(roc_auc_score(truth[rows], p[rows]))
        assert values["f1_macro"][draw] == pytest.approx(
            f1_score(truth[rows], (p[rows] >= 0.5).astype(int), average="macro")
        )


def test_ties_count_one_half_in_the_auc() -> None:
    labels = np.array(["elliptical", "spiral", "elliptical", "spiral"])
    p = np.array([0.5, 0.5, 0.9, 0.1])
    assert bootstrap_intervals(labels, p, draws=100)["roc_auc"].value == pytest.approx(
        roc_auc_score(to_binary(labels), p)
    )


def test_intervals_narrow_with_more_rows() -> None:
    small, large = (bootstrap_intervals(*scored(n, seed=3), draws=500)["f1_macro"] for n in (150, 3000))
    assert large.high - large.low < (small.high - small.low) / 2


def test_paired_bootstrap_of_a_model_with_itself_is_zero_and_of_a_worse_one_positive() -> None:
    labels, good = scored(600, seed=4, noise=0.1)
    _, bad = scored(600, seed=4, noise=0.6)
    same = paired_bootstrap(labels, good, good, draws=300)
    assert same["f1_macro"].low == same["f1_macro"].high == 0.0
    better = paired_bootstrap(labels, good, bad, draws=300)
    assert better["f1_macro"].low > 0 and better["brier"].high < 0


def test_reliability_curve_and_ece_tell_calibrated_from_overconfident() -> None:
    rng = np.random.default_rng(6)
    p = rng.random(20_000)
    labels = np.where(rng.random(20_000) < p, "elliptical", "spiral")  # calibrated by construction
    overconfident = np.where(p >= 0.5, 1.0, 0.0)
    assert expected_calibration_error(labels, p) < 0.02
    assert expected_calibration_error(labels, overconfident) > 0.2
    curve = reliability_curve(labels, p, bins=10)
    assert list(curve["rows"].to_numpy()).count(0) == 0 and curve["rows"].sum() == 20_000
    assert np.allclose(curve["observed_elliptical"], curve["mean_predicted"], atol=0.03)
    assert calibration_metrics(labels, p)["brier"] < calibration_metrics(labels, overconfident)["brier"]


def test_agreement_is_a_rank_correlation_with_the_elliptical_share() -> None:
    p_el = np.array([0.1, 0.2, 0.3, 0.4, 0.0])
    p_cs = np.array([0.5, 0.4, 0.3, 0.1, 0.0])  # the last row has no vote share: left out
    share = elliptical_vote_share(p_el, p_cs)
    assert np.isnan(share[-1]) and share[2] == pytest.approx(0.5)
    assert volunteer_agreement(np.array([0.01, 0.2, 0.5, 0.99, 0.3]), p_el, p_cs) == pytest.approx(1.0)
    assert volunteer_agreement(np.array([0.9, 0.6, 0.5, 0.1, 0.3]), p_el, p_cs) == pytest.approx(-1.0)
    assert np.isnan(volunteer_agreement(np.array([0.1, 0.2]), p_el[:2], p_cs[:2]))


def test_the_review_comparison_shows_the_paired_interval_of_each_difference() -> None:
    from datetime import UTC, datetime

    from galaxy_morphology.core.review import ChampionInfo, Comparison, comparison_markdown
    from galaxy_morphology.core.training import SearchBudget

    labels, good = scored(400, seed=7, noise=0.1)
    _, bad = scored(400, seed=7, noise=0.5)
    now = datetime.now(UTC)
    comparison = Comparison(
        model_name="galaxy-morphology",
        champion=ChampionInfo("1", now, None),
        challenger_version="2",
        challenger_run_id="run",
        champion_metrics=classification_metrics(labels, bad),
        challenger_metrics=classification_metrics(labels, good),
        counts={"test": 400},
        source="snapshot:x",
        reasons=["forced"],
        at=now,
        challenger_budget=SearchBudget("random", 3, 3, 1, 42, name="quick"),
        budget_reason="asked for the quick budget",
        challenger_digest="d2",
        intervals=paired_bootstrap(labels, good, bad, draws=300),
    )
    text = comparison_markdown(comparison, "pending")
    interval = comparison.intervals["f1_macro"]
    assert interval.low > 0 and "95% paired bootstrap" in text
    assert f"[{interval.low:+.4f}, {interval.high:+.4f}]" in text
