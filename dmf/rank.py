"""``dmf.select_rank``: choose the number of components k.

Three criteria, one table per k:

- ``method="bcv"`` (the default; Owen and Perry's bi-cross-validation,
  :mod:`dmf.linalg.bcv`): the rows and the columns are each dealt into two
  groups by a hash of (seed, index); for each of the four (row group,
  column group) blocks A held out, the rows and columns outside it, D, are
  fitted by a truncated SVD and A is predicted as B D_k^+ C from the blocks
  beside it. The table holds the held-out RMSE over all entries (each is
  held out once) and the standard error of its MSE. The chosen k is the
  smallest whose MSE is within one standard error of the lowest, or below
  the rounding floor eps(dtype) * mean(X^2) (an exact rank, where every
  larger k predicts as well, to rounding). Nothing is iterated, so a k is
  never favoured by converging faster, and the cost is 4 SVDs whatever ks.
- ``method="nmf"`` (Wold's holdout): a fixed pseudo-random share of the
  entries (``holdout``, default 10%) is held out by a hash of (seed, row,
  column) (:mod:`dmf.nmf.masked`), an NMF is fitted to the other entries
  for each k with ``n_iter`` multiplicative updates, and the root mean
  squared error on the held-out entries is reported; the chosen k is the
  smallest whose held-out MSE is within one standard error of the lowest.
  A fixed budget of updates under-fits the larger ks less than the smaller
  ones only when they converge: with too few (the default 200 is too few
  for dense factors) the error keeps falling past the true rank.
- ``method="svd"``: one truncated SVD with max(ks) + 1 components. The
  table holds each component's singular value and explained-variance ratio,
  the cumulative ratio and the gap ratio S_k / S_(k+1); the chosen k (the
  spectrum's elbow) is the one with the largest gap ratio. An exact zero
  S_(k+1) after a nonzero S_k is an infinite gap: exact rank k is chosen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Unpack

import numpy as np

from dmf.blocks import full_rows
from dmf.engine.cache import cache_input, run_input
from dmf.engine.driver import run
from dmf.engine.identity import describe_input, job_identity
from dmf.engine.lock import OutputLock
from dmf.engine.options import RunKeywords, RunOptions, run_options
from dmf.engine.output import JobOutput
from dmf.errors import InputError
from dmf.linalg.bcv import bcv_errors, check_folds
from dmf.linalg.svd import check_k, svd
from dmf.nmf.checks import nonnegative_facts
from dmf.nmf.masked import HoldoutSolver
from dmf.store.location import Location

METHODS = ("bcv", "nmf", "svd")

#: Masked MU iterations per k: a fixed count keeps the ks comparable (each
#: fit has had the same budget) and the cost known: len(ks) * n_iter reads.
N_ITER = 200


@dataclass
class RankSelection:
    """The outcome of :func:`select_rank`.

    Attributes
    ----------
    table : numpy structured array
        One row per k, ascending. ``method="bcv"``: ``k``, ``heldout_rmse``,
        ``heldout_se`` (standard error of the held-out MSE).
        ``method="nmf"``: the same and ``train_rmse``.
        ``method="svd"``: ``k``, ``singular_value``,
        ``explained_variance_ratio``, ``cumulative_ratio``, ``gap_ratio``.
    k : int
        The chosen number of components.
    method : str
        ``"bcv"``, ``"nmf"`` or ``"svd"``.
    criterion : str
        The rule that chose k, in words.
    attrs : dict
        Parameters (folds or holdout share, iterations, seed).

    Examples
    --------
    >>> import numpy as np, dmf
    >>> X = np.random.default_rng(0).random((30, 2)) @ np.random.default_rng(1).random((2, 12))
    >>> r = dmf.select_rank(X, range(1, 5), method="svd")
    >>> r.k, r.method, [row["k"] for row in r.rows()]
    (2, 'svd', [1, 2, 3, 4])
    """

    table: np.ndarray
    k: int
    method: str
    criterion: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """The table as a list of dicts (JSON-able)."""
        names = self.table.dtype.names
        return [{name: row[name].item() for name in names} for row in self.table]

    def format(self) -> str:
        """The table as aligned text, the chosen row marked with ``*``."""
        names = self.table.dtype.names
        lines = ["  ".join(f"{name:>24}" if i else f"{name:>4}" for i, name in enumerate(names))]
        for row in self.table:
            cells = [f"{int(row['k']):>4}"] + [f"{float(row[name]):>24.6g}" for name in names[1:]]
            lines.append("  ".join(cells) + ("  *" if int(row["k"]) == self.k else ""))
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike) -> str:
        """Write a PNG of the criterion versus k (held-out RMSE for NMF,
        explained variance for SVD), the chosen k marked. Returns the path."""
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on a cluster node
        import matplotlib.pyplot as plt

        ks = self.table["k"]
        fig, ax = plt.subplots(figsize=(6, 4))
        try:
            if self.method != "svd":
                ax.errorbar(ks, self.table["heldout_rmse"], fmt="o-", label="held-out RMSE")
                if "train_rmse" in self.table.dtype.names:
                    ax.plot(ks, self.table["train_rmse"], "s--", label="kept-entry RMSE")
                ax.set_ylabel("RMSE")
            else:
                ax.plot(ks, self.table["cumulative_ratio"], "o-",
                        label="cumulative explained variance")
                ax.bar(ks, self.table["explained_variance_ratio"], alpha=0.4,
                       label="explained variance ratio")
                ax.set_ylabel("share of variance")
            ax.axvline(self.k, color="red", linestyle=":", label=f"chosen k = {self.k}")
            ax.set_xlabel("k")
            ax.set_title(f"rank selection ({self.method}): {self.criterion}", fontsize=8)
            ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(os.fspath(path), format="png", dpi=100)
        finally:
            plt.close(fig)
        return os.fspath(path)


def _check_ks(ks, shape: tuple[int, int]) -> list[int]:
    try:
        values = list(ks)
    except TypeError:
        raise InputError(f"ks must be a list or range of integers, got {ks!r}") from None
    if not values:
        raise InputError("ks is empty: give at least one k, e.g. range(2, 31) or --k 2:30")
    return sorted({check_k(k, shape, "each k in ks") for k in values})


def k_group(k: int) -> str:
    """The name of k's output group under ``out`` (``k=07``)."""
    return f"k={k:02d}"


