"""The ``dmf`` command.

Exit codes (the contract of ../shared/DESIGN.md): 0 done; 2 bad usage or bad
input (one line naming the file and the problem, no traceback; also a damaged
store, and every checkpoint damaged under --damaged-checkpoints stop); 3 the
output is locked or holds a checkpoint of a different job; 4 the environment failed
(object store credentials, endpoint, access or bucket; the Dask scheduler or
its workers; a full or read-only disk: one line naming the URL, address or
path and what to check, no traceback); 130/143 interrupted; 1 anything
unexpected (with a traceback, since that is a bug report).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence

from dmf._version import __version__
from dmf.errors import DmfError, DmfWarning, InputError
from dmf.store.failures import environment_failure
from dmf.wording import plural, printed_path

log = logging.getLogger("dmf")

EXIT_OK, EXIT_UNEXPECTED, EXIT_INPUT, EXIT_CONFLICT, EXIT_ENVIRONMENT = 0, 1, 2, 3, 4
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
EXIT_HOOKS_SECONDS = 3.0

EPILOG = """\
exit codes: 0 done, 2 bad usage or input (or damaged data: a failed checksum,
a missing chunk; every checkpoint damaged with --damaged-checkpoints stop),
3 output locked or holds another job's checkpoint, 4 the environment failed
(object store credentials, endpoint or bucket, scheduler or its workers, disk
full or read-only), 130/143 interrupted (after a checkpoint), 1 unexpected.
URLs: any local path, file://, s3://BUCKET/KEY (with --storage-options),
memory:// (this process only).
"""


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


# -- argument types -----------------------------------------------------------

def shape_arg(text: str) -> tuple[int, int]:
    """``"1000x50"`` -> (1000, 50)."""
    try:
        m, n = (int(part) for part in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MxN such as 1000x50, got {text!r}") from None
    if m <= 0 or n <= 0:
        raise argparse.ArgumentTypeError(f"both dimensions must be positive, got {text!r}")
    return m, n


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as {\"anon\": true}")
    return value


# -- the parser -----------------------------------------------------------------

class WrappedDescription(argparse.RawDescriptionHelpFormatter):
    """A one-paragraph description wrapped to the terminal's width; text
    laid out on several lines (the epilog: exit codes, examples) as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text.strip():
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool,
                    cluster: bool = True) -> None:
    """Options accepted before or after the command (the cluster's only by
    commands that compute on one). On subcommands the defaults are
    suppressed so that a value given before the command is not overwritten
    by the subcommand's default."""
    d = {"default": argparse.SUPPRESS} if suppress else {}
    out = parser.add_argument_group("storage and output")
    out.add_argument("--storage-options", type=json_object, metavar="JSON",
                     help="fsspec options for every URL, e.g. "
                     "'{\"client_kwargs\": {\"endpoint_url\": \"http://127.0.0.1:9000\"}}'", **d)
    out.add_argument("-v", "--verbose", action="count",
                     help="log what is done, with times (-vv: debug)", **d)
    out.add_argument("-q", "--quiet", action="store_true",
                     help="errors only: no progress, notes or logs (results still go to "
                     "stdout)", **d)
    if not cluster:
        return
    g = parser.add_argument_group("cluster")
    g.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address; default "
                   "$DASK_SCHEDULER_ADDRESS, else threads in this process for small inputs "
                   "and a local cluster for large ones (-v says which)", **d)
    g.add_argument("--workers", type=nonnegative_int, metavar="N",
                   help="local cluster: worker processes, whatever the input's size (0: no "
                   "cluster, threads in this process)", **d)
    g.add_argument("--threads", type=positive_int, metavar="N",
                   help="local cluster: threads per worker", **d)
    g.add_argument("--memory-limit", metavar="SIZE", help="local cluster: memory per worker, "
                   "e.g. 4GiB", **d)


