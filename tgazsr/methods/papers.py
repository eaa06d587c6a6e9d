"""The papers behind the methods: kept in :mod:`tgazsr.papers` (one place for every citation of
the package), named here as the methods import them."""

from ..papers import COMP_TGA, FARE, PMG_AFT, TECOA, TGA_ZSR, Paper

__all__ = ["COMP_TGA", "FARE", "PMG_AFT", "TECOA", "TGA_ZSR", "Paper"]
