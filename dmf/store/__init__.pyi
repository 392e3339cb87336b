# dmf.store's public names, written once (see dmf/store/__init__.py).
from . import generate, info
from .api import open_matrix, save_matrix
from .location import Location
