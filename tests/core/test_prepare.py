"""Pure table logic: canonical names, types, the drop rules, labels and the split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galaxy_morphology.core.prepare import (
    DROP_REASONS,
    LABEL,
    SchemaError,
    canonicalize,
    check_rows,
    clean,
    coerce_types,
    column_rules,
    first_problems,
    label,
    model_input,
    split,
    usable_rows,
    validate_raw,
)
from galaxy_morphology.core.schema import COLUMN_NAMES, FEATURE_COLUMNS, MAGNITUDES, PROFILE_COLUMNS
from tests.factories import catalogue, raw_frame, with_values

# --------------------------------------------------------------------------- canonicalize


def test_canonicalize_renames_alias_and_any_case(tiny_raw: pd.DataFrame) -> None:
    aliases = {"objid": "id", "mag_r": "MAG_R", "deVAB_r": "devab_r", "votes": "NVOTE"}
    renamed = tiny_raw.rename(columns=aliases)
    result = canonicalize(renamed)
    assert list(result.columns) == list(COLUMN_NAMES)
    assert result["objid"].tolist() == tiny_raw["objid"].tolist()


def test_canonicalize_missing_column_is_named(tiny_raw: pd.DataFrame) -> None:
    with pytest.raises(SchemaError) as error:
        canonicalize(tiny_raw.drop(columns=["stellar_mass"]))
    message = str(error.value)
    assert "missing required column(s): 'stellar_mass'" in message
    assert "misnamed" not in message


def test_canonicalize_missing_magnitude_does_not_blame_a_present_one(tiny_raw: pd.DataFrame) -> None:
    # mag_u, mag_r ... are close to 'mag_g' but are genuine columns, not a misnamed mag_g
    with pytest.raises(SchemaError) as error:
        canonicalize(tiny_raw.drop(columns=["mag_g"]))
    assert str(error.value) == "missing required column(s): 'mag_g'"


def test_canonicalize_misnamed_column_gets_a_hint(tiny_raw: pd.DataFrame) -> None:
    with pytest.raises(SchemaError) as error:
        canonicalize(tiny_raw.rename(columns={"mag_g": "mag_gg"}))
    assert "'mag_g' (found 'mag_gg': misnamed?)" in str(error.value)


def test_canonicalize_two_columns_for_one_name(tiny_raw: pd.DataFrame) -> None:
    doubled = tiny_raw.assign(id=tiny_raw["objid"])
    with pytest.raises(SchemaError, match="same canonical name: \\['objid'\\]"):
        canonicalize(doubled)


def test_dr7objid_is_the_id_only_when_there_is_no_objid(tiny_raw: pd.DataFrame) -> None:
    only_dr7 = canonicalize(tiny_raw.rename(columns={"objid": "DR7OBJID"}))
    assert list(only_dr7.columns) == list(COLUMN_NAMES)
    both = canonicalize(tiny_raw.assign(dr7objid=tiny_raw["objid"] - 1))
    assert both["objid"].tolist() == tiny_raw["objid"].tolist()
    assert both["dr7objid"].tolist() == (tiny_raw["objid"] - 1).tolist()


def skyserver_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """SkyServer's optional columns: the spectrum id and the five profile columns."""
    n = len(frame)
    return frame.assign(
        specobjid=np.arange(n) + 299_489_952_322_315_264,
        fracDeV_r=np.linspace(0.1, 0.9, n),
        petroR50_r=2.0,
        petroR90_r=5.0,
        lnLDeV_r=-300.0,
        lnLExp_r=-200.0,
    )