GLOBAL_DEFAULTS = {"scheduler": None, "workers": None, "threads": None, "memory_limit": None,
                   "storage_options": None, "verbose": 0, "quiet": False}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmf",
        description="Out-of-core matrix factorization on Zarr stores and Dask clusters.",
        epilog=EPILOG,
        formatter_class=WrappedDescription,
    )
    parser.add_argument("--version", action="version", version=f"dmf {__version__}")
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Callable, help: str, parent=commands,
                cluster: bool = True) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help, description=help, epilog=EPILOG,
                                formatter_class=WrappedDescription)
        _global_options(sub, suppress=True, cluster=cluster)
        sub.set_defaults(func=func)
        return sub

    # generate
    gen = commands.add_parser("generate", help="write a synthetic matrix of known structure")
    kinds = gen.add_subparsers(dest="kind", metavar="KIND", required=True)
    low = command("lowrank", cmd_generate_lowrank, "X = W H + noise with known singular values, "
                  "written block by block on the cluster", parent=kinds)
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
    _write_options(low)
    low.add_argument("--no-factors", action="store_true",
                     help="do not save the planted W and H beside X")
    rat = command("ratings", cmd_generate_ratings, "ratings of a planted model mu + b_u + b_i + "
                  "p_u.q_i + noise, with times, as a ratings store", parent=kinds,
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
    ing = command("ingest", cmd_ingest, "convert a file to a Zarr store, streaming in row blocks",
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
    _write_options(ing)
    ing.epilog = INGEST_EXAMPLES + EPILOG

    # svd
    svd = command("svd", cmd_svd, "truncated SVD: U, S, Vt of the top K singular triplets")
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
    _run_options(svd)

    # nmf
    nmf = command("nmf", cmd_nmf, "non-negative factorization X ~ W H (HALS or multiplicative "
                  "updates; Frobenius, KL, IS, any beta, L1; one read of X per iteration)")
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
    nmf.add_argument("--max-iter", type=positive_int, default=200, metavar="N",
                     help="default 200")
    nmf.add_argument("--tol", type=float, default=1e-4, metavar="T",
                     help="stop when the objective fell by less than T times the initial "
                     "one over 10 iterations (default 1e-4; 0: run --max-iter)")
    nmf.add_argument("--seed", type=int, default=0, help="default 0")
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
    _run_options(nmf)

    # cf split | train | evaluate | recommend
    from dmf import cli_cf

    cli_cf.add_commands(commands, command, _run_options)

    # audio separate | demo
    from dmf import cli_audio

    cli_audio.add_commands(commands, command, _run_options)

    # rank
    rank = command("rank", cmd_rank, "choose k: bi-cross-validation, held-out NMF error or "
                   "the SVD spectrum's elbow")
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
    _damaged_option(rank)

    # run
    run = command("run", cmd_run, "run a batch job spec (YAML): its steps in order, each "
                  "skipped when complete and resumed when stopped (see pipelines/)")
    run.add_argument("job", metavar="JOB.yaml", help="the job spec")
    run.add_argument("--dry-run", action="store_true",
                     help="check the spec and print the dmf command line of each step; run "
                     "nothing, touch no store and no cluster")
    run.add_argument("--set", action="append", dest="overrides", metavar="KEY=VALUE",
                     help="override a value of the spec (repeatable): KEY is dotted, e.g. "
                     "root, cluster.workers, steps.NAME.max_iter; VALUE is read as YAML")
    run.add_argument("--progress", action="store_true",
                     help="show progress even when stderr is not a terminal")

    # report
    rep = command("report", cmd_report, "an HTML page of a result or a job: objective per "
                  "iteration, spectrum, components, top items, run records, parameters",
                  cluster=False)
    rep.add_argument("out", metavar="OUT", help="a result (dmf svd, nmf, cf train) or a job "
                     "root (dmf run)")
    rep.add_argument("--html", metavar="FILE", help="where to write the page (default, "
                     "unless --png alone is given: OUT.html beside a local OUT, its .zarr "
                     "dropped)")
    rep.add_argument("--png", metavar="DIR", help="write each figure as a PNG here (with "
                     "--html too: the page as well)")
    rep.add_argument("--image-shape", type=shape_arg, metavar="HxW",
                     help="draw components as H x W images (columns are pixels), e.g. 8x8")
    rep.add_argument("--top", type=positive_int, default=10, metavar="N",
                     help="items / columns listed per component (default 10)")

    # info
    info = command("info", cmd_info, "describe a stored matrix or result", cluster=False)
    info.add_argument("url", metavar="URL", help="a matrix, result, ratings store or job "
                      "root (path or URL)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def _run_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--checkpoint-every", type=positive_int, metavar="N",
                     help="checkpoint every N iterations (default 10)")
    sub.add_argument("--checkpoint-seconds", type=float, metavar="T",
                     help="also checkpoint when T seconds passed since the last one "
                     "(default 300)")
    sub.add_argument("--no-resume", action="store_true",
                     help="start over even if OUT holds checkpoints of this job")
    _damaged_option(sub)
    sub.add_argument("--progress", action="store_true",
                     help="show progress even when stderr is not a terminal")
    sub.add_argument("--no-cache", action="store_true",
                     help="stream X from the store on every pass even if it fits in memory")


def _damaged_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--damaged-checkpoints", choices=["start-over", "stop"],
                     default="start-over",
                     help="when every checkpoint of this job in OUT is damaged (a damaged "
                     "newest one falls back to the one before): start over (default), or "
                     "stop with exit 2, changing nothing")


def _progress(args: argparse.Namespace) -> bool | None:
    if args.quiet:
        return False
    return True if args.progress else None


def _write_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--chunks", type=positive_int, metavar="ROWS",
                     help="rows per block (default: blocks of about 64 MiB)")
    sub.add_argument("--codec", choices=["lz4", "zstd", "blosc-zstd", "none"],
                     help="compression (default: the fastest to read, see benchmarks/README.md)")
    sub.add_argument("--overwrite", action="store_true",
                     help="replace OUT if it exists (the old store stays intact until the new one "
                     "is complete)")