def _select_nmf(X, ks, *, holdout, n_iter, seed, opts, name, job=None) -> RankSelection:
    facts = nonnegative_facts(X, name, zeros_allowed=True)
    rows = []
    for k in ks:
        # with a job, each k's fit in its own group under it
        fit = opts if job is None else opts.replace(out=job["location"].join(k_group(k)))
        result = run(HoldoutSolver(k, seed=seed, fraction=holdout, mean=facts["mean"]), X,
                     seed=seed, max_iter=n_iter, tol=0.0, options=fit,
                     input_token=None if job is None else job["token"])
        meta = result.meta if "heldout_mse" in result.meta else result.arrays
        rows.append((k, np.sqrt(meta["heldout_mse"]), meta["heldout_mse_se"],
                     np.sqrt(meta["train_mse"]), meta["heldout_mse"]))
    table = np.array([r[:4] for r in rows], dtype=[("k", "i8"), ("heldout_rmse", "f8"),
                                                   ("heldout_se", "f8"), ("train_rmse", "f8")])
    mse = np.array([r[4] for r in rows])
    best = int(np.argmin(mse))
    chosen = ks[int(np.flatnonzero(mse <= mse[best] + table["heldout_se"][best])[0])]
    return RankSelection(table, int(chosen), "nmf",
                         "smallest k within one standard error of the lowest held-out MSE",
                         {"holdout": holdout, "n_iter": n_iter, "seed": seed})


def _select_bcv(X, ks, *, folds, seed, progress, cache) -> RankSelection:
    errors = bcv_errors(X, ks, folds=folds, seed=seed, progress=progress, cache=cache)
    mse, se = errors.mse, errors.mse_se
    table = np.empty(len(ks), dtype=[("k", "i8"), ("heldout_rmse", "f8"), ("heldout_se", "f8")])
    table["k"], table["heldout_rmse"], table["heldout_se"] = ks, np.sqrt(mse), se
    # below eps * mean(x^2) an error is rounding: an exact rank's larger ks tie with it
    floor = float(np.finfo(X.dtype if X.dtype.kind == "f" else np.float64).eps) \
        * errors.total_sq / errors.count
    best = int(np.argmin(mse))
    within = np.flatnonzero(mse <= max(mse[best] + se[best], floor))
    return RankSelection(table, int(ks[int(within[0])]), "bcv",
                         "smallest k within one standard error of the lowest "
                         "bi-cross-validation MSE", {"folds": list(folds), "seed": seed})


