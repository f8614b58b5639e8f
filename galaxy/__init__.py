"""galaxy-morphology: classify SDSS galaxies as elliptical or spiral from catalogue features."""

__version__ = "0.1.0"
