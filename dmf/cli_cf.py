"""``dmf cf``: collaborative filtering on the command line.

    dmf cf split RATINGS OUT [--by rating|user|time]     -> OUT/train.zarr, OUT/test.zarr
    dmf cf train RATINGS OUT --model als|implicit|sgd|nmf|knn -k K
    dmf cf evaluate MODEL TRAIN TEST [--at 10]
    dmf cf recommend MODEL RATINGS [--user ID ...] [--out OUT] [-n 10]

Kept apart from :mod:`dmf.cli` so that file stays about the matrix commands;
it imports nothing heavy until a command runs. Each command is a ``run_*``
function that a job step runs too (see :mod:`dmf.cli_matrix`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np

import dmf
from dmf import cf
from dmf.cli_args import Compute, Ran, command_group, printed, run_options
from dmf.errors import InputError
from dmf.wording import plural, printed_path

MODELS = ("als", "implicit", "sgd", "nmf", "knn", "user-knn")


def add_commands(commands, command: Callable) -> None:
    """Add ``dmf cf split | train | evaluate | recommend`` (``command``: as for
    :func:`dmf.cli_matrix.add_commands`)."""
    subs = command_group(commands, "cf", help="collaborative filtering: split, train, "
                         "evaluate, recommend on a ratings store",
                         description="Collaborative filtering on a ratings store (dmf ingest "
                         "--format ratings, dmf generate ratings).")

    split = command("split", printed(run_split), "split ratings into train and test stores",
                    parent=subs, cluster=False)
    split.add_argument("ratings", metavar="RATINGS", help="ratings store (path or URL)")
    split.add_argument("out", metavar="OUT", help="folder for train.zarr and test.zarr")
    split.add_argument("--by", choices=["rating", "user", "time"], default="rating",
                       help="rating: each rating to test with probability --test-size "
                       "(default); user: --leave ratings of each user; time: the latest "
                       "--test-size share of the ratings")
    split.add_argument("--test-size", type=float, default=0.2, metavar="F",
                       help="default 0.2")
    split.add_argument("--leave", type=int, default=1, metavar="K",
                       help="--by user: ratings per user to hold out (default 1)")
    split.add_argument("--seed", type=int, default=0, help="default 0")
    split.add_argument("--overwrite", action="store_true", help="replace existing stores")

    train = command("train", printed(run_train), "fit a recommender and save it", parent=subs)
    train.add_argument("ratings", metavar="RATINGS", help="training ratings store")
    train.add_argument("out", metavar="OUT", help="output group for the model")
    train.add_argument("--model", choices=MODELS, default="als",
                       help="als: explicit ALS-WR with biases (default); implicit: ALS for "
                       "clicks and counts (confidence 1 + alpha r); sgd: stochastic gradient "
                       "descent with biases; nmf: masked NMF (non-negative factors); knn: "
                       "item neighbours on a baseline; user-knn: user neighbours on a "
                       "baseline")
    train.add_argument("-k", "--k", type=int, metavar="K",
                       help="factors (neighbours for knn, user-knn); default 10, knn 40")
    train.add_argument("--reg", type=float, metavar="L",
                       help="regularization (default: als 0.1, implicit 0.1, sgd 0.02, nmf 0)")
    train.add_argument("--max-iter", type=int, default=10, metavar="N",
                       help="ALS iterations or SGD epochs (default 10)")
    train.add_argument("--tol", type=float, default=1e-4, metavar="T",
                       help="stop when the objective changes by less than T (relative)")
    train.add_argument("--alpha", type=float, default=40.0, metavar="A",
                       help="implicit: confidence slope (default 40)")
    train.add_argument("--lr", type=float, default=0.01, metavar="R",
                       help="sgd: learning rate (default 0.01)")
    train.add_argument("--similarity",
                       choices=["pearson_baseline", "cosine", "adjusted_cosine", "pearson"],
                       default="pearson_baseline",
                       help="knn: item similarity (default pearson_baseline, as Surprise)")
    train.add_argument("--shrinkage", type=float, default=100.0, metavar="S",
                       help="knn: similarity shrinkage (default 100)")
    train.add_argument("--seed", type=int, default=0, help="default 0")
    train.add_argument("--overwrite", action="store_true",
                       help="knn: replace a model already at OUT")
    run_options(train)

    ev = command("evaluate", printed(run_evaluate), "RMSE, MAE and ranking metrics of a saved "
                 "model on a test split", parent=subs)
    ev.add_argument("model", metavar="MODEL", help="a model saved by dmf cf train")
    ev.add_argument("train", metavar="TRAIN", help="the ratings it was trained on (items "
                    "not to recommend again)")
    ev.add_argument("test", metavar="TEST", help="held-out ratings")
    ev.add_argument("--at", type=int, default=10, metavar="K",
                    help="cut-off of precision, recall, NDCG and MAP (default 10)")
    ev.add_argument("--threshold", type=float, metavar="T",
                    help="test ratings >= T are relevant (default: every held-out item)")
    ev.add_argument("--json", action="store_true", help="print JSON")

    rec = command("recommend", printed(run_recommend), "top-N items per user from a saved model",
                  parent=subs)
    rec.add_argument("model", metavar="MODEL", help="a model saved by dmf cf train")
    rec.add_argument("ratings", metavar="RATINGS",
                     help="the ratings it was trained on (seen items are left out)")
    rec.add_argument("-n", type=int, default=10, metavar="N", help="items per user (default 10)")
    rec.add_argument("--user", action="append", metavar="ID",
                     help="print recommendations for this user id (repeatable)")
    rec.add_argument("--out", metavar="OUT",
                     help="write every user's recommendations to this Zarr group")
    rec.add_argument("--overwrite", action="store_true", help="replace OUT")
    rec.add_argument("--json", action="store_true", help="print JSON")


def _positive(flag: str, value: int) -> int:
    if value < 1:
        raise InputError(f"{flag} must be a positive integer, got {value}")
    return value


def run_split(args: argparse.Namespace, on: Compute) -> Ran:  # noqa: ARG001
    train, test = cf.train_test_split(args.ratings, by=args.by, test_size=args.test_size,
                                      k=args.leave, seed=args.seed, out=args.out,
                                      overwrite=args.overwrite,
                                      storage_options=args.storage_options)
    return Ran((train, test), [f"wrote {printed_path(train.location)} and "
                               f"{printed_path(test.location)} (split by {args.by}, "
                               f"seed {args.seed})"])


def _fit(args: argparse.Namespace):
    neighbours = {"knn": cf.ItemKNN, "user-knn": cf.UserKNN}
    k = _positive("-k", args.k if args.k is not None else 40 if args.model in neighbours
                  else 10)
    if args.model in neighbours:
        model = neighbours[args.model](k=k, similarity=args.similarity,
                                       shrinkage=args.shrinkage).fit(
            cf.as_ratings(args.ratings, storage_options=args.storage_options))
        cf.knn_store.save_knn(model, args.out, overwrite=args.overwrite,
                              storage_options=args.storage_options)
        return model
    run = {"out": args.out, "storage_options": args.storage_options, "seed": args.seed,
           "checkpoint_every": args.checkpoint_every,
           "checkpoint_seconds": args.checkpoint_seconds, "resume": not args.no_resume,
           "damaged_checkpoints": args.damaged_checkpoints,
           "progress": False if args.quiet else (True if args.progress else None)}
    if args.model == "sgd":
        reg = 0.02 if args.reg is None else args.reg
        return cf.sgd(args.ratings, k, lr=args.lr, reg=reg, n_epochs=args.max_iter,
                      tol=args.tol, **run)
    reg = (0.0 if args.model == "nmf" else 0.1) if args.reg is None else args.reg
    return cf.als(args.ratings, k, reg=reg, max_iter=args.max_iter, tol=args.tol,
                  implicit=args.model == "implicit", nonnegative=args.model == "nmf",
                  alpha=args.alpha, **run)


def run_train(args: argparse.Namespace, on: Compute) -> Ran:
    with on(args.ratings):
        model = _fit(args)
    attrs = getattr(model, "attrs", {})
    facts = [f"{args.model}"]
    if "train_rmse" in attrs:
        facts.append(f"train RMSE {attrs['train_rmse']:.4g}")
    if getattr(model, "n_iter", None):
        facts.append(plural(model.n_iter, "iteration"))
    verb = "already complete" if attrs.get("skipped") else "wrote"
    return Ran(model, [f"{verb} {printed_path(args.out)}: {', '.join(facts)}"])


def _load_model(url: str, storage_options):
    model = dmf.load(url, storage_options=storage_options)
    if not hasattr(model, "scores"):
        raise InputError(f"{url}: holds a {type(model).__name__}, not a recommender; train "
                         "one with dmf cf train")
    return model


def run_evaluate(args: argparse.Namespace, on: Compute) -> Ran:
    with on(args.model, args.train, args.test):
        model = _load_model(args.model, args.storage_options)
        metrics = cf.evaluate(model, args.train, args.test, k=_positive("--at", args.at),
                              threshold=args.threshold)
    if args.json:
        return Ran(metrics, [json.dumps(metrics)])
    k = metrics["k"]
    lines = []
    for name in ("rmse", "mae", "precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k"):
        label = name.replace("_at_k", f"@{k}")
        lines.append(f"{label:>14}  {metrics[name]:.4f}")
    lines.append(f"{'test ratings':>14}  {metrics['n_ratings']}")
    lines.append(f"{'users ranked':>14}  {metrics['n_users']}")
    return Ran(metrics, lines)


def _user_key(ids, text: str):
    """A user id from the command line in the type of the model's ids."""
    if np.asarray(ids).dtype.kind in "iu":
        try:
            return int(text)
        except ValueError:
            return text
    return text