# -- commands -----------------------------------------------------------------

def cluster(args: argparse.Namespace, *inputs: str | None, nbytes: int | None = None):
    """The Dask client a command reading ``inputs`` (or making ``nbytes``)
    computes with: none (threads in this process) with --workers 0 or, when
    neither --scheduler, $DASK_SCHEDULER_ADDRESS nor --workers is given, for
    small work (see :mod:`dmf.engine.placement`)."""
    from dmf.engine import placement
    from dmf.engine.cluster import connect

    quiet_dask_logs()
    where = placement.for_inputs(inputs, address=args.scheduler, n_workers=args.workers,
                                 storage_options=args.storage_options, nbytes=nbytes)
    if where.in_process:
        return contextlib.nullcontext()
    return connect(args.scheduler, n_workers=args.workers, threads_per_worker=args.threads,
                   memory_limit=args.memory_limit)


def cmd_generate_lowrank(args: argparse.Namespace) -> int:
    from dmf.store import generate

    itemsize = 4 if args.dtype == "float32" else 8
    with cluster(args, nbytes=args.shape[0] * args.shape[1] * itemsize):
        gen = generate.lowrank(
            args.out, args.shape, args.rank, noise=args.noise, seed=args.seed,
            dtype=args.dtype, nonnegative=args.nonnegative, decay=args.decay,
            chunks=args.chunks, counts=args.counts,
            save_factors=not args.no_factors, overwrite=args.overwrite,
            storage_options=args.storage_options, codec=args.codec,
        )
    drawn = f"Poisson counts, mean scale {args.counts}" if args.counts else \
        f"noise {args.noise}"
    return _print_generated(args, gen, f"{args.shape[0]} x {args.shape[1]} {args.dtype}, "
                            f"rank {args.rank}, {drawn}")


def cmd_generate_ratings(args: argparse.Namespace) -> int:
    from dmf.store import generate

    gen = generate.ratings(
        args.out, args.users, args.items, args.density, args.rank, noise=args.noise,
        seed=args.seed, dtype=args.dtype, save_factors=not args.no_factors,
        overwrite=args.overwrite, storage_options=args.storage_options, codec=args.codec,
    )
    return _print_generated(args, gen, f"{args.users} users x {args.items} items, "
                            f"{gen['nnz']} ratings, rank {args.rank}, noise {args.noise}")


