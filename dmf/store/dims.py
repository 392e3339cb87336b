"""Dimension names of the arrays dmf writes (Zarr 3's ``dimension_names``).

xarray needs them to open a Zarr 3 group (``xr.open_zarr``): each array's
axes are named, and a name shared by arrays of one group means one length
there (U's ``component`` is S's and Vt's).
"""

from __future__ import annotations

from collections.abc import Mapping

#: The axes of the arrays dmf names, by array name and number of dimensions.
BY_NAME: dict[tuple[str, int], tuple[str, ...]] = {
    ("U", 2): ("row", "component"),
    ("S", 1): ("component",),
    ("Vt", 2): ("component", "column"),
    ("W", 2): ("row", "component"),
    ("H", 2): ("component", "column"),
    ("S", 2): ("row_component", "column_component"),  # NMTF's middle factor
    ("P", 2): ("user", "factor"),
    ("Q", 2): ("item", "factor"),
    ("user_bias", 1): ("user",),
    ("item_bias", 1): ("item",),
    ("user_ids", 1): ("user",),
    ("item_ids", 1): ("item",),
    ("item_counts", 1): ("item",),
    ("items", 2): ("user", "rank"),
    ("scores", 2): ("user", "rank"),
    ("cold_start", 1): ("user",),
    ("data", 1): ("nnz",),
    ("indices", 1): ("nnz",),
    ("timestamps", 1): ("nnz",),
    ("indptr", 1): ("indptr",),
}

#: A matrix store: one 2-D array.
MATRIX = ("row", "column")


def dimension_names(name: str, ndim: int) -> tuple[str, ...]:
    """The axes of an array called ``name``; unknown ones are ``row``,
    ``column`` (2-D), ``index`` (1-D) or ``NAME_dim_I``.

    Examples
    --------
    >>> dimension_names("Vt", 2)
    ('component', 'column')
    >>> dimension_names("loss", 1)
    ('index',)
    """
    known = BY_NAME.get((name, ndim))
    if known:
        return known
    if ndim == 2:
        return MATRIX
    if ndim == 1:
        return ("index",)
    return tuple(f"{name}_dim_{i}" for i in range(ndim))


def group_dimension_names(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[str, ...]]:
    """The axes of the arrays of one group, such that a name shared by two
    arrays always means the same length (as xarray requires): a name that
    would mean two lengths is given per array instead.

    Examples
    --------
    >>> group_dimension_names({"W": (6, 2), "S": (2, 3), "H": (3, 5)})["H"]
    ('column_component', 'column')
    >>> group_dimension_names({"a": (3,), "b": (4,)})
    {'a': ('a_index',), 'b': ('b_index',)}
    """
    names = {key: dimension_names(key, len(shape)) for key, shape in shapes.items()}
    if len(shapes.get("S", ())) == 2:  # three factors W S H: W's k1 and H's k2
        names.update(W=("row", "row_component"), H=("column_component", "column"))
    lengths: dict[str, set[int]] = {}
    for key, shape in shapes.items():
        for dim, size in zip(names[key], shape, strict=True):
            lengths.setdefault(dim, set()).add(int(size))
    return {key: tuple(dim if len(lengths[dim]) == 1 else f"{key}_{dim}" for dim in dims)
            for key, dims in names.items()}