def test_validate_raw_keeps_optional_columns_and_refuses_some_profile_columns(tiny_raw: pd.DataFrame) -> None:
    table = validate_raw(skyserver_rows(tiny_raw).rename(columns={"fracDeV_r": "FRACDEV_R"}))
    assert list(table.columns) == [*COLUMN_NAMES, "specobjid", *PROFILE_COLUMNS]
    assert table["specobjid"].dtype == "int64"
    with pytest.raises(SchemaError) as error:
        validate_raw(skyserver_rows(tiny_raw).drop(columns=["lnLExp_r", "petroR90_r"]))
    assert "missing ['petroR90_r', 'lnLExp_r']" in str(error.value)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"fracDeV_r": 1.2}, "out_of_physical_range"),
        ({"petroR50_r": 0.0}, "non_positive_radius"),
        ({"lnLDeV_r": -9999.0}, "sentinel_-9999"),
        ({"petroR90_r": np.nan}, "missing_value"),
    ],
)
def test_clean_checks_the_profile_columns(
    tiny_raw: pd.DataFrame, values: dict[str, float], reason: str
) -> None:
    frame = validate_raw(with_values(skyserver_rows(tiny_raw), 2, **values))
    kept, dropped = clean(frame)
    assert len(kept) == len(frame) - 1 and dropped[reason] == 1


# --------------------------------------------------------------------------- types


def test_coerce_types_string_in_numeric_column(tiny_raw: pd.DataFrame) -> None:
    frame = tiny_raw.astype({"mag_r": object})
    frame.loc[3, "mag_r"] = "bright"
    with pytest.raises(SchemaError) as error:
        coerce_types(frame)
    message = str(error.value)
    assert "column 'mag_r'" in message
    assert "'bright'" in message
    assert "row 3" in message


def test_coerce_types_numeric_strings_and_blanks(tiny_raw: pd.DataFrame) -> None:
    frame = tiny_raw.astype(str)
    frame.loc[2, "redshift"] = " "
    typed = coerce_types(frame)
    assert typed["objid"].dtype == np.int64
    assert typed["objid"].tolist() == tiny_raw["objid"].tolist()  # 19-digit ids stay exact
    assert typed["mag_r"].dtype == np.float64
    assert np.isnan(typed.loc[2, "redshift"])


def test_coerce_types_refuses_empty_id(tiny_raw: pd.DataFrame) -> None:
    frame = with_values(tiny_raw, 1, objid=np.nan)
    with pytest.raises(SchemaError, match="column 'objid': empty id in row 1"):
        coerce_types(frame)


def test_validate_raw_refuses_an_empty_table(tiny_raw: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="no rows"):
        validate_raw(tiny_raw.iloc[0:0])


def test_validate_raw_orders_columns_canonically(tiny_raw: pd.DataFrame) -> None:
    shuffled = tiny_raw[list(reversed(tiny_raw.columns))].assign(extra=1)
    assert list(validate_raw(shuffled).columns) == list(COLUMN_NAMES)


# --------------------------------------------------------------------------- clean

GOOD_ROWS = 9  # raw_frame(): 4 spirals, 4 ellipticals, 1 uncertain


def dirty(**values: object) -> pd.DataFrame:
    """The valid table with its row 2 spoiled by ``values``."""
    return validate_raw(with_values(raw_frame(), 2, **values))


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"mag_i": np.nan}, "missing_value"),
        ({"ra": np.inf}, "missing_value"),
        ({"stellar_mass": -9999.0}, "sentinel_-9999"),
        ({name: 0.0 for name in ("mag_u", "mag_g", "mag_r", "mag_i", "mag_z")}, "all_zero_magnitudes"),
        ({"deVAB_r": 0.0}, "axis_ratio_outside_(0,1]"),
        ({"expAB_r": 1.2}, "axis_ratio_outside_(0,1]"),
        ({"deVRad_r": 0.0}, "non_positive_radius"),
        ({"expRad_r": -1.5}, "non_positive_radius"),
        ({"redshift": -0.02}, "redshift_below_-0.01"),
        ({"mag_g": 60.0}, "out_of_physical_range"),
        ({"dec": 95.0}, "out_of_physical_range"),
        ({"p_el_debiased": 1.3}, "out_of_physical_range"),
        ({"spiral": 1, "elliptical": 1}, "invalid_label_flags"),
        ({"spiral": 0, "elliptical": 0, "uncertain": 0}, "invalid_label_flags"),
        ({"uncertain": 2}, "invalid_label_flags"),
    ],
)
def test_clean_drops_row_for_reason(values: dict[str, object], reason: str) -> None:
    table = dirty(**values)
    spoiled_objid = table.loc[2, "objid"]
    kept, dropped = clean(table)
    assert list(dropped) == list(DROP_REASONS)
    assert dropped == {name: int(name == reason) for name in DROP_REASONS}
    assert len(kept) == GOOD_ROWS - 1
    assert spoiled_objid not in set(kept["objid"])
    expected = table.drop(index=2).reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, expected)