def _print_generated(args: argparse.Namespace, gen: dict, what: str) -> int:
    """The line of ``dmf generate`` / ``generate-ratings``: the store, what was
    drawn (``what``), the seed, and where the planted factors went."""
    print(f"wrote {printed_path(args.out)}: {what}, seed {args.seed}")
    if gen.get("factors"):
        print(f"planted factors: {gen['factors']} beside it")
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    from dmf.store.info import describe
    from dmf.store.ingest import ingest

    opts = {name: getattr(args, name) for name in ("columns", "duplicates", "header")
            if getattr(args, name) is not None}
    url = ingest(args.src, args.out, format=args.format, overwrite=args.overwrite,
                 storage_options=args.storage_options, chunks=args.chunks, codec=args.codec,
                 dtype=args.dtype, **opts)
    facts = describe(url, storage_options=args.storage_options)
    print(f"wrote {printed_path(args.out)}: {_ingested(facts)}")
    return EXIT_OK


def _ingested(facts: dict) -> str:
    """Shape, dtype and layout of a store just written, in one line."""
    shape = " x ".join(str(s) for s in facts.get("shape", ()))
    text = f"{facts.get('kind')} {shape} {facts.get('dtype')}"
    chunks = facts.get("chunks") or []
    if facts.get("nnz") is not None:
        return text + f", {facts['nnz']} stored values in chunks of {chunks[0]}" * bool(chunks)
    return text + f", chunks {' x '.join(str(c) for c in chunks)}" * bool(chunks)


def cmd_svd(args: argparse.Namespace) -> int:
    import dmf

    n_iter = args.n_iter if args.n_iter == "auto" else _int_option("--n-iter", args.n_iter)
    with cluster(args, args.x):
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
    print(f"{verb} {printed_path(result.location)}: {arrays} ({result.method}{chosen}, "
          f"k={len(result.S)}, {plural(result.n_iter, 'iteration')})")
    print(f"{label}: {values}{', ...' if len(shown) > 10 else ''}")
    if "relative_error_estimate" in result.attrs:
        print(f"estimated relative error ||X - U S Vt||_F / ||X||_F: "
              f"{result.attrs['relative_error_estimate']:.3g}")
    return EXIT_OK


def _run_kwargs(args: argparse.Namespace) -> dict:
    """What :func:`_run_options` parsed, as keyword arguments of an iterative
    method (``dmf.svd``, ``dmf.nmf``)."""
    return {"storage_options": args.storage_options, "checkpoint_every": args.checkpoint_every,
            "checkpoint_seconds": args.checkpoint_seconds, "resume": not args.no_resume,
            "damaged_checkpoints": args.damaged_checkpoints,
            "progress": _progress(args), "cache": False if args.no_cache else "auto"}


def cmd_nmf(args: argparse.Namespace) -> int:
    import dmf

    if args.factors == 3:
        return _cmd_nmtf(args)
    if args.k2 is not None:
        raise InputError("--k2 is the second rank of a tri-factorization: add --factors 3")
    alpha_h = args.alpha_h if args.alpha_h == "same" else _float_option("--alpha-h",
                                                                        args.alpha_h)
    with cluster(args, args.x):
        result = dmf.nmf(args.x, args.k, loss=args.loss, solver=args.solver, init=args.init,
                         alpha_W=args.alpha_w, alpha_H=alpha_h, l1_ratio=args.l1_ratio,
                         tol=args.tol, max_iter=args.max_iter, seed=args.seed, out=args.out,
                         orthogonal=args.orthogonal, hals_sweeps=args.hals_sweeps,
                         **_run_kwargs(args))
    verb = "already complete" if result.attrs.get("skipped") else "wrote"
    state = "converged" if result.converged else "stopped at --max-iter"
    loss = result.loss if isinstance(result.loss, str) else f"beta={result.loss:g}"
    print(f"{verb} {printed_path(result.location)}: W, H ({result.attrs['solver']}, {loss}, "
          f"k={args.k}, "
          f"{plural(result.n_iter, 'iteration')}, {state})")
    what = "sum |X - WH|" if result.loss == "l1" else "sqrt(2 D_beta)"
    print(f"reconstruction error {what}: {result.reconstruction_err_:.6g}")
    return EXIT_OK


