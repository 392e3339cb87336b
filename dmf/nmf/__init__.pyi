# dmf.nmf's public names, written once (see dmf/nmf/__init__.py).
from .api import nmf
from .tri import nmtf
