"""``dmf generate | ingest | svd | nmf | rank``: the matrix commands.

Each command is a ``run_*`` function: the parsed options in, the public
function called with keyword arguments (:func:`dmf.svd`, :func:`dmf.nmf`,
...), its result and the lines the command prints out (:class:`~dmf.cli_args.Ran`).
``dmf.cli`` prints them; a job step (:mod:`dmf.jobs.steps`) runs the same
function with the step's checked parameters. It imports nothing heavy until
a command runs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import dmf
from dmf import store
from dmf.cli_args import (
    EPILOG,
    Compute,
    Ran,
    damaged_option,
    nmf_stopping,
    positive_int,
    printed,
    run_options,
    shape_arg,
    write_options,
)
from dmf.cli_args import progress as progress_of
from dmf.errors import InputError
from dmf.wording import plural, printed_path

INGEST_EXAMPLES = """\
examples, one per format:
  dmf ingest X.npy X.zarr                       # np.save; C or Fortran order
  dmf ingest X.npz X.zarr                       # np.savez(f, X): one 2-D array
  dmf ingest S.npz S.zarr                       # scipy.sparse.save_npz: sparse store
  dmf ingest data.csv X.zarr --columns a,c      # by header name (or 0-based position)
  dmf ingest data.tsv.gz X.zarr --no-header     # tab-separated, gzip, no header line
  dmf ingest M.mtx M.zarr                       # Matrix Market: array dense, coordinate sparse
  dmf ingest ratings.csv R.zarr --format ratings   # user,item,rating[,time] lines, any ids

