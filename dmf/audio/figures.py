"""``OUTDIR/report.html`` of a separation: the spectrogram, H (spectral
templates) and W (activations) as images, the objective per iteration and
the facts. Built with :mod:`dmf.report`'s page and figure helpers; the
spectrogram and W are read a block at a time and pooled to at most
``MAX_COLUMNS`` frames, so a long recording makes a page of the same size.
"""

from __future__ import annotations

import numpy as np

from dmf import report

MAX_COLUMNS = 800


def _pooled(array, max_columns: int = MAX_COLUMNS) -> np.ndarray:
    """Rows of a (frames x ...) array averaged in groups, a block at a time."""
    T = array.shape[0]
    step = max(1, -(-T // max_columns))
    block = step * max(1, 4096 // step)
    parts = []
    for i0 in range(0, T, block):
        b = np.asarray(array[i0:min(i0 + block, T)], dtype=np.float64)
        pad = (-len(b)) % step
        if pad:
            b = np.concatenate([b, np.repeat(b[-1:], pad, axis=0)])
        parts.append(b.reshape(-1, step, *b.shape[1:]).mean(axis=1))
    return np.concatenate(parts)


def _image(data: np.ndarray, *, title: str, xlabel: str, ylabel: str, extent) -> bytes:
    fig, ax = report._figure(7.5, 3.4)
    im = ax.imshow(data, origin="lower", aspect="auto", cmap="magma", extent=extent,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, label="dB")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return report._png(fig)


def _db(x: np.ndarray) -> np.ndarray:
    db = 10 * np.log10(np.maximum(x, 1e-30))
    return np.maximum(db, db.max() - 90.0)


def write_report(path: str, spectrogram_url: str, result, facts: dict) -> None:
    import zarr

    spec = zarr.open_array(spectrogram_url, mode="r")
    seconds, rate = facts["seconds"], facts["rate"]
    page = report.Page(f"dmf audio separate: {facts['input']}")
    page.table(["fact", "value"], [[k, facts[k]] for k in (
        "input", "rate", "seconds", "loss", "components", "sources", "groups", "n_fft", "hop",
        "n_iter", "converged", "reconstruction_err")])
    page.image("spectrogram", _image(_db(_pooled(spec)).T, title="power spectrogram (input)",
                                     xlabel="time (s)", ylabel="frequency (Hz)",
                                     extent=(0, seconds, 0, rate / 2)),
               "power spectrogram of the input")
    H = np.asarray(result.H, dtype=np.float64)
    k = len(H)
    page.image("H", _image(_db(H).T, title="H: spectral template of each component",
                           xlabel="component", ylabel="frequency (Hz)",
                           extent=(-0.5, k - 0.5, 0, rate / 2)),
               "spectral templates (H)")
    page.image("W", _image(_db(_pooled(result.W)).T, title="W: activation of each component",
                           xlabel="time (s)", ylabel="component",
                           extent=(0, seconds, -0.5, k - 0.5)),
               "activations over time (W)")
    history = result.loss_history
    if history and len(history) > 1:
        page.image("loss", report.loss_figure(history, f"NMF ({facts['loss']}): objective"),
                   "objective per iteration")
    page.heading("Files", 3)
    page.table(["file", "components"],
               [[p, str(c)] for p, c in zip(facts["components_files"], range(k), strict=True)]
               + ([[p, ", ".join(map(str, g))] for p, g in
                   zip(facts["sources_files"], facts["groups"], strict=True)]
                  if facts["sources"] < k else []))
    report.write(page, path + ".part", None)
    import os

    os.replace(path + ".part", path)
