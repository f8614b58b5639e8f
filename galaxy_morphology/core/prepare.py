"""Pure table logic: canonical names, validation, cleaning, labels and the split.

Nothing here reads or writes files; the Prefect tasks in ``tasks/prepare.py`` wrap these functions.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from galaxy_morphology.core.schema import (
    ALIASES,
    AXIS_RATIOS,
    BY_NAME,
    COLUMN_NAMES,
    FALLBACK_ALIASES,
    FEATURE_COLUMNS,
    FLAGS,
    KNOWN_NAMES,
    LABEL_ELLIPTICAL,
    LABEL_SPIRAL,
    MAGNITUDES,
    OBJID,
    OPTIONAL_NAMES,
    RADII,
    ROW_KEY,
    SENTINEL,
    SchemaError,
    model_columns,
)

LABEL = "label"
MIN_REDSHIFT = -0.01

# Drop reasons, in the order they are tested: a row counts under the first that applies.
DROP_REASONS: tuple[str, ...] = (
    "missing_value",
    "sentinel_-9999",
    "all_zero_magnitudes",
    "axis_ratio_outside_(0,1]",
    "non_positive_radius",
    "redshift_below_-0.01",
    "out_of_physical_range",
    "invalid_label_flags",
)


def canonicalize(frame: pd.DataFrame, required: Sequence[str] = COLUMN_NAMES) -> pd.DataFrame:
    """Rename known aliases to canonical names and check the required columns exist."""
    renames: dict[str, str] = {}
    for column in frame.columns:
        key = str(column)
        target = ALIASES.get(key.lower())
        if target is None:
            target = next((name for name in KNOWN_NAMES if name.lower() == key.lower()), None)
        if target is not None and target != key:
            renames[key] = target
    renamed = frame.rename(columns=renames)
    for alias, target in FALLBACK_ALIASES.items():
        if target not in renamed.columns and alias in renamed.columns:
            renamed = renamed.rename(columns={alias: target})
    duplicated = renamed.columns[renamed.columns.duplicated()].tolist()
    if duplicated:
        raise SchemaError(f"columns map to the same canonical name: {sorted(set(duplicated))}")
    missing = [name for name in required if name not in renamed.columns]
    if missing:
        raise SchemaError(_missing_message(missing, renamed.columns))
    return renamed


def _missing_message(missing: Iterable[str], present: Iterable[str]) -> str:
    # only a column that is not itself canonical can be a misnamed one
    present = [str(column) for column in present if str(column) not in KNOWN_NAMES]
    parts = []
    for name in missing:
        close = difflib.get_close_matches(name, present, n=1, cutoff=0.6)
        hint = f" (found '{close[0]}': misnamed?)" if close else ""
        parts.append(f"'{name}'{hint}")
    return f"missing required column(s): {', '.join(parts)}"


def coerce_types(frame: pd.DataFrame, columns: Sequence[str] = COLUMN_NAMES) -> pd.DataFrame:
    """Convert ``columns`` to numbers; a value that is not a number stops with its column."""
    converted: dict[str, pd.Series] = {}
    for name in columns:
        values = frame[name]
        if pd.api.types.is_bool_dtype(values):
            raise SchemaError(f"column '{name}': expected numbers, got booleans")
        parsed = not pd.api.types.is_numeric_dtype(values)
        if parsed:
            numeric = pd.to_numeric(values, errors="coerce")
            bad = values[numeric.isna() & values.notna() & (values.astype(str).str.strip() != "")]
            if len(bad):
                raise SchemaError(
                    f"column '{name}': expected numbers, found {bad.iloc[0]!r} "
                    f"(row {bad.index[0]}; {len(bad)} such value(s))"
                )
            values = numeric
        kind = BY_NAME[name].kind if name in BY_NAME else "float"
        if kind == "id":
            if values.isna().any():
                raise SchemaError(f"column '{name}': empty id in row {values.index[values.isna()][0]}")
            if not np.allclose(values, np.round(values)):
                raise SchemaError(f"column '{name}': ids must be whole numbers")
            converted[name] = values.astype("int64")
        elif parsed or values.dtype != np.float64:
            converted[name] = values.astype("float64")
    # one assignment for all converted columns: column by column costs ~70 µs each,
    # most of a one-record request's checking time
    return frame.assign(**converted)


@dataclass(frozen=True)
class RowCheck:
    """Per-row verdict: empty reason where the row is usable."""

    reason: pd.Series  # reason code, "" when fine
    detail: pd.Series  # human message naming the field, "" when fine

    @property
    def ok(self) -> pd.Series:
        return self.reason == ""

    def counts(self) -> dict[str, int]:
        counts = self.reason[self.reason != ""].value_counts()
        return {reason: int(counts.get(reason, 0)) for reason in DROP_REASONS}


SENTINEL_TOLERANCE = 1e-8 + 1e-5 * abs(SENTINEL)  # np.isclose(value, SENTINEL)'s own tolerance


@dataclass(frozen=True)
class ColumnRules:
    """Where the drop rules look in a table of ``names``: computed once per column order.

    ``lower_open`` < value, ``lower`` <= value <= ``upper`` per column (infinite where no
    bound): together with "finite, not the sentinel" they are every value rule at once.
    """

    names: tuple[str, ...]
    magnitudes: np.ndarray  # positions of the five magnitudes, empty unless all are there
    axis_ratios: np.ndarray  # per column: True for an axis ratio
    radii: np.ndarray
    redshift: np.ndarray
    low: np.ndarray  # physical range (inclusive), -inf without a bound
    high: np.ndarray
    lower_open: np.ndarray  # a value must be above this: 0 for radii and axis ratios
    lower: np.ndarray  # ... and at least this: the physical low, -0.01 for redshift
    upper: np.ndarray  # ... and at most this: the physical high, 1 for axis ratios


@functools.lru_cache(maxsize=64)
def column_rules(names: tuple[str, ...]) -> ColumnRules:
    """The drop rules' view of ``names`` (cached: serving asks for the same columns every time)."""
    specs = [BY_NAME.get(name) for name in names]
    low = np.array([-np.inf if s is None or s.low is None else s.low for s in specs], dtype="float64")
    high = np.array([np.inf if s is None or s.high is None else s.high for s in specs], dtype="float64")
    axis_ratios = np.isin(names, AXIS_RATIOS) if names else np.zeros(0, dtype=bool)
    radii = np.isin(names, RADII) if names else np.zeros(0, dtype=bool)
    redshift = np.array([name == "redshift" for name in names], dtype=bool)
    magnitudes = [names.index(name) for name in MAGNITUDES if name in names]
    return ColumnRules(
        names=names,
        magnitudes=np.array(magnitudes if len(magnitudes) == len(MAGNITUDES) else [], dtype=np.intp),
        axis_ratios=axis_ratios,
        radii=radii,
        redshift=redshift,
        low=low,
        high=high,
        lower_open=np.where(axis_ratios | radii, 0.0, -np.inf),
        lower=np.where(redshift, np.maximum(low, MIN_REDSHIFT), low),
        upper=np.where(axis_ratios, np.minimum(high, 1.0), high),
    )


