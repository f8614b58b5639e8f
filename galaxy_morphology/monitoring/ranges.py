"""Check computed values against the allowed ranges of ``settings.monitoring.ranges``.

Kept here rather than as Evidently 0.7 metric tests: those only pass or fail, while a check here
is also ``insufficient`` (a batch too small to judge) or ``not computed`` (never a pass), and it
covers the scikit-learn metrics (per-class recall, confusion counts) Evidently does not compute.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass

from galaxy_morphology.core.settings import MetricRange

PASS = "pass"
FAIL = "fail"
INSUFFICIENT = "insufficient"
NOT_COMPUTED = "not computed"
NOT_APPLICABLE = "not applicable"


@dataclass(frozen=True)
class Check:
    metric: str
    value: float | None
    range: str
    status: str  # pass | fail | insufficient | not computed | not applicable

    @property
    def breached(self) -> bool:
        return self.status == FAIL

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def insufficient_reason(
    n_rows: int, per_class: Mapping[str, int], min_rows: int, min_per_class: int
) -> str | None:
    """Why a batch is too small to judge, or ``None`` when it is large enough."""
    problems = []
    if n_rows < min_rows:
        problems.append(f"{n_rows} labelled rows < min_rows {min_rows}")
    for name, count in sorted(per_class.items()):
        if count < min_per_class:
            problems.append(f"{count} {name} rows < min_per_class {min_per_class}")
    return "; ".join(problems) or None


def check_ranges(
    values: Mapping[str, float],
    ranges: Mapping[str, MetricRange],
    insufficient: bool = False,
    not_applicable: Collection[str] = (),
) -> list[Check]:
    """One check per configured range, in the settings' order.

    An insufficient batch is never judged (status ``insufficient``); a metric that was not
    computed (absent or NaN) is reported as ``not computed``: never a breach, and never a
    pass either (``monitoring/assess.py`` then calls the batch insufficient). A metric in
    ``not_applicable`` (a label metric on a batch without labels, the agreement on a batch
    with too few unlabelled rows) is ``not applicable``: it does not judge the batch.
    """
    checks = []
    for metric, allowed in ranges.items():
        raw = values.get(metric)
        value = None if raw is None or (isinstance(raw, float) and math.isnan(raw)) else float(raw)
        if metric in not_applicable:
            status = NOT_APPLICABLE
        elif insufficient:
            status = INSUFFICIENT
        elif value is None:
            status = NOT_COMPUTED
        else:
            status = PASS if allowed.contains(value) else FAIL
        checks.append(Check(metric, value, allowed.describe(), status))
    return checks


def breaches(checks: list[Check]) -> list[Check]:
    return [check for check in checks if check.breached]
