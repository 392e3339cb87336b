# dmf's public names, written once: lazy_loader reads this stub at run time
# (dmf/__init__.py) and type checkers read it for their types.
from . import audio, cf, errors, report
from ._version import __version__
from .engine.cluster import connect
from .engine.options import RunOptions
from .estimators import NMF, TruncatedSVD
from .linalg import svd
from .linalg.result import SVDResult
from .nmf import nmf, nmtf
from .nmf.api import NMFResult
from .nmf.tri import NMTFResult
from .rank import RankSelection, select_rank
from .results import load
from .store import generate
from .store.api import open_matrix, save_matrix
from .store.ingest import ingest
from .store.validate import check_finite
