"""Quality on data never seen, with more than one test split: nested cross-validation.

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

Usage: python bench/bench_quality.py [--folds 10] [--quick] [--bootstrap 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import one_line
from bench.resample import SNAPSHOT
from galaxy_morphology.core.families import FAMILIES
from galaxy_morphology.core.metrics import to_binary
from galaxy_morphology.core.prepare import LABEL, clean, label, validate_raw
from galaxy_morphology.core.settings import load_settings
from galaxy_morphology.core.training import (
    p_elliptical,
    refit,
    select_winner,
    soft_vote,
    tune,
    validated,
    vote_members,
)
from galaxy_morphology.flows.training import search_budget
from galaxy_morphology.tasks.ingest import read_snapshot

WINNER = "flow winner"


def outer_fold(
    rest: pd.DataFrame, held_out: pd.DataFrame, n_validation: int, settings, budget
) -> tuple[str, dict[str, np.ndarray]]:
    """Select on ``rest`` as the flow does; every candidate's P(elliptical) on ``held_out``."""
    train, validation = train_test_split(
        rest, test_size=n_validation, stratify=rest[LABEL], random_state=budget.seed
    )
    results = [validated(tune(family, train, budget), validation) for family in settings.training.families]
    if settings.training.ensemble and len(vote_members(results)) >= 2:
        results.append(validated(soft_vote(results, train, budget), validation))
    winner = select_winner(results, settings.training.max_predict_ms)
    scores = {result.family: p_elliptical(refit(result, train, validation), held_out) for result in results}
    scores[WINNER] = scores[winner.family]
    return winner.family, scores


def macro_f1(y: np.ndarray, proba: np.ndarray) -> float:
    return float(f1_score(y, (proba >= 0.5).astype(int), average="macro"))


def bootstrap_difference(
    y: np.ndarray, first: np.ndarray, second: np.ndarray, draws: int, seed: int
) -> tuple[float, float]:
    """95 % interval of macro F1(first) - macro F1(second), rows resampled together."""
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(draws):
        rows = rng.integers(0, len(y), len(y))
        differences.append(macro_f1(y[rows], first[rows]) - macro_f1(y[rows], second[rows]))
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="the flow's --quick budget (a smoke run)")
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args()
    settings = load_settings()
    budget = search_budget(settings, args.quick)
    print(one_line())

    kept, _ = clean(validate_raw(read_snapshot(SNAPSHOT)))
    labelled, _ = label(kept, settings.labels.rule, settings.labels.threshold)
    n_validation = round(len(labelled) * settings.split.validation)
    y = to_binary(labelled[LABEL].to_numpy())
    print(
        f"{len(labelled)} labelled rows, {args.folds} outer folds; each fold's selection: "
        f"{budget.search} search, {budget.n_iter} candidates, {budget.cv_folds}-fold CV, "
        f"{n_validation} validation rows"
    )

    outer = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=budget.seed)
    pooled: dict[str, np.ndarray] = {}
    fold_of = np.empty(len(labelled), dtype=int)
    winners: Counter[str] = Counter()
    for fold, (rest_rows, held_rows) in enumerate(outer.split(labelled, y)):
        started = time.perf_counter()
        winner, scores = outer_fold(
            labelled.iloc[rest_rows], labelled.iloc[held_rows], n_validation, settings, budget
        )
        winners[winner] += 1
        fold_of[held_rows] = fold
        for name, proba in scores.items():
            pooled.setdefault(name, np.full(len(labelled), np.nan))[held_rows] = proba
        print(
            f"fold {fold + 1}/{args.folds}: winner {winner}, held-out macro F1 "
            f"{macro_f1(y[held_rows], scores[WINNER]):.4f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )

    print(f"\nwinners: {', '.join(f'{name} x{count}' for name, count in winners.most_common())}\n")
    print(
        "| procedure | reference study | pooled macro F1 | pooled ROC AUC | per-fold macro F1 "
        "(mean ± std) | winner minus this, 95% bootstrap |"
    )
    print("|---|---|---:|---:|---:|---:|")
    names = [WINNER, *sorted((n for n in pooled if n != WINNER), key=lambda n: -macro_f1(y, pooled[n]))]
    for name in names:
        proba = pooled[name]
        per_fold = [macro_f1(y[fold_of == k], proba[fold_of == k]) for k in range(args.folds)]
        if name == WINNER:
            interval = "-"
        else:
            low, high = bootstrap_difference(y, pooled[WINNER], proba, args.bootstrap, budget.seed)
            interval = f"{low:+.4f} .. {high:+.4f}"
        reference = "yes" if name in FAMILIES and FAMILIES[name].reference else "no"
        print(
            f"| {name} | {reference} | {macro_f1(y, proba):.4f} | {roc_auc_score(y, proba):.4f} | "
            f"{np.mean(per_fold):.4f} ± {np.std(per_fold):.4f} | {interval} |"
        )


if __name__ == "__main__":
    main()
