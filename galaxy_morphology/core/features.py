"""The feature step: catalogue columns in, physically motivated morphology features out.

Pure numpy: colours, sizes, shapes, concentration and surface-brightness proxies, and
luminosity-based quantities from a low-redshift distance approximation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from galaxy_morphology.core.schema import FEATURE_COLUMNS

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


def luminosity_distance_mpc(redshift: np.ndarray) -> np.ndarray:
    """Second-order expansion of the luminosity distance: about 1% accurate for z < 0.3."""
    z = np.clip(redshift, MIN_REDSHIFT, None)
    return SPEED_OF_LIGHT_KM_S * z / HUBBLE_CONSTANT * (1.0 + 0.5 * (1.0 - DECELERATION_Q0) * z)


def catalogue_features(frame: pd.DataFrame) -> np.ndarray:
    """Compute ``FEATURE_NAMES`` from the raw catalogue columns (``FEATURE_COLUMNS``)."""
    get = {name: frame[name].to_numpy(dtype="float64") for name in FEATURE_COLUMNS}
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


class CatalogueFeatures(TransformerMixin, BaseEstimator):
    """Scikit-learn step wrapping :func:`catalogue_features` (stateless)."""

    def fit(self, X: pd.DataFrame, y: object = None) -> CatalogueFeatures:
        missing = [name for name in FEATURE_COLUMNS if name not in X.columns]
        if missing:
            raise ValueError(f"missing feature column(s): {missing}")
        self.n_features_in_ = len(FEATURE_COLUMNS)
        self.feature_names_in_ = np.asarray(FEATURE_COLUMNS, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return catalogue_features(X)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(FEATURE_NAMES, dtype=object)