def _cmd_nmtf(args: argparse.Namespace) -> int:
    """``dmf nmf --factors 3``: :func:`dmf.nmtf`."""
    import dmf

    if args.k2 is None:
        raise InputError("--factors 3 needs --k2 K2, the rank of H (e.g. --k2 5)")
    if args.solver == "hals" or args.hals_sweeps != "auto" or args.init not in ("auto",
                                                                                "random"):
        raise InputError("--factors 3 uses multiplicative updates from a random start: drop "
                         "--solver hals, --hals-sweeps and --init (or use --init random)")
    if args.alpha_w or args.alpha_h != "same" or args.l1_ratio:
        raise InputError("--factors 3 has no regularization yet: drop --alpha-w, --alpha-h "
                         "and --l1-ratio")
    with cluster(args, args.x):
        result = dmf.nmtf(args.x, args.k, args.k2, loss=args.loss, init="random",
                          orthogonal=args.orthogonal, tol=args.tol, max_iter=args.max_iter,
                          seed=args.seed, out=args.out, **_run_kwargs(args))
    verb = "already complete" if result.attrs.get("skipped") else "wrote"
    state = "converged" if result.converged else "stopped at --max-iter"
    print(f"{verb} {printed_path(result.location)}: W, S, H (mu, beta={result.loss:g}, "
          f"k1={args.k}, k2={args.k2}, {plural(result.n_iter, 'iteration')}, {state})")
    print(f"reconstruction error sqrt(2 D_beta): {result.reconstruction_err_:.6g}")
    for name, value in result.attrs.get("orthogonality_error", {}).items():
        print(f"{name.replace('_', ' ')} error: {value:.3g}")
    return EXIT_OK


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