def _select_svd(X, ks, *, seed, opts, source=None, job=None) -> RankSelection:
    top = min(max(ks) + 1, min(X.shape))  # S_(k+1) for the gap ratio of the largest k
    if job is None:
        result = svd(X, top, method="auto", seed=seed, options=opts)
    else:  # the SVD's own group: a rerun finds it complete (or resumes it)
        result = svd(source, top, method="auto", seed=seed,
                     options=opts.replace(out=job["location"].join("svd")))
    S = np.asarray(result.S, dtype=np.float64)
    ratio = np.asarray(result.explained_variance_ratio_, dtype=np.float64)
    idx = np.array(ks) - 1
    following = np.append(S, 0.0)[idx + 1]  # past min(m, n) there is no variance left
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(following > 0, S[idx] / np.where(following > 0, following, 1.0),
                       np.where(S[idx] > 0, np.inf, 0.0))
    table = np.empty(len(ks), dtype=[("k", "i8"), ("singular_value", "f8"),
                                     ("explained_variance_ratio", "f8"),
                                     ("cumulative_ratio", "f8"), ("gap_ratio", "f8")])
    table["k"] = ks
    table["singular_value"] = S[idx]
    table["explained_variance_ratio"] = ratio[idx]
    table["cumulative_ratio"] = np.cumsum(ratio)[idx]
    table["gap_ratio"] = gap
    chosen = ks[int(np.argmax(gap))]
    return RankSelection(table, int(chosen), "svd", "largest gap ratio S_k / S_(k+1)",
                         {"seed": seed, "svd_k": top})


def select_rank(
    X,
    ks=range(2, 31),
    *,
    method: str = "bcv",
    folds: tuple[int, int] = (2, 2),
    holdout: float = 0.1,
    n_iter: int = N_ITER,
    seed: int = 0,
    options: RunOptions | None = None,
    **run_keywords: Unpack[RunKeywords],
) -> RankSelection:
    """Choose the number of components k of an NMF or an SVD of X.

    Parameters
    ----------
    X : URL, Zarr array, dask or numpy array, or scipy.sparse matrix
        The matrix (non-negative for ``method="nmf"``).
    ks : iterable of int
        The candidate k, each in 1..min(m, n) (default 2..30); for
        ``"bcv"`` at most the kept block's min(m, n) (half of X's with the
        default folds).
    method : {"bcv", "nmf", "svd"}
        ``"bcv"`` (default): Owen and Perry's bi-cross-validation error of
        the truncated SVD, from 4 SVDs of X's quarter blocks (about 16
        reads of X whatever ks). ``"nmf"``: held-out reconstruction error
        (Wold's holdout, one masked NMF per k, ``len(ks) * n_iter`` reads of
        X; only as good as the fits' convergence). ``"svd"``: explained
        variance and the spectrum's elbow (one SVD with max(ks) + 1
        components). See :mod:`dmf.rank` for the rules.
    folds : (int, int)
        BCV: the row groups and column groups, each >= 2 (default (2, 2),
        as in Perry's R package bcv).
    holdout : float
        NMF: the share of entries held out, in (0, 0.5] (default 0.1).
    n_iter : int
        NMF: multiplicative-update iterations per k (default 200).
    seed : int
        Chooses the held-out entries and the initial factors (the same
        entries for every k).
    options : RunOptions, optional
        How the job runs (:class:`dmf.RunOptions`; no ``callback``). With
        ``out``, a result group for the job (``algorithm`` ``rank-bcv``,
        ``rank-nmf`` or ``rank-svd``): each k's masked NMF runs in
        ``OUT/k=07`` (the SVD in ``OUT/svd``) with the checkpoint and resume
        options given, and the table is written to OUT, so a killed job run
        again skips the finished ks, resumes the interrupted one and gives
        the same table; ``dmf.load(out)`` returns it. BCV's SVDs are not
        stored: a killed BCV job starts over, a complete one returns its
        table. ``resume=False`` starts over (beside a complete table, which
        is replaced only once the new one is complete).
    **run_keywords
        The same options as keywords (``out=``, ``storage_options=``,
        ``checkpoint_every=``, ``resume=``, ``progress=``, ``cache=``, ...),
        instead of ``options``, as for :func:`dmf.nmf`.

    Returns
    -------
    RankSelection
        ``table`` (one row per k), ``k`` (the chosen one), ``plot(path)``.

    Examples
    --------
    >>> import numpy as np, dmf
    >>> rng = np.random.default_rng(0)
    >>> def parts(shape):  # sparse non-negative factors
    ...     return rng.exponential(size=shape) * (rng.random(shape) < 0.5)
    >>> X = parts((60, 3)) @ parts((3, 40))
    >>> dmf.select_rank(X, range(1, 7), method="svd").k
    3
    >>> dmf.select_rank(X, range(1, 11)).k
    3
    >>> r = dmf.select_rank(X, range(2, 5), method="nmf", n_iter=50)
    >>> r.k, r.table["k"].tolist()
    (3, [2, 3, 4])
    """
    if method not in METHODS:
        raise InputError(f"unknown rank-selection method {method!r}; "
                         "use 'bcv', 'nmf' or 'svd'")
    opts = run_options(options, run_keywords, "select_rank").refuse(("callback",),
                                                                     "dmf.select_rank")
    source = X
    X, cache, token, name = run_input(X, opts)
    ks = _check_ks(ks, X.shape)
    if method == "bcv":
        folds = check_folds(folds, ks, X.shape)
        X = full_rows(cache_input(X, cache))
        params = {"ks": ks, "folds": list(folds)}
        select = lambda _job: _select_bcv(X, ks, folds=folds, seed=seed,  # noqa: E731
                                          progress=opts.progress, cache=False)
    elif method == "svd":
        params = {"ks": ks}
        select = lambda job: _select_svd(X, ks, seed=seed,  # noqa: E731
                                         opts=opts.replace(cache=cache), source=source,
                                         job=job)
    else:
        if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) \
                or not 0 < holdout <= 0.5:
            raise InputError(f"holdout must be a share in (0, 0.5], got {holdout!r}")
        if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
            raise InputError(f"n_iter must be an integer >= 1, got {n_iter!r}")
        X = full_rows(cache_input(X, cache))
        params = {"ks": ks, "holdout": float(holdout), "n_iter": n_iter}
        select = lambda job: _select_nmf(X, ks, holdout=float(holdout),  # noqa: E731
                                         n_iter=n_iter, seed=seed, opts=opts, name=name,
                                         job=job)
    if opts.out is None:
        return select(None)
    return _stored_job(select, X, method=method, params=params, seed=seed, token=token,
                       opts=opts)


