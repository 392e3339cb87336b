"""The iteration engine: the loop, checkpoints, resume, lock, signals,
progress and the cluster; it knows no algorithm.

Its modules are imported by name (``from dmf.engine import placement``);
the few listed in ``__init__.pyi`` are also reachable as attributes, loaded
on first use (PEP 562), for a caller that must not pay for them at import
(the job runner reaches :mod:`dmf.engine.output`, which loads Dask's array
package, only for a step that runs).
"""

from dmf.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, __file__)