"""



def add_commands(commands, command: Callable) -> None:
    """Add ``dmf generate``, ``ingest``, ``svd`` and ``nmf`` to the ``commands``
    subparsers (``command``: :func:`dmf.cli_args.root_parser`'s helper)."""
    # generate
    gen = commands.add_parser("generate", help="write a synthetic matrix of known structure")
    kinds = gen.add_subparsers(dest="kind", metavar="KIND", required=True)
    low = command("lowrank", printed(run_generate_lowrank), "X = W H + noise with known "
                  "singular values, written block by block on the cluster", parent=kinds)
    low.add_argument("out", metavar="OUT", help="where to write X (path or URL)")
    low.add_argument("--shape", type=shape_arg, required=True, metavar="MxN",
                     help="rows x columns, e.g. 100000x300")
    low.add_argument("--rank", type=positive_int, required=True, metavar="R",
                     help="rank of the planted W H (columns of W)")
    low.add_argument("--noise", type=float, default=0.0, metavar="S",
                     help="noise-to-signal ratio (entries of W H have unit RMS); default 0")
    low.add_argument("--seed", type=int, default=0, metavar="N", help="default 0")
    low.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    low.add_argument("--nonnegative", action="store_true", help="plant non-negative factors")
    low.add_argument("--counts", type=float, metavar="MEAN",
                     help="draw counts X ~ Poisson(MEAN W H) from non-negative factors (a "
                     "documents x words matrix for KL-NMF); noise stays 0")
    low.add_argument("--decay", type=float, default=1.0, metavar="D",
                     help="scale W's column j by D**j: a spectrum falling geometrically "
                     "(default 1: similar singular values)")
    write_options(low)
    low.add_argument("--no-factors", action="store_true",
                     help="do not save the planted W and H beside X")
    rat = command("ratings", printed(run_generate_ratings), "ratings of a planted model mu + "
                  "b_u + b_i + p_u.q_i + noise, with times, as a ratings store", parent=kinds,
                  cluster=False)
    rat.add_argument("out", metavar="OUT", help="where to write the ratings (path or URL)")
    rat.add_argument("--users", type=positive_int, required=True, metavar="U",
                     help="number of users (rows)")
    rat.add_argument("--items", type=positive_int, required=True, metavar="I",
                     help="number of items (columns)")
    rat.add_argument("--density", type=float, required=True, metavar="D",
                     help="share of the items each user rates, on average (at least 3 each)")
    rat.add_argument("--rank", type=positive_int, required=True, metavar="R",
                     help="rank of the planted user and item factors P, Q")
    rat.add_argument("--noise", type=float, default=0.1, metavar="S",
                     help="standard deviation of the noise on each rating (default 0.1; the "
                     "planted part spreads about 1.2 around 3.5)")
    rat.add_argument("--seed", type=int, default=0, metavar="N", help="default 0")
    rat.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    rat.add_argument("--codec", choices=["lz4", "zstd", "blosc-zstd", "none"],
                     help="compression (default: the fastest to read)")
    rat.add_argument("--overwrite", action="store_true",
                     help="replace OUT if it exists (once the new store is complete)")
    rat.add_argument("--no-factors", action="store_true",
                     help="do not save the planted P, Q and biases beside OUT")

    # ingest
    ing = command("ingest", printed(run_ingest), "convert a file to a Zarr store, streaming in "
                  "row blocks",
                  cluster=False)
    ing.add_argument("src", metavar="SRC", help=".npy, .csv/.tsv, .mtx or .npz file, or "
                     "ratings with --format ratings")
    ing.add_argument("out", metavar="OUT", help="where to write (path or URL)")
    ing.add_argument("--format", choices=["npy", "csv", "tsv", "mtx", "npz", "ratings"],
                     help="override the format guessed from SRC's extension; ratings: lines "
                     "'user, item, rating[, timestamp]' with any ids, delimiter and header "
                     "detected, into a ratings store (by user, by item, ids, times; a pair "
                     "rated twice keeps its latest rating)")
    ing.add_argument("--dtype", choices=["float32", "float64"],
                     help="stored dtype (default: float32 and float64 kept, others float64)")
    ing.add_argument("--columns", metavar="NAMES",
                     help="csv/tsv/txt: the columns to read, header names or 0-based "
                     "positions, comma-separated, in this order (pandas' usecols; default: "
                     "all but text columns such as an id, skipped with a warning); ratings: "
                     "ROLE=NAME,... for header columns of other names, e.g. "
                     "user=customer_id,item=sku,rating=stars (default: the header's user, "
                     "item/movie/product, rating, timestamp)")
    ing.add_argument("--duplicates", choices=["last", "sum"],
                     help="ratings: a (user, item) pair given twice keeps its latest rating "
                     "(last, the default, with a warning giving the count) or the sum (sum: "
                     "counts of implicit feedback)")
    ing.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                     help="csv/tsv/txt: the first line is (--header) or is not (--no-header) "
                     "a header; default: detected, a word above a number")
    write_options(ing)
    ing.epilog = INGEST_EXAMPLES + EPILOG

    # svd
    svd = command("svd", printed(run_svd), "truncated SVD: U, S, Vt of the top K singular triplets")
    svd.add_argument("x", metavar="X", help="input matrix (path or URL)")
    svd.add_argument("out", metavar="OUT", help="output group for U, S, Vt")
    svd.add_argument("-k", "--k", type=positive_int, default=None, metavar="K",
                     help="singular triplets (default: all min(m, n); tsqr, gram, auto)")
    svd.add_argument("--method", choices=["randomized", "sketch", "eigh", "power", "gram",
                                         "tsqr", "auto"],
                     default=None,
                     help="randomized: Q power iterations, Q + 1 passes (default when K "
                     "+ oversamples < min(m, n)); sketch: one pass, with an error estimate; "
                     "eigh: symmetric X, signed eigenvalues; power: power iteration with "
                     "deflation; gram: exact, from X^T X in one pass (tall X, n <= 8192); "
                     "tsqr: exact through a tall-skinny QR, nothing squared (tall X, "
                     "n <= 8192); auto (the default otherwise): tsqr for float64, gram for "
                     "float32 or sparse (on X^T if wide), randomized for a small K or "
                     "min(m, n) > 8192")
    svd.add_argument("--compute-u", action=argparse.BooleanOptionalAction, default=True,
                     help="--no-compute-u: S and Vt only (tsqr, gram: one pass over X)")
    svd.add_argument("--n-iter", metavar="Q", default="auto",
                     help="power iterations of randomized/eigh (default auto: 7 for small k, "
                     "else 4)")
    svd.add_argument("--oversamples", type=int, default=10, metavar="P",
                     help="extra random directions (default 10)")
    svd.add_argument("--normalizer", choices=["auto", "QR", "LU", "none"], default="auto",
                     help="re-orthonormalization of the power iterations (default QR)")
    svd.add_argument("--assume-symmetric", action="store_true",
                     help="eigh: skip the symmetry check")
    svd.add_argument("--seed", type=int, default=0, help="default 0")
    svd.add_argument("--tol", type=float, help="power: residual tolerance (default 1e-7)")
    svd.add_argument("--max-iter", type=positive_int, metavar="N",
                     help="power: most steps per component (default 1000)")
    run_options(svd)

    # nmf
    nmf = command("nmf", printed(run_nmf), "non-negative factorization X ~ W H (HALS or "
                  "multiplicative updates; Frobenius, KL, IS, any beta, L1; one read of X per "
                  "iteration)")
    nmf.add_argument("x", metavar="X", help="input matrix, non-negative (path or URL)")
    nmf.add_argument("out", metavar="OUT", help="output group for W, H")
    nmf.add_argument("-k", "--k", type=positive_int, required=True, metavar="K",
                     help="components: columns of W, rows of H (with --factors 3: k1)")
    nmf.add_argument("--loss", default="frobenius", metavar="LOSS",
                     help="frobenius (default), kl, is, l1 (robust to outliers), or a "
                     "number: the beta of a beta-divergence")
    nmf.add_argument("--solver", choices=["auto", "mu", "hals"], default="auto",
                     help="mu: multiplicative updates, any loss; hals: coordinate descent, "
                     "Frobenius only; auto (default): hals for Frobenius, else mu")
    nmf.add_argument("--init", choices=["auto", "random", "nndsvd", "nndsvda", "nndsvdar"],
                     default="auto", help="starting factors, as in scikit-learn (auto: "
                     "nndsvda, from dmf's randomized SVD)")
    nmf.add_argument("--alpha-w", type=float, default=0.0, metavar="A",
                     help="regularization of W, scaled by n_features as in scikit-learn")
    nmf.add_argument("--alpha-h", default="same", metavar="A",
                     help="regularization of H (default: same as --alpha-w)")
    nmf.add_argument("--l1-ratio", type=float, default=0.0, metavar="R",
                     help="share of L1 in the regularization (0: L2 only)")
    nmf_stopping(nmf)
    nmf.add_argument("--factors", type=int, choices=[2, 3], default=2,
                     help="2 (default): X ~ W H; 3: tri-factorization X ~ W S H with S "
                     "K x K2 (multiplicative updates, frobenius or kl)")
    nmf.add_argument("--k2", type=positive_int, metavar="K2",
                     help="--factors 3: the rank of H (columns), K being that of W (rows)")
    nmf.add_argument("--hals-sweeps", type=_sweeps_option, default="auto", metavar="N",
                     help="hals: coordinate-descent sweeps of each factor per iteration "
                     "(read of X); 1: scikit-learn's cd; auto (default): accelerated HALS "
                     "(Gillis and Glineur), fewer iterations to the same loss")
    nmf.add_argument("--orthogonal", choices=["W", "H", "both"],
                     help="orthogonal NMF/NMTF (Ding et al. 2006): drive W^T W and/or H H^T "
                     "to the identity, for hard row/column clusters (frobenius, mu)")
    run_options(nmf)