def _stored_job(select, X, *, method, params, seed, token, opts) -> RankSelection:
    """Run ``select`` with its sub-jobs under ``out``, then write the table
    to ``out`` as a result group (status complete last). Starting over where
    a complete table is writes the sub-jobs and the table beside it, in
    ``.OUT.dmf-next``, swapped in only once complete (as the engine does)."""
    location = Location.parse(opts.out, opts.storage_options)
    algorithm = f"rank-{method}"
    # the identity the engine gives its own jobs (engine.driver.run)
    identity = job_identity(algorithm, {"input": describe_input(X, token=token)},
                            parameters=params, seed=seed)
    output = JobOutput(location)
    output.existing_meta()  # refuse a non-result before taking the lock there
    with OutputLock(location) as lock:
        output.fence = lock.check
        status = output.check_job(identity, resume=opts.resume)
        if status == "complete":
            return _from_meta(location, output.meta(), output.read_arrays())
        output.begin(identity, {"algorithm": algorithm, "parameters": params,
                                   "seed": seed}, fresh=status == "fresh")
        # output.location: OUT, or its sibling when writing beside a complete table
        result = select({"location": output.location, "token": token})
        names = result.table.dtype.names
        output.write_result({name: result.table[name] for name in names},
                            {"chosen_k": result.k, "method": result.method,
                             "criterion": result.criterion, "columns": list(names),
                             "selection": result.attrs})
        return _from_meta(location, output.meta(), output.read_arrays())


def _from_meta(location, meta: dict[str, Any], arrays: dict[str, Any]) -> RankSelection:
    """The :class:`RankSelection` stored at ``location`` (for :func:`dmf.load`)."""
    names = meta["columns"]
    table = np.empty(len(arrays[names[0]]),
                     dtype=[(name, np.asarray(arrays[name]).dtype.str) for name in names])
    for name in names:
        table[name] = arrays[name]
    return RankSelection(table, int(meta["chosen_k"]), meta["method"], meta["criterion"],
                         {**meta.get("selection", {}), "location": str(location)})


__all__ = ["METHODS", "RankSelection", "select_rank"]