def test_clean_keeps_slightly_negative_redshift() -> None:
    kept, dropped = clean(dirty(redshift=-0.005))
    assert len(kept) == GOOD_ROWS
    assert sum(dropped.values()) == 0
    assert kept.loc[2, "redshift"] == -0.005


def test_clean_counts_each_row_once_under_its_first_reason() -> None:
    frame = raw_frame(n_spiral=6, n_elliptical=4, n_uncertain=2)
    frame = with_values(frame, 0, mag_u=np.nan, deVAB_r=1.5)  # missing wins over axis ratio
    frame = with_values(frame, 1, stellar_mass=-9999.0, mag_r=0.0)  # sentinel wins
    frame = with_values(frame, 2, deVRad_r=-9999.0)
    frame = with_values(frame, 3, redshift=-0.5, mag_z=70.0)  # redshift rule before range
    frame = with_values(frame, 11, elliptical=1)  # uncertain + elliptical
    kept, dropped = clean(validate_raw(frame))
    assert dropped == {
        "missing_value": 1,
        "sentinel_-9999": 2,
        "all_zero_magnitudes": 0,
        "axis_ratio_outside_(0,1]": 0,
        "non_positive_radius": 0,
        "redshift_below_-0.01": 1,
        "out_of_physical_range": 0,
        "invalid_label_flags": 1,
    }
    assert len(kept) == 12 - 5
    assert kept["objid"].tolist() == frame["objid"].iloc[4:11].tolist()


def test_clean_keeps_a_valid_table_whole(tiny_raw: pd.DataFrame) -> None:
    table = validate_raw(tiny_raw)
    kept, dropped = clean(table)
    pd.testing.assert_frame_equal(kept, table)
    assert set(dropped.values()) == {0}


# --------------------------------------------------------------------------- label


def test_label_by_gz1_flags(tiny_raw: pd.DataFrame) -> None:
    labelled, unlabelled = label(validate_raw(tiny_raw), "gz1_flags")
    assert labelled[LABEL].tolist() == ["spiral"] * 4 + ["elliptical"] * 4
    assert labelled["objid"].tolist() == tiny_raw["objid"].iloc[:8].tolist()
    assert unlabelled["objid"].tolist() == [tiny_raw["objid"].iloc[8]]
    assert LABEL not in unlabelled.columns


def test_label_by_debiased_fraction() -> None:
    frame = validate_raw(raw_frame(n_spiral=1, n_elliptical=1, n_uncertain=0))
    # the flags say spiral, elliptical; the fractions say otherwise for the extra rows
    extra = frame.iloc[[0, 0, 0, 0]].copy()
    extra["objid"] = [11, 12, 13, 14]
    extra["p_el_debiased"] = [0.81, 0.80, 0.10, 0.50]
    extra["p_cs_debiased"] = [0.19, 0.20, 0.85, 0.50]
    table = pd.concat([frame, extra], ignore_index=True)
    labelled, unlabelled = label(table, "debiased_fraction", threshold=0.8)
    labels = dict(zip(labelled["objid"], labelled[LABEL], strict=True))
    assert labels[frame.loc[0, "objid"]] == "spiral"
    assert labels[frame.loc[1, "objid"]] == "elliptical"
    assert labels[11] == "elliptical"  # 0.81 > 0.8 even though the spiral flag is set
    assert labels[13] == "spiral"
    assert sorted(unlabelled["objid"]) == [12, 14]  # 0.80 is not above the threshold
    # with the flags rule the same rows are all spirals but the elliptical one
    flagged, none = label(table, "gz1_flags")
    assert (flagged[LABEL] == "spiral").sum() == 5
    assert none.empty


