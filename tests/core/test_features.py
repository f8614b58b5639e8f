from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galaxy_morphology.core.features import (
    FEATURE_NAMES,
    PROFILE_FEATURE_NAMES,
    CatalogueFeatures,
    catalogue_features,
    input_columns,
    luminosity_distance_mpc,
)
from galaxy_morphology.core.schema import FEATURE_COLUMNS, PROFILE_COLUMNS
from tests.factories import raw_frame


def test_features_have_one_column_per_name_and_are_finite() -> None:
    frame = raw_frame(5, 5, 0)
    values = catalogue_features(frame)
    assert values.shape == (10, len(FEATURE_NAMES))
    assert np.isfinite(values).all()


def test_colours_are_magnitude_differences() -> None:
    frame = raw_frame(2, 2, 0)
    values = catalogue_features(frame)
    column = {name: values[:, i] for i, name in enumerate(FEATURE_NAMES)}
    np.testing.assert_allclose(column["u_g"], frame["mag_u"] - frame["mag_g"])
    np.testing.assert_allclose(column["g_r"], frame["mag_g"] - frame["mag_r"])
    np.testing.assert_allclose(column["r_i"], frame["mag_r"] - frame["mag_i"])
    np.testing.assert_allclose(column["i_z"], frame["mag_i"] - frame["mag_z"])
    np.testing.assert_allclose(column["deV_exp_radius_ratio"], frame["deVRad_r"] / frame["expRad_r"])


def test_distance_grows_with_redshift_and_is_near_hubble_law_at_low_z() -> None:
    distances = luminosity_distance_mpc(np.array([0.01, 0.05, 0.1, 0.2]))
    assert np.all(np.diff(distances) > 0)
    assert distances[0] == pytest.approx(299_792.458 * 0.01 / 70.0, rel=0.01)


def test_near_zero_and_slightly_negative_redshift_stay_finite() -> None:
    frame = raw_frame(2, 0, 0)
    frame.loc[0, "redshift"] = -0.005
    frame.loc[1, "redshift"] = 0.0
    assert np.isfinite(catalogue_features(frame)).all()


def test_transformer_takes_raw_columns_and_ignores_labels_and_ids() -> None:
    frame = raw_frame(3, 3, 0)
    step = CatalogueFeatures().fit(frame)
    assert list(step.get_feature_names_out()) == list(FEATURE_NAMES)
    np.testing.assert_array_equal(step.transform(frame), step.transform(frame[list(FEATURE_COLUMNS)]))


def test_transformer_refuses_missing_feature_column() -> None:
    with pytest.raises(ValueError, match="stellar_mass"):
        CatalogueFeatures().fit(raw_frame(2, 2, 0).drop(columns=["stellar_mass"]))


def profiled(frame: pd.DataFrame) -> pd.DataFrame:
    n = len(frame)
    return frame.assign(
        fracDeV_r=np.linspace(0.0, 1.0, n),
        petroR50_r=2.0,
        petroR90_r=np.linspace(4.0, 6.5, n),
        lnLDeV_r=np.linspace(-5000.0, -100.0, n),
        lnLExp_r=-1000.0,
    )


def test_profile_features_when_the_table_has_the_profile_columns() -> None:
    frame = profiled(raw_frame(3, 3, 0))
    step = CatalogueFeatures().fit(frame)
    assert input_columns(step) == (*FEATURE_COLUMNS, *PROFILE_COLUMNS)
    assert list(step.get_feature_names_out()) == [*FEATURE_NAMES, *PROFILE_FEATURE_NAMES]
    values = step.transform(frame)
    column = {name: values[:, i] for i, name in enumerate(step.get_feature_names_out())}
    np.testing.assert_allclose(column["concentration_r"], frame["petroR90_r"] / 2.0)
    np.testing.assert_allclose(column["fracDeV_r"], frame["fracDeV_r"])
    difference = frame["lnLDeV_r"] + 1000.0
    np.testing.assert_allclose(
        column["lnL_dev_minus_exp_r"], np.sign(difference) * np.log1p(np.abs(difference))
    )
    np.testing.assert_array_equal(values[:, : len(FEATURE_NAMES)], catalogue_features(frame))


def test_the_step_takes_the_columns_it_was_fitted_on() -> None:
    plain = CatalogueFeatures().fit(raw_frame(3, 3, 0))
    assert input_columns(plain) == FEATURE_COLUMNS  # profile columns seen later are ignored
    assert plain.transform(profiled(raw_frame(3, 3, 0))).shape == (6, len(FEATURE_NAMES))
    with_profiles = CatalogueFeatures().fit(profiled(raw_frame(3, 3, 0)))
    with pytest.raises(ValueError, match=r"missing feature column\(s\): \['fracDeV_r'\]"):
        with_profiles.transform(profiled(raw_frame(3, 3, 0)).drop(columns=["fracDeV_r"]))
    with pytest.raises(ValueError, match=r"profile columns come together: .*missing \['lnLExp_r'\]"):
        CatalogueFeatures().fit(profiled(raw_frame(3, 3, 0)).drop(columns=["lnLExp_r"]))


def test_the_step_reads_an_array_by_position_as_it_reads_a_table_by_name() -> None:
    frame = profiled(raw_frame(3, 3, 0))
    for step in (CatalogueFeatures().fit(raw_frame(3, 3, 0)), CatalogueFeatures().fit(frame)):
        columns = list(input_columns(step))
        by_name = step.transform(frame)  # every raw column, in the table's order
        np.testing.assert_array_equal(step.transform(frame[columns].to_numpy()), by_name)
        np.testing.assert_array_equal(step.transform(frame[columns]), by_name)
        with pytest.raises(
            ValueError, match=rf"expected an array of {len(columns)} columns .* got shape \(6, 3\)"
        ):
            step.transform(frame[columns[:3]].to_numpy())
