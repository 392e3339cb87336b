"""Non-negative matrix factorization out of core (:func:`dmf.nmf`), and
tri-factorization (:func:`dmf.nmtf`)."""

from dmf.nmf.api import nmf
from dmf.nmf.tri import nmtf

__all__ = ["nmf", "nmtf"]