def test_label_unknown_rule(tiny_raw: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match=r"labels\.rule: unknown rule 'votes'"):
        label(tiny_raw, "votes")


# --------------------------------------------------------------------------- split


def labelled_table(n_rows: int = 200, seed: int = 3) -> pd.DataFrame:
    labelled, _ = label(validate_raw(catalogue(n_rows, seed=seed)))
    return labelled


def test_split_sizes_80_10_10() -> None:
    labelled = labelled_table(400)  # 300 labelled: 200 spirals, 100 ellipticals
    assert len(labelled) == 300
    parts = split(labelled, 0.8, 0.1, 0.1, seed=42)
    assert parts.sizes == {"train": 240, "validation": 30, "test": 30}
    assert [len(parts.train), len(parts.validation), len(parts.test)] == [240, 30, 30]
    together = pd.concat([parts.train, parts.validation, parts.test])
    assert sorted(together["objid"]) == sorted(labelled["objid"])  # a partition: no row lost or doubled


def test_split_is_stratified() -> None:
    parts = split(labelled_table(400), 0.8, 0.1, 0.1, seed=42)
    for part, size in ((parts.train, 240), (parts.validation, 30), (parts.test, 30)):
        share = (part[LABEL] == "elliptical").mean()
        assert share == pytest.approx(1 / 3, abs=1 / size)


def test_split_is_deterministic_for_same_rows_and_seed() -> None:
    labelled = labelled_table()
    first = split(labelled, 0.8, 0.1, 0.1, seed=7)
    again = split(labelled.copy(), 0.8, 0.1, 0.1, seed=7)
    shuffled = split(labelled.sample(frac=1.0, random_state=99), 0.8, 0.1, 0.1, seed=7)
    for part in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(getattr(first, part), getattr(again, part))
        pd.testing.assert_frame_equal(getattr(first, part), getattr(shuffled, part))


def test_split_differs_for_another_seed() -> None:
    labelled = labelled_table()
    first = split(labelled, 0.8, 0.1, 0.1, seed=7)
    other = split(labelled, 0.8, 0.1, 0.1, seed=8)
    assert first.sizes == other.sizes
    assert set(first.test["objid"]) != set(other.test["objid"])


def test_split_needs_both_classes() -> None:
    labelled = labelled_table()
    with pytest.raises(SchemaError, match="need both classes"):
        split(labelled[labelled[LABEL] == "spiral"], 0.8, 0.1, 0.1, seed=1)


def test_split_needs_three_rows_per_class() -> None:
    labelled = labelled_table()
    spirals = labelled[labelled[LABEL] == "spiral"]
    few = pd.concat([spirals, labelled[labelled[LABEL] == "elliptical"].head(2)])
    with pytest.raises(SchemaError, match="at least 3 rows per class"):
        split(few, 0.8, 0.1, 0.1, seed=1)


def test_split_keeps_the_rows_of_one_object_together() -> None:
    """SkyServer rows (with a specobjid): two GZ1 rows of one objid land on one side."""
    labelled = skyserver_rows(labelled_table(400))
    first = np.arange(0, len(labelled) - 1, 3)  # each shares its objid with the row after it
    labelled.loc[first + 1, "objid"] = labelled.loc[first, "objid"].to_numpy()
    assert labelled["objid"].duplicated().sum() == 100
    parts = split(labelled, 0.8, 0.1, 0.1, seed=42)
    sides = {name: set(getattr(parts, name)["objid"]) for name in ("train", "validation", "test")}
    assert not sides["train"] & sides["validation"] and not sides["train"] & sides["test"]
    assert not sides["validation"] & sides["test"]
    together = pd.concat([parts.train, parts.validation, parts.test])
    assert sorted(together["specobjid"]) == sorted(labelled["specobjid"])  # no row lost or doubled
    assert parts.sizes["test"] >= 20 and parts.sizes["validation"] >= 20  # 10% of 200 objects, 1-2 rows each


