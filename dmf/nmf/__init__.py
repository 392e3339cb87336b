"""Non-negative matrix factorization out of core (:func:`dmf.nmf`)."""

from dmf.nmf.api import nmf

__all__ = ["nmf"]