def add_rank(command: Callable) -> None:
    """Add ``dmf rank`` (listed after ``cf`` and ``audio``)."""
    # rank
    rank = command("rank", printed(run_rank), "choose k: bi-cross-validation, held-out NMF "
                   "error or the SVD spectrum's elbow")
    rank.add_argument("x", metavar="X", help="input matrix (path or URL)")
    rank.add_argument("--k", type=k_range, required=True, metavar="A:B",
                      help="candidate ks, A to B inclusive (or one K)")
    rank.add_argument("--method", choices=["bcv", "nmf", "svd"], default="bcv",
                      help="bcv: bi-cross-validation of the truncated SVD (default); nmf: "
                      "held-out error of a masked NMF per k; svd: elbow")
    rank.add_argument("--n-iter", type=positive_int, default=200, metavar="N",
                      help="nmf: iterations per k (default 200)")
    rank.add_argument("--plot", metavar="FILE.png", help="write error versus k as a PNG")
    rank.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rank.add_argument("--seed", type=int, default=0, help="default 0")
    rank.add_argument("--out", metavar="OUT", help="store the table (and each k's fit, with "
                      "checkpoints) in this result group; rerun to resume a killed job")
    rank.add_argument("--checkpoint-every", type=positive_int, metavar="N",
                      help="with --out: checkpoint every N iterations (default 10)")
    rank.add_argument("--no-resume", action="store_true",
                      help="with --out: start over even if OUT holds this job")
    damaged_option(rank)


