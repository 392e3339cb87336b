# dmf.jobs' public names, written once (see dmf/jobs/__init__.py).
from . import record
from .runner import run_job
from .spec import JobSpec, load_spec