def test_split_of_rows_without_specobjid_ignores_repeated_ids() -> None:
    """The snapshot's ids are rounded, not a key: its rows are split one by one."""
    labelled = labelled_table(400)
    labelled["objid"] = labelled["objid"] // 10 * 10  # like the snapshot: many rows share an id
    parts = split(labelled, 0.8, 0.1, 0.1, seed=42)
    assert parts.sizes == {"train": 240, "validation": 30, "test": 30}


# --------------------------------------------------------------------------- the rules in numpy


def edge_table(n_rows: int, columns: tuple[str, ...], seed: int) -> np.ndarray:
    """Valid values with cells replaced, at random, by every value a rule turns on."""
    rng = np.random.default_rng(seed)
    values = validate_raw(catalogue(n_rows, seed=seed))[list(columns)].to_numpy(dtype="float64", copy=True)
    edges = np.array(
        [np.nan, np.inf, -np.inf, -9999.0, -9999.05, -9998.9, 0.0, -0.0, 1.0, 1.0000001, -0.01, -0.0100001,
         5.0, 4.999, 40.0, 40.01, 300.0, 300.5, 1.5, -1.5, 7.0, 7.1, 14.0, 360.0]
    )  # fmt: skip
    spoiled = rng.random(values.shape) < 0.15
    values[spoiled] = rng.choice(edges, spoiled.sum())
    magnitudes = [columns.index(name) for name in MAGNITUDES]
    values[np.ix_(rng.random(n_rows) < 0.05, magnitudes)] = 0.0  # some rows with every magnitude 0
    return values


@pytest.mark.parametrize("columns", [COLUMN_NAMES[1:16], FEATURE_COLUMNS, FEATURE_COLUMNS[::-1]])
def test_the_quick_test_finds_exactly_the_rows_a_rule_names(columns: tuple[str, ...]) -> None:
    values = edge_table(2_000, columns, seed=len(columns))
    rules = column_rules(columns)
    reason, _ = first_problems(values, rules)
    assert 0 < (reason != "").sum() < len(values)  # the table has both kinds of rows
    np.testing.assert_array_equal(usable_rows(values, rules), reason == "")
    flags = np.random.default_rng(1).choice(
        [0.0, 1.0, 2.0, np.nan], size=(len(values), 3), p=[0.6, 0.3, 0.05, 0.05]
    )
    reason, _ = first_problems(values, rules, flags)
    np.testing.assert_array_equal(usable_rows(values, rules, flags), reason == "")


def test_check_rows_names_the_first_problem_of_each_bad_row_only() -> None:
    frame = validate_raw(catalogue(8)).set_index(pd.Index([f"g{i}" for i in range(8)]))
    frame = with_values(frame, "g2", mag_i=np.inf, deVAB_r=1.5)
    frame = with_values(frame, "g5", expRad_r=-1.0)
    verdict = check_rows(frame, FEATURE_COLUMNS, check_flags=False)
    assert verdict.reason[~verdict.ok].to_dict() == {"g2": "missing_value", "g5": "non_positive_radius"}
    assert verdict.detail["g2"] == "mag_i: infinite value"
    assert verdict.detail["g5"] == "expRad_r: radius -1 is not positive"
    assert (verdict.detail[verdict.ok] == "").all()


# --------------------------------------------------------------------------- model_input: what serving checks