def run_generate_lowrank(args: argparse.Namespace, on: Compute) -> Ran:
    itemsize = 4 if args.dtype == "float32" else 8
    with on(nbytes=args.shape[0] * args.shape[1] * itemsize):
        gen = store.generate.lowrank(
            args.out, args.shape, args.rank, noise=args.noise, seed=args.seed,
            dtype=args.dtype, nonnegative=args.nonnegative, decay=args.decay,
            chunks=args.chunks, counts=args.counts,
            save_factors=not args.no_factors, overwrite=args.overwrite,
            storage_options=args.storage_options, codec=args.codec,
        )
    drawn = f"Poisson counts, mean scale {args.counts}" if args.counts else \
        f"noise {args.noise}"
    return Ran(gen, _generated(args, gen, f"{args.shape[0]} x {args.shape[1]} {args.dtype}, "
                               f"rank {args.rank}, {drawn}"))


def run_generate_ratings(args: argparse.Namespace, on: Compute) -> Ran:  # noqa: ARG001
    gen = store.generate.ratings(
        args.out, args.users, args.items, args.density, args.rank, noise=args.noise,
        seed=args.seed, dtype=args.dtype, save_factors=not args.no_factors,
        overwrite=args.overwrite, storage_options=args.storage_options, codec=args.codec,
    )
    return Ran(gen, _generated(args, gen, f"{args.users} users x {args.items} items, "
                               f"{gen['nnz']} ratings, rank {args.rank}, noise {args.noise}"))


def run_generate(args: argparse.Namespace, on: Compute) -> Ran:
    """``dmf generate KIND``: lowrank or ratings, as ``args.kind`` says."""
    run = run_generate_ratings if args.kind == "ratings" else run_generate_lowrank
    return run(args, on)


def _generated(args: argparse.Namespace, gen: dict, what: str) -> list[str]:
    """The lines of ``dmf generate``: the store, what was drawn (``what``),
    the seed, and where the planted factors went."""
    lines = [f"wrote {printed_path(args.out)}: {what}, seed {args.seed}"]
    if gen.get("factors"):
        lines.append(f"planted factors: {gen['factors']} beside it")
    return lines


