"""Rows of a catalogue to classify: row numbers, pass-through columns, value checks (pure).

Every output row carries ``input_row`` (its position in the input, counted from 0 over the
parts in order) and the pass-through columns the user chose (by default ``objid``,
``specobjid`` when present, ``ra`` and ``dec``), so predictions and rejects join back to
the input even where ids repeat (the shared snapshot's objids are rounded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from galaxy_morphology.core.prepare import check_rows
from galaxy_morphology.core.schema import FEATURE_COLUMNS

OBJID = "objid"
INPUT_ROW = "input_row"
UNCERTAIN = "uncertain"
NOT_A_NUMBER = "not_a_number"
OPTIONAL = "?"  # a pass-through name ending in it is carried when the input has the column
# SDSS ids: whole numbers of up to 19 digits, read as text so that no digit is lost
ID_COLUMNS = ("objid", "specobjid", "dr7objid")
OUTPUT_NAMES = (INPUT_ROW, "label", "p_elliptical", "model_name", "model_version", "reason", "detail")

Kind = Literal["id", "int", "float", "bool", "text"]


@dataclass(frozen=True)
class PassThrough:
    """One column copied from the input to the outputs, with the type it has there."""

    name: str
    kind: Kind


def split_optional(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Pass-through names as (required, carried when present): ``specobjid?`` is the latter."""
    required = [name for name in names if not name.endswith(OPTIONAL)]
    optional = [name.removesuffix(OPTIONAL) for name in names if name.endswith(OPTIONAL)]
    return required, optional


def required_columns(
    only_unlabelled: bool, columns: Sequence[str] = FEATURE_COLUMNS, pass_through: Sequence[str] = (OBJID,)
) -> list[str]:
    """The pass-through columns, the model's input ``columns`` and, for unlabelled rows, the flag."""
    wanted = [*pass_through, *columns, *([UNCERTAIN] if only_unlabelled else [])]
    return list(dict.fromkeys(wanted))


def kind_of(name: str, values: pd.Series) -> Kind:
    """How a pass-through column is typed in the outputs, from its values in the first chunk."""
    if name in ID_COLUMNS:
        return "id"
    if pd.api.types.is_bool_dtype(values):
        return "bool"
    if pd.api.types.is_integer_dtype(values):
        return "int"
    if pd.api.types.is_numeric_dtype(values):
        return "float"
    return "text"


def parse_objid(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Ids as nullable int64 and a mask of the rows whose id is unusable."""
    if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
        ids = values.astype("Int64")
        return ids, ids.isna()
    if pd.api.types.is_float_dtype(values):
        whole = values.notna() & np.isfinite(values) & (values == np.round(values))
        ids = pd.Series(pd.NA, index=values.index, dtype="Int64")
        ids[whole] = values[whole].astype("int64")
        return ids, ~whole
    text = values.astype("string").str.strip()
    integer = text.str.fullmatch(r"[+-]?\d{1,19}").fillna(False).astype(bool)
    ids = pd.Series(pd.NA, index=values.index, dtype="Int64")
    if integer.any():
        parsed = pd.to_numeric(text[integer].astype(object).map(int), errors="coerce")
        ids[integer] = parsed
    return ids, ids.isna()


def _given(values: pd.Series) -> pd.Series:
    """Cells holding something (not NaN, not empty text)."""
    text = values.astype("string").str.strip()
    return (values.notna() & (text != "").fillna(False)).astype(bool)


_TRUTH = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}


def convert_pass_through(values: pd.Series, column: PassThrough) -> tuple[pd.Series, pd.Series, str]:
    """``values`` as ``column.kind``, the mask of unusable cells, and the reason for them.

    An id must be a whole number in every row; other columns may be empty (carried as
    null), but a cell that cannot be read as the column's type makes its row a reject.
    """
    name, kind = column.name, column.kind
    none = pd.Series(False, index=values.index)
    if kind == "id":
        ids, bad = parse_objid(values)
        return ids, bad, f"invalid_{name}"
    if kind == "text":
        return values.astype("string"), none, ""
    if kind == "bool":
        if pd.api.types.is_bool_dtype(values):
            return values.astype("boolean"), none, ""
        mapped = values.astype("string").str.strip().str.lower().map(_TRUTH).astype("boolean")
        return mapped, mapped.isna() & _given(values), NOT_A_NUMBER
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers, bad = values.astype("float64"), none
    else:
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        bad = numbers.isna() & _given(values)
    if kind == "float":
        return numbers, bad, NOT_A_NUMBER
    if pd.api.types.is_integer_dtype(values):
        return values.astype("Int64"), none, NOT_A_NUMBER
    whole = numbers.notna() & np.isfinite(numbers) & (numbers == np.round(numbers))
    ints = pd.Series(pd.NA, index=values.index, dtype="Int64")
    ints[whole] = numbers[whole].astype("int64")
    return ints, bad | (numbers.notna() & ~whole), NOT_A_NUMBER


def check_chunk(
    chunk: pd.DataFrame,
    columns: Sequence[str] = FEATURE_COLUMNS,
    pass_through: Sequence[PassThrough] = (PassThrough(OBJID, "id"),),
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split a chunk into scoreable rows and rejects.

    ``chunk`` holds ``input_row``, the pass-through columns and the model's ``columns``.
    Returns, for the scoreable rows, ``input_row`` with the pass-through columns (typed)
    and the model's columns (float64), row for row; and the rejects: ``input_row``, the
    pass-through columns, ``reason`` and ``detail`` (the row's first problem, its field named).
    """
    chunk = chunk.reset_index(drop=True)
    reason = pd.Series("", index=chunk.index, dtype=object)
    detail = pd.Series("", index=chunk.index, dtype=object)

    def flag(bad: pd.Series, why: str, name: str, expected: str) -> None:
        fresh = bad & (reason == "")
        if fresh.any():
            reason[fresh] = why
            detail[fresh] = [
                f"{name}: expected {expected}, found {value!r}" for value in chunk.loc[fresh, name]
            ]

    carried = pd.DataFrame({INPUT_ROW: chunk[INPUT_ROW].astype("int64")})
    for column in pass_through:
        values, bad, why = convert_pass_through(chunk[column.name], column)
        carried[column.name] = values
        flag(
            bad,
            why,
            column.name,
            "a whole number" if column.kind in ("id", "int") else f"a {column.kind} value",
        )
    features = pd.DataFrame(index=chunk.index)
    for name in columns:
        values = chunk[name]
        if pd.api.types.is_bool_dtype(values):
            values = values.astype("float64")
        if not pd.api.types.is_numeric_dtype(values):
            numeric = pd.to_numeric(values, errors="coerce")
            flag(numeric.isna() & _given(values), NOT_A_NUMBER, name, "a number")
            values = numeric
        features[name] = values.astype("float64")
    verdict = check_rows(features, columns, check_flags=False)
    fresh = (verdict.reason != "") & (reason == "")
    reason[fresh] = verdict.reason[fresh]
    detail[fresh] = verdict.detail[fresh]
    ok = (reason == "").to_numpy()
    rejects = carried[~ok].assign(reason=reason[~ok], detail=detail[~ok])
    return (
        carried[ok].reset_index(drop=True),
        features[ok].reset_index(drop=True),
        rejects.reset_index(drop=True),
    )


def keep_unlabelled(chunk: pd.DataFrame) -> pd.DataFrame:
    """Rows whose GZ1 ``uncertain`` flag is 1 (anything else counts as labelled)."""
    flag = pd.to_numeric(chunk[UNCERTAIN], errors="coerce")
    return chunk[(flag == 1).to_numpy()]
