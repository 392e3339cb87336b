"""Batch jobs: a YAML spec of steps (``dmf run JOB.yaml``).

See :mod:`dmf.jobs.spec` for the format and :mod:`dmf.jobs.runner` for what
a run does; job specs ship in the repository's ``pipelines/`` folder.
"""

from dmf.lazy import attach

# The public names are listed once, in __init__.pyi, and load on first use
# (PEP 562): the dmf command imports this package at its top and pays for
# the runner (YAML, tenacity, the step table) only in dmf run.
__getattr__, __dir__, __all__ = attach(__name__, __file__)