def run_recommend(args: argparse.Namespace, on: Compute) -> Ran:
    n = _positive("-n", args.n)
    if not args.user and not args.out:
        raise InputError("say whom to recommend for: --user ID (repeatable) and/or --out OUT "
                         "for every user")
    with on(args.model, args.ratings):
        model = _load_model(args.model, args.storage_options)
        shown = []
        for user in args.user or []:
            rec = cf.recommend(model, args.ratings, _user_key(model.user_ids, user), n)
            shown.append({"user": user, "items": [str(i) for i in rec.items.tolist()],
                          "scores": [round(float(s), 6) for s in rec.scores],
                          "cold_start": bool(rec.cold_start)})
        if args.out:
            cf.recommend_all(model, args.ratings, n, out=args.out, overwrite=args.overwrite,
                             storage_options=args.storage_options)
    if args.json:
        return Ran(shown, [json.dumps(shown if not args.out else {"users": shown,
                                                                  "out": args.out})])
    lines = []
    for row in shown:
        flag = "  (cold start: popular items)" if row["cold_start"] else ""
        pairs = ", ".join(f"{i} ({s:.3g})" for i, s in zip(row["items"], row["scores"],
                                                          strict=True))
        lines.append(f"{row['user']}: {pairs}{flag}")
    if args.out:
        lines.append(f"wrote {printed_path(args.out)}: top {n} items of every user")
    return Ran(shown, lines)
