"""Non-negative matrix factorization out of core (:func:`dmf.nmf`), and
tri-factorization (:func:`dmf.nmtf`)."""

from dmf.lazy import attach

# The public names are listed once, in __init__.pyi, and load on first use
# (PEP 562): a module that needs one light part (a job spec's loss check:
# dmf.nmf.beta) does not load the solvers and Dask's array package with it.
__getattr__, __dir__, __all__ = attach(__name__, __file__)