def run_ingest(args: argparse.Namespace, on: Compute) -> Ran:  # noqa: ARG001
    opts = {name: getattr(args, name) for name in ("columns", "duplicates", "header")
            if getattr(args, name) is not None}
    url = dmf.ingest(args.src, args.out, format=args.format, overwrite=args.overwrite,
                 storage_options=args.storage_options, chunks=args.chunks, codec=args.codec,
                 dtype=args.dtype, **opts)
    facts = store.info.describe(url, storage_options=args.storage_options)
    return Ran(url, [f"wrote {printed_path(args.out)}: {_ingested(facts)}"])


def _ingested(facts: dict) -> str:
    """Shape, dtype and layout of a store just written, in one line."""
    shape = " x ".join(str(s) for s in facts.get("shape", ()))
    text = f"{facts.get('kind')} {shape} {facts.get('dtype')}"
    chunks = facts.get("chunks") or []
    if facts.get("nnz") is not None:
        return text + f", {facts['nnz']} stored values in chunks of {chunks[0]}" * bool(chunks)
    return text + f", chunks {' x '.join(str(c) for c in chunks)}" * bool(chunks)


def run_svd(args: argparse.Namespace, on: Compute) -> Ran:
    n_iter = args.n_iter if args.n_iter == "auto" else _int_option("--n-iter", args.n_iter)
    with on(args.x):
        result = dmf.svd(args.x, args.k, method=args.method, n_iter=n_iter,
                         n_oversamples=args.oversamples, normalizer=args.normalizer,
                         seed=args.seed, tol=args.tol, max_iter=args.max_iter,
                         assume_symmetric=args.assume_symmetric, out=args.out,
                         compute_u=args.compute_u, **_run_kwargs(args))
    verb = "already complete" if result.attrs.get("skipped") else "wrote"
    shown = result.eigenvalues if result.method == "eigh" else result.S
    values = ", ".join(f"{s:.6g}" for s in shown[:10])
    label = "eigenvalues" if result.method == "eigh" else "singular values"
    chosen = (f" (auto: {result.attrs['method_reason']})"
              if result.attrs.get("method_requested") == "auto" else "")
    arrays = "U, S, Vt" if result.U is not None else "S, Vt"
    lines = [f"{verb} {printed_path(result.location)}: {arrays} ({result.method}{chosen}, "
             f"k={len(result.S)}, {plural(result.n_iter, 'iteration')})",
             f"{label}: {values}{', ...' if len(shown) > 10 else ''}"]
    if "relative_error_estimate" in result.attrs:
        lines.append(f"estimated relative error ||X - U S Vt||_F / ||X||_F: "
                     f"{result.attrs['relative_error_estimate']:.3g}")
    return Ran(result, lines)


def _run_kwargs(args: argparse.Namespace) -> dict:
    """The run options parsed by :func:`~dmf.cli_args.run_options`, as keyword
    arguments of an iterative method (``dmf.svd``, ``dmf.nmf``)."""
    return {"storage_options": args.storage_options, "checkpoint_every": args.checkpoint_every,
            "checkpoint_seconds": args.checkpoint_seconds, "resume": not args.no_resume,
            "damaged_checkpoints": args.damaged_checkpoints,
            "progress": progress_of(args), "cache": False if args.no_cache else "auto"}


def run_nmf(args: argparse.Namespace, on: Compute) -> Ran:
    if args.factors == 3:
        return _run_nmtf(args, on)
    if args.k2 is not None:
        raise InputError("--k2 is the second rank of a tri-factorization: add --factors 3")
    alpha_h = args.alpha_h if args.alpha_h == "same" else _float_option("--alpha-h",
                                                                        args.alpha_h)
    with on(args.x):
        result = dmf.nmf(args.x, args.k, loss=args.loss, solver=args.solver, init=args.init,
                         alpha_W=args.alpha_w, alpha_H=alpha_h, l1_ratio=args.l1_ratio,
                         tol=args.tol, max_iter=args.max_iter, seed=args.seed, out=args.out,
                         orthogonal=args.orthogonal, hals_sweeps=args.hals_sweeps,
                         **_run_kwargs(args))
    verb = "already complete" if result.attrs.get("skipped") else "wrote"
    state = "converged" if result.converged else "stopped at --max-iter"
    loss = result.loss if isinstance(result.loss, str) else f"beta={result.loss:g}"
    what = "sum |X - WH|" if result.loss == "l1" else "sqrt(2 D_beta)"
    return Ran(result, [
        f"{verb} {printed_path(result.location)}: W, H ({result.attrs['solver']}, {loss}, "
        f"k={args.k}, {plural(result.n_iter, 'iteration')}, {state})",
        f"reconstruction error {what}: {result.reconstruction_err_:.6g}"])


