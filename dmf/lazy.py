"""Packages that load their names on first use (PEP 562), from a stub.

dmf's packages list their public names once, in ``__init__.pyi``, and
lazy_loader loads each on first use, so that ``dmf --help`` imports no Dask
and one CF type does not load every CF module. :func:`attach` adds what an
eagerly imported package gives: any submodule reached as an attribute
(``dmf.cf.data.ratings_from_scipy``) is imported then, listed or not.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

import lazy_loader


def attach(package: str, init_file: str) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for the package ``package`` from
    the stub beside ``init_file`` (its ``__init__.py``)."""
    from_stub, names, public = lazy_loader.attach_stub(package, init_file)

    def __getattr__(name: str):
        try:
            return from_stub(name)
        except AttributeError:
            if name.startswith("__") or importlib.util.find_spec(f"{package}.{name}") is None:
                raise
            return importlib.import_module(f"{package}.{name}")

    return __getattr__, names, public


__all__ = ["attach"]
