"""Quality on data never seen, with more than one test split: nested cross-validation.

Two selection rules are compared on the same outer folds, from the same tuned families:
"validation rule" (today's until issue 18: highest macro F1 on the 144-row validation split,
no calibration) and "one-SE rule" (the flow's default since: repeated stratified CV over
train+validation, the simplest family within one standard error of the best, then the
calibration step when it lowers the Brier score on validation folds). Their difference gets
a paired bootstrap interval, as does each family's and an untuned gradient boosting's.

The training flow evaluates its winner once, on a test split of 144 rows, where one galaxy
moves macro F1 by about 0.01. This benchmark repeats the whole selection on the shared
snapshot's labelled rows, ``--folds`` times: each outer fold is held out in turn, and the
rest is split into training and validation rows the way the flow splits them. On the rest,
every family is tuned with the flow's budget, the soft vote is built, the winner is picked on
validation macro F1, and the winner and each family are refit on training+validation, as the
flow refits its winner. All of them then predict the held-out fold.

So every labelled galaxy is predicted exactly once by each procedure, by a model that never
saw it: "the flow's winner" (whichever family wins in that fold) and each family on its own,
among them the reference study's three (KNN, decision tree, random forest, tuned the same
way). Prints pooled macro F1 and ROC AUC over all held-out rows, the per-fold mean and
standard deviation, and a paired bootstrap interval of the winner's macro F1 minus each
family's (same rows, resampled together).

Usage: python bench/bench_quality.py [--folds 10] [--n-iter N] [--cv-folds K] [--quick] [--bootstrap 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import one_line
from bench.resample import SNAPSHOT
from galaxy_morphology.core.families import FAMILIES, build_pipeline
from galaxy_morphology.core.metrics import (
    bootstrap_intervals,
    calibration_metrics,
    paired_bootstrap,
    to_binary,
)
from galaxy_morphology.core.prepare import LABEL, clean, label, validate_raw
from galaxy_morphology.core.settings import load_settings
from galaxy_morphology.core.training import (
    calibration_evidence,
    choose_calibration,
    cross_validate_results,
    features_and_target,
    has_log_odds,
    p_elliptical,
    refit,
    select_one_se,
    select_winner,
    soft_vote,
    tune,
    validated,
    vote_members,
)
from galaxy_morphology.flows.training import search_budget, selection_rule
from galaxy_morphology.tasks.ingest import read_snapshot

OLD = "validation rule"
NEW = "one-SE rule"
UNTUNED = "hist gradient boosting, untuned"


def outer_fold(
    rest: pd.DataFrame, held_out: pd.DataFrame, n_validation: int, settings, budget
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Select on ``rest`` by both rules; every candidate's P(elliptical) on ``held_out``."""
    train, validation = train_test_split(
        rest, test_size=n_validation, stratify=rest[LABEL], random_state=budget.seed
    )
    options = settings.training
    results = [validated(tune(family, train, budget), validation) for family in options.families]
    if options.ensemble and len(vote_members(results)) >= 2:
        results.append(validated(soft_vote(results, train, budget), validation))
    old = select_winner(results, options.max_predict_ms)
    cross_validate_results(results, train, validation, selection_rule(settings, budget))
    new = select_one_se(results, options.max_predict_ms)
    y, evidence = calibration_evidence(new, train, validation)
    method = choose_calibration(
        y, evidence, options.calibration_folds, budget.seed, has_log_odds(new.estimator)
    ).method
    scores = {result.family: p_elliptical(refit(result, train, validation), held_out) for result in results}
    scores[OLD] = scores[old.family]
    scores[NEW] = (
        scores[new.family]
        if method is None
        else p_elliptical(
            refit(new, train, validation, method, options.calibration_folds, budget.n_jobs), held_out
        )
    )
    X, target = features_and_target(pd.concat([train, validation], ignore_index=True))
    scores[UNTUNED] = (
        build_pipeline("hist_gradient_boosting", budget.seed)
        .fit(X, target)
        .predict_proba(held_out[list(X.columns)])[:, 1]
    )
    return {OLD: old.family, NEW: f"{new.family} ({method or 'uncalibrated'})"}, scores