def _run_nmtf(args: argparse.Namespace, on: Compute) -> Ran:
    """``dmf nmf --factors 3``: :func:`dmf.nmtf`."""
    if args.k2 is None:
        raise InputError("--factors 3 needs --k2 K2, the rank of H (e.g. --k2 5)")
    if args.solver == "hals" or args.hals_sweeps != "auto" or args.init not in ("auto",
                                                                                "random"):
        raise InputError("--factors 3 uses multiplicative updates from a random start: drop "
                         "--solver hals, --hals-sweeps and --init (or use --init random)")
    if args.alpha_w or args.alpha_h != "same" or args.l1_ratio:
        raise InputError("--factors 3 has no regularization yet: drop --alpha-w, --alpha-h "
                         "and --l1-ratio")
    with on(args.x):
        result = dmf.nmtf(args.x, args.k, args.k2, loss=args.loss, init="random",
                          orthogonal=args.orthogonal, tol=args.tol, max_iter=args.max_iter,
                          seed=args.seed, out=args.out, **_run_kwargs(args))
    verb = "already complete" if result.attrs.get("skipped") else "wrote"
    state = "converged" if result.converged else "stopped at --max-iter"
    lines = [f"{verb} {printed_path(result.location)}: W, S, H (mu, beta={result.loss:g}, "
             f"k1={args.k}, k2={args.k2}, {plural(result.n_iter, 'iteration')}, {state})",
             f"reconstruction error sqrt(2 D_beta): {result.reconstruction_err_:.6g}"]
    for name, value in result.attrs.get("orthogonality_error", {}).items():
        lines.append(f"{name.replace('_', ' ')} error: {value:.3g}")
    return Ran(result, lines)


def _sweeps_option(text: str) -> int | str:
    """``--hals-sweeps``: "auto" or a count >= 1."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got {text!r}")
    return value


def _float_option(flag: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{flag} must be a number or 'same', got {text!r}") from None


def _int_option(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{flag} must be an integer or 'auto', got {text!r}") from None


def k_range(text: str) -> range:
    """``A:B`` (inclusive) or ``K``, for ``dmf rank --k``."""
    try:
        low, _, high = text.partition(":")
        return range(int(low), int(high or low) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B or K (integers), got {text!r}") from None


def run_rank(args: argparse.Namespace, on: Compute) -> Ran:
    with on(args.x):
        result = dmf.select_rank(args.x, args.k, method=args.method, n_iter=args.n_iter,
                                 seed=args.seed, storage_options=args.storage_options,
                                 progress=False if args.quiet else None, out=args.out,
                                 checkpoint_every=args.checkpoint_every,
                                 resume=not args.no_resume,
                                 damaged_checkpoints=args.damaged_checkpoints)
    if args.plot:
        result.plot(args.plot)
    if args.json:
        return Ran(result, [json.dumps({"k": result.k, "method": result.method,
                                        "criterion": result.criterion,
                                        "table": result.rows()}, indent=2)])
    lines = [result.format(), f"chosen k: {result.k} ({result.criterion})"]
    if args.plot:
        lines.append(f"wrote {printed_path(args.plot)}")
    if args.out:
        lines.append(f"wrote {printed_path(args.out)}")
    return Ran(result, lines)