def one_record(**values: object) -> pd.DataFrame:
    return with_values(raw_frame(1, 0, 0)[list(FEATURE_COLUMNS)].astype("float64"), 0, **values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mag_r": np.nan}, "1 invalid row(s): row 0: mag_r: missing value (NaN or empty)"),
        ({"mag_g": np.inf}, "1 invalid row(s): row 0: mag_g: infinite value"),
        ({"stellar_mass": -9999.0}, "1 invalid row(s): row 0: stellar_mass: -9999 sentinel"),
        ({name: 0.0 for name in MAGNITUDES}, "1 invalid row(s): row 0: mag_u..mag_z: all magnitudes are 0"),
        ({"deVAB_r": 1.5}, "1 invalid row(s): row 0: deVAB_r: axis ratio 1.5 outside (0, 1]"),
        ({"expAB_r": 0.0}, "1 invalid row(s): row 0: expAB_r: axis ratio 0 outside (0, 1]"),
        ({"deVRad_r": 0.0}, "1 invalid row(s): row 0: deVRad_r: radius 0 is not positive"),
        ({"redshift": -0.02}, "1 invalid row(s): row 0: redshift: redshift -0.02 below -0.01"),
        ({"mag_z": 41.0}, "1 invalid row(s): row 0: mag_z: value 41 outside physical range"),
        (
            {"stellar_mass": 4.0, "mag_r": np.nan},
            "1 invalid row(s): row 0: mag_r: missing value (NaN or empty)",
        ),
    ],
)
def test_model_input_names_the_field_and_the_problem(values: dict[str, float], message: str) -> None:
    with pytest.raises(SchemaError) as error:
        model_input(one_record(**values))
    assert str(error.value) == message


def test_model_input_lists_five_bad_rows_by_their_labels_and_counts_the_rest() -> None:
    frame = raw_frame(5, 4, 0)[list(FEATURE_COLUMNS)].set_axis(range(100, 109))
    frame["deVRad_r"] = [-1.0] * 7 + [2.0, 3.0]
    with pytest.raises(SchemaError) as error:
        model_input(frame)
    listed = "; ".join(f"row {row}: deVRad_r: radius -1 is not positive" for row in range(100, 105))
    assert str(error.value) == f"7 invalid row(s): {listed} (and 2 more)"


def test_model_input_refuses_an_empty_table_missing_columns_text_and_booleans() -> None:
    with pytest.raises(SchemaError, match=r"^no records: send at least one row$"):
        model_input(one_record().iloc[0:0])
    with pytest.raises(SchemaError, match=r"^missing required column\(s\): 'mag_r'$"):
        model_input(one_record().drop(columns=["mag_r"]))
    text = one_record().astype({"mag_r": object})
    text.loc[0, "mag_r"] = "bright"
    with pytest.raises(
        SchemaError, match=r"^column 'mag_r': expected numbers, found 'bright' \(row 0; 1 such"
    ):
        model_input(text)
    with pytest.raises(SchemaError, match=r"^column 'redshift': expected numbers, got booleans$"):
        model_input(one_record().assign(redshift=True))


def test_model_input_gives_the_values_in_the_models_column_order_whatever_the_table() -> None:
    rows = raw_frame(3, 3, 0)
    expected = rows[list(FEATURE_COLUMNS)].to_numpy(dtype="float64")
    exact = rows[list(FEATURE_COLUMNS)].astype("float64")
    shuffled = rows[list(reversed(rows.columns))]  # every raw column, in another order
    integers = exact.round().astype("int64").assign(deVAB_r=exact["deVAB_r"], expAB_r=exact["expAB_r"])
    aliased = exact.rename(columns={"redshift": "Z", "stellar_mass": "logmass"})
    for table in (exact, shuffled, aliased):
        values = model_input(table)
        assert values.dtype == np.float64 and values.shape == (6, len(FEATURE_COLUMNS))
        np.testing.assert_array_equal(values, expected)
    # numbers written as text are parsed (pandas' parser may differ in the last bit)
    np.testing.assert_allclose(model_input(exact.map(repr)), expected, rtol=1e-15)
    np.testing.assert_array_equal(model_input(integers), integers.to_numpy(dtype="float64"))
