"""Rows of a catalogue to classify: parse ids, check values, keep the unlabelled (pure)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from galaxy_morphology.core.prepare import check_rows
from galaxy_morphology.core.schema import FEATURE_COLUMNS

OBJID = "objid"
UNCERTAIN = "uncertain"
NOT_A_NUMBER = "not_a_number"
INVALID_OBJID = "invalid_objid"


def required_columns(only_unlabelled: bool, columns: Sequence[str] = FEATURE_COLUMNS) -> list[str]:
    """The id, the model's input ``columns`` and, for unlabelled rows, the flag."""
    return [OBJID, *columns, *([UNCERTAIN] if only_unlabelled else [])]


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


def check_chunk(
    chunk: pd.DataFrame, columns: Sequence[str] = FEATURE_COLUMNS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a chunk into scoreable rows (objid + the model's ``columns``, float64) and rejects."""
    chunk = chunk.reset_index(drop=True)
    reason = pd.Series("", index=chunk.index, dtype=object)
    detail = pd.Series("", index=chunk.index, dtype=object)
    ids, bad_ids = parse_objid(chunk[OBJID])
    features = pd.DataFrame(index=chunk.index)
    for name in columns:
        values = chunk[name]
        if pd.api.types.is_bool_dtype(values):
            values = values.astype("float64")
        if not pd.api.types.is_numeric_dtype(values):
            numeric = pd.to_numeric(values, errors="coerce")
            text = values.astype("string").str.strip()
            not_number = numeric.isna() & values.notna() & (text != "").fillna(False)
            fresh = not_number & (reason == "")
            if fresh.any():
                reason[fresh] = NOT_A_NUMBER
                detail[fresh] = [f"{name}: expected a number, found {value!r}" for value in values[fresh]]
            values = numeric
        features[name] = values.astype("float64")
    fresh = bad_ids & (reason == "")
    reason[fresh] = INVALID_OBJID
    detail[fresh] = [f"objid: not a whole number ({value!r})" for value in chunk.loc[fresh, OBJID]]
    verdict = check_rows(features, columns, check_flags=False)
    fresh = (verdict.reason != "") & (reason == "")
    reason[fresh] = verdict.reason[fresh]
    detail[fresh] = verdict.detail[fresh]
    ok = reason == ""
    good = features[ok].reset_index(drop=True)
    good.insert(0, OBJID, ids[ok].astype("int64").to_numpy())
    rejects = pd.DataFrame({OBJID: ids[~ok], "reason": reason[~ok], "detail": detail[~ok]})
    return good, rejects.reset_index(drop=True)


def keep_unlabelled(chunk: pd.DataFrame) -> pd.DataFrame:
    """Rows whose GZ1 ``uncertain`` flag is 1 (anything else counts as labelled)."""
    flag = pd.to_numeric(chunk[UNCERTAIN], errors="coerce")
    return chunk[(flag == 1).to_numpy()]