def macro_f1(y: np.ndarray, proba: np.ndarray) -> float:
    return float(f1_score(y, (proba >= 0.5).astype(int), average="macro"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--n-iter", type=int, default=None, help="candidates per search (settings' n_iter)")
    parser.add_argument("--cv-folds", type=int, default=None, help="search CV folds (settings' cv_folds)")
    parser.add_argument("--quick", action="store_true", help="the flow's --quick budget (a smoke run)")
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args()
    settings = load_settings({"training": {"n_iter": args.n_iter, "cv_folds": args.cv_folds}})
    budget = search_budget(settings, args.quick)
    rule = selection_rule(settings, budget)
    print(one_line())

    kept, _ = clean(validate_raw(read_snapshot(SNAPSHOT)))
    labelled, _ = label(kept, settings.labels.rule, settings.labels.threshold)
    n_validation = round(len(labelled) * settings.split.validation)
    labels = labelled[LABEL].to_numpy()
    y = to_binary(labels)
    print(
        f"{len(labelled)} labelled rows, {args.folds} outer folds; each fold's selection: "
        f"{budget.search} search, {budget.n_iter} candidates, {budget.cv_folds}-fold CV, "
        f"{n_validation} validation rows; one-SE rule on {rule.folds}-fold CV x {rule.repeats}"
    )

    outer = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=budget.seed)
    pooled: dict[str, np.ndarray] = {}
    fold_of = np.empty(len(labelled), dtype=int)
    winners: dict[str, Counter[str]] = {OLD: Counter(), NEW: Counter()}
    for fold, (rest_rows, held_rows) in enumerate(outer.split(labelled, y)):
        started = time.perf_counter()
        chosen, scores = outer_fold(
            labelled.iloc[rest_rows], labelled.iloc[held_rows], n_validation, settings, budget
        )
        fold_of[held_rows] = fold
        for name, proba in scores.items():
            pooled.setdefault(name, np.full(len(labelled), np.nan))[held_rows] = proba
        for name, family in chosen.items():
            winners[name][family] += 1
        print(
            f"fold {fold + 1}/{args.folds}: {OLD} {chosen[OLD]} "
            f"{macro_f1(y[held_rows], scores[OLD]):.4f}, {NEW} {chosen[NEW]} "
            f"{macro_f1(y[held_rows], scores[NEW]):.4f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )

    for name, counts in winners.items():
        print(f"winners, {name}: {', '.join(f'{family} x{n}' for family, n in counts.most_common())}")
    print(
        "\n| procedure | reference study | pooled macro F1 [95% bootstrap] | pooled ROC AUC | Brier | "
        "per-fold macro F1 (mean ± std) | one-SE rule minus this: macro F1 | ROC AUC | Brier |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    names = [
        NEW,
        OLD,
        *sorted((n for n in pooled if n not in (NEW, OLD)), key=lambda n: -macro_f1(y, pooled[n])),
    ]
    for name in names:
        proba = pooled[name]
        own = bootstrap_intervals(labels, proba, args.bootstrap, budget.seed)
        per_fold = [macro_f1(y[fold_of == k], proba[fold_of == k]) for k in range(args.folds)]
        if name == NEW:
            differences = ["-", "-", "-"]
        else:
            paired = paired_bootstrap(labels, pooled[NEW], proba, args.bootstrap, budget.seed)
            differences = [paired[key].describe() for key in ("f1_macro", "roc_auc", "brier")]
        reference = "yes" if name in FAMILIES and FAMILIES[name].reference else "no"
        print(
            f"| {name} | {reference} | {own['f1_macro'].describe()} | {own['roc_auc'].describe()} | "
            f"{own['brier'].describe()} | {np.mean(per_fold):.4f} ± {np.std(per_fold):.4f} | "
            + " | ".join(differences)
            + " |"
        )
    calibration = {name: calibration_metrics(labels, pooled[name]) for name in (NEW, OLD)}
    print(
        "\npooled calibration: "
        + "; ".join(
            f"{name}: Brier {values['brier']:.4f}, ECE {values['ece']:.4f}"
            for name, values in calibration.items()
        )
    )


if __name__ == "__main__":
    main()
