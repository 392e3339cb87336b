"""NMF parts versus SVD components on scikit-learn's bundled digits.

Lee and Seung (Nature, 1999) showed that NMF, because it only adds
non-negative pieces, learns *parts* of faces (eyes, noses, mouths), where
PCA/SVD learns *holistic* eigenfaces with positive and negative pixels that
cancel. The same happens on the 1797 8x8 handwritten digits that ship with
scikit-learn: NMF components are strokes, SVD components are blurry
whole-digit templates of both signs.

    make digits                                  # or:
    .venv/bin/python examples/digits_parts.py demo-output/digits-parts.png

writes the figure, and prints how sparse each set of components is (the
share of pixels below 1% of the component's largest magnitude).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

import dmf

K = 16


def factorize(k: int = K, max_iter: int = 300) -> dict[str, np.ndarray]:
    """The digits, their NMF components (k x 64, >= 0) and top-k right
    singular vectors, signs fixed as dmf fixes them."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    X = load_digits().data.astype(np.float64) / 16.0  # 1797 x 64, pixels in [0, 1]
    with warnings.catch_warnings():  # a fixed budget of iterations is the point here
        warnings.simplefilter("ignore", dmf.errors.ConvergenceWarning)
        nmf = dmf.nmf(X, k, solver="mu", init="nndsvda", max_iter=max_iter, tol=0, seed=0)
    svd = dmf.svd(X, k, seed=0)
    return {"X": X, "nmf": np.asarray(nmf.H), "svd": np.asarray(svd.Vt),
            "nmf_error": nmf.reconstruction_err_,
            "svd_error": float(np.linalg.norm(X - np.asarray(svd.U) * svd.S @ svd.Vt))}


def sparsity(components: np.ndarray, cut: float = 0.01) -> float:
    """Share of pixels below ``cut`` times their component's largest magnitude."""
    scale = np.abs(components).max(axis=1, keepdims=True)
    return float(np.mean(np.abs(components) < cut * scale))


def plot(parts: dict[str, np.ndarray], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = int(np.ceil(np.sqrt(K)))
    fig = plt.figure(figsize=(11, 5.6), layout="constrained")
    left, right = fig.subfigures(1, 2, wspace=0.04)
    for sub, key, title, cmap in (
        (left, "nmf", f"NMF, k={K}: parts (strokes), all >= 0\n"
         f"{sparsity(parts['nmf']):.0%} of pixels ~0", "gray_r"),
        (right, "svd", f"SVD, k={K}: holistic components of both signs\n"
         f"{sparsity(parts['svd']):.0%} of pixels ~0", "RdBu_r"),
    ):
        sub.suptitle(title)
        axes = sub.subplots(side, side)
        for i, ax in enumerate(axes.flat):
            ax.set_axis_off()
            if i >= len(parts[key]):
                continue
            image = parts[key][i].reshape(8, 8)
            limit = np.abs(image).max() or 1.0
            low = 0.0 if key == "nmf" else -limit
            ax.imshow(image, cmap=cmap, vmin=low, vmax=limit, interpolation="nearest")
    fig.suptitle("scikit-learn digits (1797 images of 8x8): what each factorization learns")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else "digits-parts.png"
    parts = factorize()
    plot(parts, path)
    print(f"wrote {path}")
    print(f"NMF: components >= 0: {bool((parts['nmf'] >= 0).all())}, "
          f"pixels ~0: {sparsity(parts['nmf']):.0%}, ||X - WH||_F = {parts['nmf_error']:.3f}")
    print(f"SVD: pixels ~0: {sparsity(parts['svd']):.0%}, "
          f"||X - U S Vt||_F = {parts['svd_error']:.3f} (the best rank-{K} fit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
