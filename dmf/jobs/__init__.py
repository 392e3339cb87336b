"""Batch jobs: a YAML spec of steps (``dmf run JOB.yaml``).

See :mod:`dmf.jobs.spec` for the format and :mod:`dmf.jobs.runner` for what
a run does; job specs ship in the repository's ``pipelines/`` folder.
"""

from dmf.jobs.runner import run_job
from dmf.jobs.spec import JobSpec, load_spec

__all__ = ["JobSpec", "load_spec", "run_job"]
