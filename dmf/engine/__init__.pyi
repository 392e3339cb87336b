# The engine's modules reached as attributes of dmf.engine (see dmf/engine/__init__.py).
from . import output