def usable_rows(values: np.ndarray, rules: ColumnRules, flags: np.ndarray | None = None) -> np.ndarray:
    """Per row: True when no drop rule applies (a few numpy steps over the whole table).

    ``values`` holds the columns ``rules.names`` (float64); ``flags`` the three GZ1 flags,
    when they are checked. Exactly the rows :func:`first_problems` finds nothing in.
    """
    with np.errstate(invalid="ignore"):
        good = np.isfinite(values)
        good &= np.abs(values - SENTINEL) > SENTINEL_TOLERANCE
        good &= values > rules.lower_open
        good &= values >= rules.lower
        good &= values <= rules.upper
    usable = good.all(axis=1)
    if len(rules.magnitudes):
        usable &= (values[:, rules.magnitudes] != 0).any(axis=1)
    if flags is not None:
        usable &= _flags_valid(flags)
    return usable


def _flags_valid(flags: np.ndarray) -> np.ndarray:
    binary = np.isin(flags, (0.0, 1.0)).all(axis=1)
    return binary & (np.nansum(flags, axis=1) == 1)


def first_problems(
    values: np.ndarray, rules: ColumnRules, flags: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first drop rule that applies (its code) and a message naming the field.

    Both are "" for a usable row. Rules are tried in ``DROP_REASONS`` order; within a rule,
    the first column (in ``rules.names`` order) with a bad value is named.
    """
    names = rules.names
    reason = np.full(len(values), "", dtype=object)
    detail = np.full(len(values), "", dtype=object)

    def mark(code: str, bad: np.ndarray, message: str) -> None:
        """Record ``code`` for rows with a bad cell and no earlier reason."""
        rows = bad.any(axis=1) & (reason == "")
        if not rows.any():
            return
        first = bad.argmax(axis=1)
        for row in np.flatnonzero(rows):
            reason[row] = code
            detail[row] = message.format(name=names[first[row]], value=values[row, first[row]])

    with np.errstate(invalid="ignore"):
        mark("missing_value", np.isnan(values), "{name}: missing value (NaN or empty)")
        mark("sentinel_-9999", np.isclose(values, SENTINEL), "{name}: -9999 sentinel")
        mark("missing_value", np.isinf(values), "{name}: infinite value")
        if len(rules.magnitudes):
            zero = np.zeros(values.shape, dtype=bool)
            zero[:, rules.magnitudes[0]] = (values[:, rules.magnitudes] == 0).all(axis=1)
            mark("all_zero_magnitudes", zero, "mag_u..mag_z: all magnitudes are 0")
        ratio = rules.axis_ratios & ((values <= 0) | (values > 1))
        mark("axis_ratio_outside_(0,1]", ratio, "{name}: axis ratio {value:g} outside (0, 1]")
        mark("non_positive_radius", rules.radii & (values <= 0), "{name}: radius {value:g} is not positive")
        low_z = rules.redshift & (values < MIN_REDSHIFT)
        mark("redshift_below_-0.01", low_z, "{name}: redshift {value:g} below -0.01")
        outside = (values < rules.low) | (values > rules.high)
        mark("out_of_physical_range", outside, "{name}: value {value:g} outside physical range")
    if flags is not None:
        bad = np.zeros(values.shape, dtype=bool)
        bad[:, 0] = ~_flags_valid(flags)
        mark("invalid_label_flags", bad, "spiral/elliptical/uncertain: exactly one flag must be 1")
    return reason, detail


def row_problems(
    values: np.ndarray, rules: ColumnRules, flags: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows no rule allows (positions) with their reasons and messages.

    The whole table takes the quick test (:func:`usable_rows`); only the rows that fail it
    are searched for their first problem.
    """
    bad = np.flatnonzero(~usable_rows(values, rules, flags))
    if not len(bad):
        return bad, np.empty(0, dtype=object), np.empty(0, dtype=object)
    reason, detail = first_problems(values[bad], rules, None if flags is None else flags[bad])
    return bad, reason, detail


def check_rows(frame: pd.DataFrame, columns: Sequence[str], check_flags: bool) -> RowCheck:
    """Apply the drop rules to ``columns`` (already numeric) and name each row's first problem."""
    values = frame[list(columns)].to_numpy(dtype="float64", na_value=np.nan)
    flags = frame[list(FLAGS)].to_numpy(dtype="float64", na_value=np.nan) if check_flags else None
    bad, bad_reason, bad_detail = row_problems(values, column_rules(tuple(columns)), flags)
    reason = np.full(len(frame), "", dtype=object)
    detail = np.full(len(frame), "", dtype=object)
    reason[bad] = bad_reason
    detail[bad] = bad_detail
    return RowCheck(pd.Series(reason, index=frame.index), pd.Series(detail, index=frame.index))


def validate_raw(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical names, required columns, numeric types. Raises ``SchemaError``.

    The optional columns (``specobjid``, ``dr7objid``, the profile columns) are kept when
    present; the profile columns only all together.
    """
    if frame.empty:
        raise SchemaError("the table has no rows")
    canonical = canonicalize(frame)
    model_columns(canonical.columns)
    columns = [*COLUMN_NAMES, *(name for name in OPTIONAL_NAMES if name in canonical.columns)]
    return coerce_types(canonical, columns)[columns]


def clean(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop unusable rows; return the kept rows and the number dropped per reason."""
    numeric = [name for name in frame.columns if name in BY_NAME and BY_NAME[name].kind in ("float", "count")]
    verdict = check_rows(frame, numeric, check_flags=True)
    return frame[verdict.ok].reset_index(drop=True), verdict.counts()


def label(
    frame: pd.DataFrame, rule: str = "gz1_flags", threshold: float = 0.8
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into labelled (with a ``label`` column) and unlabelled ones."""
    if rule == "gz1_flags":
        elliptical = frame["elliptical"] == 1
        spiral = frame["spiral"] == 1
    elif rule == "debiased_fraction":
        elliptical = frame["p_el_debiased"] > threshold
        spiral = frame["p_cs_debiased"] > threshold
    else:
        raise SchemaError(f"labels.rule: unknown rule {rule!r}")
    labelled_mask = elliptical ^ spiral
    labelled = frame[labelled_mask].copy()
    labelled[LABEL] = np.where(elliptical[labelled_mask], LABEL_ELLIPTICAL, LABEL_SPIRAL)
    return labelled.reset_index(drop=True), frame[~labelled_mask].reset_index(drop=True)


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    sizes: dict[str, int] = field(default_factory=dict)


def split(labelled: pd.DataFrame, train: float, validation: float, test: float, seed: int) -> Split:
    """Stratified train/validation/test split, deterministic for the same input and seed.

    Rows of one photometric object stay on one side: SkyServer rows (those with a
    ``specobjid``) are split by ``objid``, since two GZ1 rows can share one object and its
    photometry. The snapshot's ids are rounded, not a key: its rows are split one by one.
    """
    # imported here: scoring uses this module's checks, and a classify client stays sklearn-free
    from sklearn.model_selection import train_test_split

    counts = labelled[LABEL].value_counts()
    if len(counts) < 2:
        raise SchemaError(f"label: need both classes to split, found {counts.to_dict()}")
    if counts.min() < 3:
        raise SchemaError(f"label: need at least 3 rows per class to split, found {counts.to_dict()}")
    ordered = labelled.sort_values(list(labelled.columns), kind="mergesort").reset_index(drop=True)
    grouped = ROW_KEY in ordered.columns
    second = ordered[OBJID].duplicated() if grouped else pd.Series(False, index=ordered.index)
    heads = ordered[~second]  # one row per object: what is split, stratified by its label
    # whole row counts: a fraction of the remainder (validation / (train + validation)) rounds up
    # in scikit-learn and moves a row from train to validation (300 rows gave 239/31/30)
    n_test = max(len(counts), round(len(heads) * test))
    n_validation = max(len(counts), round(len(heads) * validation))
    rest, test_part = train_test_split(heads, test_size=n_test, stratify=heads[LABEL], random_state=seed)
    train_part, validation_part = train_test_split(
        rest, test_size=n_validation, stratify=rest[LABEL], random_state=seed
    )
    others = ordered[second]  # the second GZ1 row of an object joins the first one's side
    parts = {
        name: (
            pd.concat([part, others[others[OBJID].isin(part[OBJID])]]) if len(others) else part
        ).reset_index(drop=True)
        for name, part in (("train", train_part), ("validation", validation_part), ("test", test_part))
    }
    return Split(**parts, sizes={name: len(part) for name, part in parts.items()})


def step_counts(
    raw_rows: int,
    kept: pd.DataFrame,
    dropped: dict[str, int],
    labelled: pd.DataFrame,
    unlabelled: pd.DataFrame,
) -> dict[str, int]:
    """Rows left after each data step, as reported by every flow that reads a table."""
    return {
        "raw": raw_rows,
        "clean": len(kept),
        "dropped": sum(dropped.values()),
        "labelled": len(labelled),
        "unlabelled": len(unlabelled),
    }


def prepared_counts(
    raw_rows: int,
    kept: pd.DataFrame,
    dropped: dict[str, int],
    labelled: pd.DataFrame,
    unlabelled: pd.DataFrame,
    parts: Split,
    source_stages: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """The source's own stages (SkyServer's joins), rows after each step, labelled rows per
    class, and the split sizes."""
    return {
        **(source_stages or {}),
        **step_counts(raw_rows, kept, dropped, labelled, unlabelled),
        **{f"labelled_{name}": int(n) for name, n in labelled[LABEL].value_counts().items()},
        **parts.sizes,
    }


def digest(frame: pd.DataFrame) -> str:
    """A content hash of a table, stable across runs (row order included)."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    columns = ",".join(map(str, frame.columns)).encode()
    return hashlib.sha256(columns + hashed.tobytes()).hexdigest()[:16]


def export_tables(labelled: pd.DataFrame, unlabelled: pd.DataFrame, parts: Split) -> dict[str, pd.DataFrame]:
    """The tables a user can start from, by file stem, in the input's columns (GZ1 flags included).

    ``test`` is the split the champion is evaluated on and never trained on: a labelled batch
    for ``galaxy monitor``; ``unlabelled`` is what ``galaxy classify`` is for.
    """
    tables = {
        "labelled": labelled,
        "unlabelled": unlabelled,
        "train": parts.train,
        "validation": parts.validation,
        "test": parts.test,
    }
    return {stem: frame.drop(columns=[LABEL], errors="ignore") for stem, frame in tables.items()}


@dataclass(frozen=True)
class PreparedData:
    """What the data flow hands on: the split, the unlabelled rows and the story of each step."""

    source: str
    counts: dict[str, int]
    dropped: dict[str, int]
    split: Split
    unlabelled: pd.DataFrame
    digest: str
    exported: dict[str, int] = field(default_factory=dict)  # file written -> its rows (data.export_dir)


def model_input(
    frame: pd.DataFrame, columns: Sequence[str] = FEATURE_COLUMNS, max_listed: int = 5
) -> np.ndarray:
    """Check rows sent for scoring a model that takes ``columns``; raise ``SchemaError`` naming
    each bad field, else return their values (float64, one column per name, in that order)."""
    if len(frame) == 0:
        raise SchemaError("no records: send at least one row")
    names = tuple(columns)
    values = _model_values(frame, names)
    bad, _, detail = row_problems(values, column_rules(names))
    if len(bad):
        rows = frame.index[bad[:max_listed]]
        listed = "; ".join(f"row {row}: {message}" for row, message in zip(rows, detail, strict=False))
        more = f" (and {len(bad) - max_listed} more)" if len(bad) > max_listed else ""
        raise SchemaError(f"{len(bad)} invalid row(s): {listed}{more}")
    return values


def _model_values(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """``columns`` of ``frame`` as float64. A table of exactly those columns, all numbers (what
    MLflow's schema enforcement hands the model), is read in one step; any other goes through
    the canonical names and the type checks."""
    if tuple(frame.columns) == columns:
        values = frame.to_numpy()
        # one float64 array only when every column is a non-boolean number (bool or text give
        # object arrays, all-integer tables int64: those take the checked path)
        if values.dtype == np.float64:
            return values
    typed = coerce_types(canonicalize(frame, columns), columns)
    return typed[list(columns)].to_numpy(dtype="float64", na_value=np.nan)
