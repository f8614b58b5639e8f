"""The feature step: catalogue columns in, physically motivated morphology features out.

Pure numpy: colours, sizes, shapes, concentration and surface-brightness proxies, and
luminosity-based quantities from a low-redshift distance approximation. When the training
table has SkyServer's profile columns, also the profile features (Banerji et al. 2010).

The step records at ``fit`` which raw columns it was given (``feature_names_in_``): that is
the model's input, read through :func:`input_columns` by the signature, serving and classify.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from galaxy_morphology.core.schema import FEATURE_COLUMNS, PROFILE_COLUMNS, SchemaError, model_columns

SPEED_OF_LIGHT_KM_S = 299_792.458
HUBBLE_CONSTANT = 70.0  # km/s/Mpc
DECELERATION_Q0 = -0.55  # flat LCDM, Omega_m = 0.3
ARCSEC_PER_RADIAN = 206_264.806
SUN_ABS_MAG_R = 4.65
MIN_REDSHIFT = 1e-3  # keeps distances finite for the few near-zero redshifts

FEATURE_NAMES: tuple[str, ...] = (
    "u_g",
    "g_r",
    "r_i",
    "i_z",
    "u_r",
    "mag_r",
    "abs_mag_r",
    "log_deVRad_r",
    "log_expRad_r",
    "deV_exp_radius_ratio",
    "deVAB_r",
    "expAB_r",
    "deV_exp_ab_difference",
    "log_size_kpc",
    "surface_brightness_r",
    "redshift",
    "stellar_mass",
    "log_mass_to_light_r",
)
# from PROFILE_COLUMNS: the deV weight, the concentration petroR90/petroR50 (about 2.3 for
# discs, above 2.6 for ellipticals) and the deV-minus-exp log-likelihood, signed-log scaled
# (its range is thousands; positive favours a bulge profile)
PROFILE_FEATURE_NAMES: tuple[str, ...] = ("fracDeV_r", "concentration_r", "lnL_dev_minus_exp_r")


def luminosity_distance_mpc(redshift: np.ndarray) -> np.ndarray:
    """Second-order expansion of the luminosity distance: about 1% accurate for z < 0.3."""
    z = np.clip(redshift, MIN_REDSHIFT, None)
    return SPEED_OF_LIGHT_KM_S * z / HUBBLE_CONSTANT * (1.0 + 0.5 * (1.0 - DECELERATION_Q0) * z)


# a table of raw columns: a DataFrame, or column name -> values
Table: TypeAlias = pd.DataFrame | Mapping[str, np.ndarray]


def profile_features(table: Table) -> np.ndarray:
    """Compute ``PROFILE_FEATURE_NAMES`` from ``PROFILE_COLUMNS``."""
    get = {name: np.asarray(table[name], dtype="float64") for name in PROFILE_COLUMNS}
    difference = get["lnLDeV_r"] - get["lnLExp_r"]
    return np.column_stack(
        (
            get["fracDeV_r"],
            get["petroR90_r"] / get["petroR50_r"],
            np.sign(difference) * np.log1p(np.abs(difference)),
        )
    )


def catalogue_features(table: Table) -> np.ndarray:
    """Compute ``FEATURE_NAMES`` from the raw catalogue columns (``FEATURE_COLUMNS``)."""
    get = {name: np.asarray(table[name], dtype="float64") for name in FEATURE_COLUMNS}
    u, g, r, i, z_mag = (get[f"mag_{band}"] for band in "ugriz")
    redshift = get["redshift"]
    dev_radius, exp_radius = get["deVRad_r"], get["expRad_r"]
    distance = luminosity_distance_mpc(redshift)
    abs_mag_r = r - 5.0 * np.log10(distance) - 25.0
    angular_distance = distance / (1.0 + np.clip(redshift, MIN_REDSHIFT, None)) ** 2
    size_kpc = dev_radius / ARCSEC_PER_RADIAN * angular_distance * 1_000.0
    surface_brightness = r + 2.5 * np.log10(2.0 * np.pi * dev_radius**2)
    log_mass_to_light = get["stellar_mass"] + 0.4 * (abs_mag_r - SUN_ABS_MAG_R)
    columns = (
        u - g,
        g - r,
        r - i,
        i - z_mag,
        u - r,
        r,
        abs_mag_r,
        np.log10(dev_radius),
        np.log10(exp_radius),
        dev_radius / exp_radius,
        get["deVAB_r"],
        get["expAB_r"],
        get["deVAB_r"] - get["expAB_r"],
        np.log10(size_kpc),
        surface_brightness,
        redshift,
        get["stellar_mass"],
        log_mass_to_light,
    )
    return np.column_stack(columns)


def raw_columns(X: pd.DataFrame | np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The columns ``names`` of ``X`` as float64 arrays, by name.

    A DataFrame is read by column name (in one step when it holds exactly ``names``); a
    2-D array is read by position, its columns in the order of ``names`` (scikit-learn's
    convention for arrays given to a step fitted on a DataFrame).
    """
    if isinstance(X, np.ndarray):
        if X.ndim != 2 or X.shape[1] != len(names):
            raise SchemaError(f"expected an array of {len(names)} columns {list(names)}, got shape {X.shape}")
        values = np.asarray(X, dtype="float64")
        return {name: values[:, position] for position, name in enumerate(names)}
    missing = [name for name in names if name not in X.columns]
    if missing:
        raise SchemaError(f"missing feature column(s): {missing}")
    if tuple(X.columns) == names:
        values = X.to_numpy(dtype="float64")
        return {name: values[:, position] for position, name in enumerate(names)}
    return {name: X[name].to_numpy(dtype="float64") for name in names}


class CatalogueFeatures(TransformerMixin, BaseEstimator):
    """Scikit-learn step wrapping :func:`catalogue_features` (and :func:`profile_features`
    when it was fitted on a table with the profile columns).

    ``transform`` takes a DataFrame with (at least) the columns it was fitted on, or a float
    array of exactly those columns in that order (the serving path: no pandas per row)."""

    def fit(self, X: pd.DataFrame, y: object = None) -> CatalogueFeatures:
        missing = [name for name in FEATURE_COLUMNS if name not in X.columns]
        if missing:
            raise SchemaError(f"missing feature column(s): {missing}")
        columns = model_columns(X.columns)
        self.n_features_in_ = len(columns)
        self.feature_names_in_ = np.asarray(columns, dtype=object)
        return self

    def _profiles(self) -> bool:
        return len(self.feature_names_in_) > len(FEATURE_COLUMNS)

    def transform(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        columns = raw_columns(X, input_columns(self))
        features = catalogue_features(columns)
        return np.hstack((features, profile_features(columns))) if self._profiles() else features

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        profile = PROFILE_FEATURE_NAMES if self._profiles() else ()
        return np.asarray((*FEATURE_NAMES, *profile), dtype=object)


def input_columns(model: Any) -> tuple[str, ...]:
    """The raw columns a fitted pipeline (or its feature step) takes, in order."""
    return tuple(str(name) for name in model.feature_names_in_)