def cmd_rank(args: argparse.Namespace) -> int:
    import dmf

    with cluster(args, args.x):
        result = dmf.select_rank(args.x, args.k, method=args.method, n_iter=args.n_iter,
                                 seed=args.seed, storage_options=args.storage_options,
                                 progress=False if args.quiet else None, out=args.out,
                                 checkpoint_every=args.checkpoint_every,
                                 resume=not args.no_resume,
                                 damaged_checkpoints=args.damaged_checkpoints)
    if args.plot:
        result.plot(args.plot)
    if args.json:
        print(json.dumps({"k": result.k, "method": result.method,
                          "criterion": result.criterion, "table": result.rows()}, indent=2))
    else:
        print(result.format())
        print(f"chosen k: {result.k} ({result.criterion})")
        if args.plot:
            print(f"wrote {printed_path(args.plot)}")
        if args.out:
            print(f"wrote {printed_path(args.out)}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from dmf.jobs import run_job

    cluster_options = {"workers": args.workers, "threads": args.threads,
                       "memory_limit": args.memory_limit}
    record = run_job(args.job, overrides=args.overrides, scheduler=args.scheduler,
                     dry_run=args.dry_run, cluster_options=cluster_options, quiet=args.quiet,
                     progress=True if args.progress else None)
    if record is not None and args.quiet:  # -q: no step lines, the result still
        from dmf.jobs.record import format_summary

        print(format_summary(record))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from dmf import report
    from dmf.store.location import Location

    html_path = args.html
    if html_path is None and not args.png:
        location = Location.parse(args.out, args.storage_options)
        if not location.is_local:
            raise InputError(f"{args.out}: not a local path; say where the page goes with "
                             "--html FILE")
        stem = location.url.rstrip("/")
        html_path = (stem[:-len(".zarr")] if stem.endswith(".zarr") else stem) + ".html"
    page = report.build(args.out, storage_options=args.storage_options,
                        image_shape=args.image_shape, top=args.top)
    for path in report.write(page, html_path, args.png):
        print(f"wrote {printed_path(path)}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from dmf.store.info import describe, format_facts

    facts = describe(args.url, storage_options=args.storage_options)
    print(json.dumps(facts, indent=2) if args.json else format_facts(facts))
    return EXIT_OK


# -- running ------------------------------------------------------------------

def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[
        min(verbose, 2)]
    # with -v, a time on every line: how long each thing took is what -v is for
    fmt = "%(asctime)s dmf: %(levelname)s: %(message)s" if verbose and not quiet else \
        "dmf: %(levelname)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    logging.getLogger("dmf").setLevel(level)
    if "distributed" in sys.modules:
        quiet_dask_logs()


def quiet_dask_logs() -> None:
    """Dask logs what went wrong on the cluster with tracebacks; dmf reports
    the consequence in one line (a lost scheduler, say). Show Dask's own logs
    only when asked with -v (as dmf's level says).

    Called once distributed is imported (its import configures its loggers,
    which this overrides): by :func:`cluster`, not at start-up, so that a
    command that computes nothing never imports it."""
    dask_level = {logging.DEBUG: logging.INFO, logging.INFO: logging.WARNING}.get(
        logging.getLogger("dmf").getEffectiveLevel(), logging.CRITICAL)
    # The event loop's own loggers print Dask's internal tracebacks (a
    # callback that failed while a Ctrl-C interrupted the cluster's start,
    # say): only at -vv.
    loop_level = logging.INFO if dask_level == logging.INFO else logging.CRITICAL
    # Dask's logging config gives some children (distributed.client...)
    # levels of their own, so set every one of them.
    for name in list(logging.root.manager.loggerDict):
        top = name.split(".")[0]
        if top == "distributed":
            logging.getLogger(name).setLevel(dask_level)
        elif top in ("tornado", "asyncio"):
            logging.getLogger(name).setLevel(loop_level)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    if issubclass(category, DmfWarning):
        print(f"dmf: note: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _quiet_warning(*_args, **_kwargs) -> None:
    """-q: errors only, so no notes."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` and return its exit code. Without
    ``argv`` this is the program: it exits once the command is done."""
    if argv is None:
        _act_on_sigint()
    code = _command(argv)
    if argv is None:
        _exit_program(code)
    return code


def _act_on_sigint() -> None:
    """Ctrl-C stops the command from its first instruction on, also when it
    was started with SIGINT ignored (a script's background job inherits
    that): from start-up on, not only once a run's handlers are installed,
    which act on it in any case, so that a SIGINT to the command is never
    lost. Until then it raises KeyboardInterrupt, which ends the command
    with exit 130 and closes a cluster half started."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _exit_program(code: int) -> None:
    """Exit after the exit hooks (clusters closed, files flushed), or
    EXIT_HOOKS_SECONDS into them, without the interpreter's teardown of every
    module, which takes seconds with Dask loaded: an interrupted run must end
    within a few seconds (worker processes exit when this one does)."""
    import atexit
    import os
    import threading

    def leave() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    deadline = threading.Timer(EXIT_HOOKS_SECONDS, leave)
    deadline.daemon = True
    deadline.start()
    atexit._run_exitfuncs()
    leave()


def _command(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in GLOBAL_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    _setup_logging(args.verbose or 0, args.quiet)
    warnings.showwarning = _quiet_warning if args.quiet else _show_warning
    try:
        return args.func(args)
    except DmfError as exc:
        print(f"dmf: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dmf: interrupted; run the same command again to resume (from the last "
              "checkpoint, if any)", file=sys.stderr)
        return EXIT_SIGINT
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # the last resort: an environment failure, else a bug
        failure = environment_failure(exc, output=getattr(args, "out", None))
        if failure is not None:  # met deep in a library (a chunk write, say): not a bug
            log.debug("the environment failed", exc_info=exc)
            print(f"dmf: error: {' '.join(str(failure).split())}", file=sys.stderr)
            return failure.exit_code
        traceback.print_exc()
        print("dmf: unexpected error (a bug: please report it with the traceback above)",
              file=sys.stderr)
        return EXIT_UNEXPECTED


__all__ = ["build_parser", "main"]
