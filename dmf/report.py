"""``dmf report OUT``: a self-contained HTML page of a result or a job.

What is drawn depends on what OUT holds (figures are PNGs inlined as
``data:`` URIs, so the page is one file that can be mailed or archived):

- any iterative result: the objective per iteration (log scale);
- an SVD: the singular value spectrum and the cumulative explained variance;
- an NMF or SVD whose columns are pixels (``image_shape=(h, w)``): the
  components as an image grid;
- an NMF (topics) or a latent-factor recommender: the top columns / items
  of each component;
- a job root (``dmf run``): its run records, then a section per step result;
- always: the parameters and facts stored with the result.

Only small arrays are read (H, S, Vt, Q and the attrs): no pass over X.
"""

from __future__ import annotations

import base64
import html
import io
import os
from typing import Any

import numpy as np

from dmf.errors import InputError
from dmf.results import load
from dmf.store.location import Location, dmf_attrs
from dmf.wording import plural

__all__ = ["Page", "build", "write"]

MAX_COMPONENTS_DRAWN = 48


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _figure(width: float = 6.4, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), layout="constrained")


def loss_figure(history: list[float], title: str) -> bytes:
    from matplotlib.ticker import MaxNLocator

    fig, ax = _figure()
    values = np.asarray(history, dtype=float)
    start = 0
    if len(values) > 2 and values[0] > 10 * abs(values[1]):
        start = 1  # the starting point would flatten the rest of the curve
        title += " (from iteration 1)"
    steps = np.arange(start, len(values))
    ax.plot(steps, values[start:], marker="." if len(values) < 60 else None)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if np.all(values[start:] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _png(fig)


def spectrum_figure(S: np.ndarray, ratio: np.ndarray | None) -> bytes:
    fig, ax = _figure()
    k = np.arange(1, len(S) + 1)
    from matplotlib.ticker import MaxNLocator

    ax.plot(k, S, "o-", label="singular value")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("component")
    ax.set_ylabel("singular value")
    ax.grid(True, alpha=0.3)
    if ratio is not None:
        twin = ax.twinx()
        twin.plot(k, np.cumsum(ratio), "s--", color="tab:orange",
                  label="cumulative explained variance")
        twin.set_ylabel("cumulative explained variance ratio")
        twin.set_ylim(0, 1.05)
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    ax.set_title("spectrum")
    return _png(fig)


def components_figure(components: np.ndarray, shape: tuple[int, int], *,
                      signed: bool) -> bytes:
    import matplotlib.pyplot as plt

    components = components[:MAX_COMPONENTS_DRAWN]
    count = len(components)
    cols = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.4 * rows + 0.4),
                             layout="constrained", squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= count:
            continue
        image = components[i].reshape(shape)
        limit = float(np.abs(image).max()) or 1.0
        ax.imshow(image, cmap="RdBu_r" if signed else "gray_r",
                  vmin=-limit if signed else 0.0, vmax=limit, interpolation="nearest")
        ax.set_title(str(i), fontsize=8)
    fig.suptitle("components as images" + (" (red +, blue -)" if signed else ""))
    return _png(fig)


# -- the page -------------------------------------------------------------------

class Page:
    """Sections of HTML, and the figures also kept as PNG files if asked."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.figures: dict[str, bytes] = {}

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def image(self, name: str, png: bytes, alt: str) -> None:
        self.figures[name] = png
        data = base64.b64encode(png).decode("ascii")
        self.parts.append(f'<figure><img alt="{html.escape(alt)}" '
                          f'src="data:image/png;base64,{data}"></figure>')

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(show(c))}</td>" for c in row)
                       + "</tr>" for row in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def render(self) -> str:
        style = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;"
                 "padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
                 "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;"
                 "font-size:.9em}th{background:#f3f3f3}img{max-width:100%}"
                 "figure{margin:.5em 0 1.5em}")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{style}</style></head>"
                f"<body><h1>{html.escape(self.title)}</h1>\n" + "\n".join(self.parts)
                + f"\n<script>{_SELF_CHECK}</script>\n</body></html>\n")


# Marks the body with how many figures decoded, and shows a line if one did
# not: a broken page says so instead of leaving a blank (and a headless
# browser in the tests reads the mark).
_SELF_CHECK = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var bad = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  document.body.dataset.figures = String(images.length - bad.length);
  document.body.dataset.broken = String(bad.length);
  if (bad.length) {
    var p = document.createElement("p");
    p.textContent = bad.length + " figure(s) failed to load";
    p.style.color = "#b00";
    document.body.insertBefore(p, document.body.firstChild);
  }
});
"""


def show(value: Any) -> str:
    """A recorded fact as short text (this page's tables, the job's
    Markdown report)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple) and value and isinstance(value[0], float):
        return ", ".join(f"{v:.4g}" for v in value[:12]) + (", ..." if len(value) > 12 else "")
    if isinstance(value, dict):
        return ", ".join(f"{k} {show(v)}" for k, v in value.items())
    if value is None:
        return ""
    return str(value)


def build(url: str | os.PathLike, *, storage_options: dict | None = None,
          image_shape: tuple[int, int] | None = None, top: int = 10) -> Page:
    """The report page of the result or job at ``url``.

    Examples
    --------
    >>> import numpy as np, dmf
    >>> X = np.random.default_rng(0).random((60, 16))
    >>> _ = dmf.nmf(X, 3, max_iter=20, tol=0, out="memory://doc/report-nmf", seed=0)
    >>> page = build("memory://doc/report-nmf", image_shape=(4, 4))
    >>> sorted(page.figures)
    ['components', 'loss']
    >>> "<table>" in page.render()
    True
    """
    location = Location.parse(url, storage_options)
    if not location.exists():
        raise InputError(f"{location}: nothing there to report on")
    meta = dmf_attrs(location.open_node())
    page = Page(f"dmf report: {location}")
    if meta.get("kind") == "job":
        _job(page, meta, storage_options, image_shape, top)
    elif meta.get("kind") in ("result", "cf-knn") or "algorithm" in meta:
        _result(page, location, storage_options, image_shape, top, prefix="")
    else:
        raise InputError(f"{location}: holds a {meta.get('kind', 'Zarr store')}, not a dmf "
                         "result or job; report on the output of dmf svd, nmf, cf train or run")
    return page


def _job(page, meta, storage_options, image_shape, top) -> None:
    page.text(f"job {meta.get('job')}: {plural(len(meta.get('runs', [])), 'run')} kept")
    page.heading("Runs")
    page.table(["run", "status", "exit", "started", "seconds", "scheduler", "dmf"],
               [[r.get("run_id"), r.get("status"), r.get("exit_code"), r.get("started"),
                 r.get("seconds"), r.get("scheduler"), (r.get("versions") or {}).get("dmf")]
                for r in reversed(meta.get("runs", []))])
    last = (meta.get("runs") or [{}])[-1]
    if last.get("steps"):
        page.heading("Steps of the last run")
        page.table(["step", "kind", "action", "seconds", "tries", "output"],
                   [[s["name"], s["kind"], s["action"], s.get("seconds"), s.get("attempts"),
                     s.get("out")] for s in last["steps"]])
    for name, step in (meta.get("steps") or {}).items():
        out = step.get("out")
        if not out or step.get("status") != "complete":
            continue
        target = Location.parse(out, storage_options)
        try:
            step_meta = dmf_attrs(target.open_node()) if target.is_zarr_node() else {}
        except Exception:  # noqa: BLE001 - a step output that is gone or not Zarr: skip it
            continue
        if step_meta.get("kind") == "result" or "algorithm" in step_meta:
            page.heading(f"Step {name}")
            _result(page, target, storage_options, image_shape, top, prefix=f"{name}-")
        elif step.get("facts"):
            page.heading(f"Step {name}")
            page.table(["fact", "value"], _flatten(step["facts"]))


def _flatten(facts: dict, prefix: str = "") -> list[list[Any]]:
    rows = []
    for key, value in facts.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key} / ")
        else:
            rows.append([f"{prefix}{key}", value])
    return rows


def _result(page, location, storage_options, image_shape, top, prefix) -> None:
    result = load(location.url, storage_options=storage_options)
    attrs = getattr(result, "attrs", {}) or {}
    algorithm = attrs.get("algorithm", type(result).__name__)
    facts = [["algorithm", algorithm], ["location", str(location)],
             ["iterations", getattr(result, "n_iter", None)],
             ["converged", getattr(result, "converged", None)]]
    for name in ("reconstruction_err_", "explained_variance_ratio_"):
        value = getattr(result, name, None)
        if value is not None:
            facts.append([name, float(np.sum(value))])
    page.table(["fact", "value"], facts)
    history = getattr(result, "loss_history", None)
    if history and len(history) > 1:
        page.image(f"{prefix}loss", loss_figure(history, f"{algorithm}: objective"),
                   "objective per iteration")
    S = getattr(result, "S", None)
    if S is not None and np.ndim(S) == 1:
        ratio = getattr(result, "explained_variance_ratio_", None)
        page.image(f"{prefix}spectrum", spectrum_figure(np.asarray(S), ratio),
                   "singular values and cumulative explained variance")
    components, signed = _components(result)
    if components is not None and image_shape is not None:
        if int(np.prod(image_shape)) != components.shape[1]:
            raise InputError(f"--image-shape {image_shape[0]}x{image_shape[1]} has "
                             f"{int(np.prod(image_shape))} pixels; the components have "
                             f"{components.shape[1]} columns")
        page.image(f"{prefix}components", components_figure(components, image_shape,
                                                             signed=signed),
                   "components as images")
    tops = _top_items(result, top)
    if tops:
        page.heading(f"Top {top} per component", 3)
        page.table(["component", f"top {top} (weight)"], tops)
    params = attrs.get("parameters") or {}
    if params:
        page.heading("Parameters", 3)
        page.table(["parameter", "value"], sorted([k, v] for k, v in params.items()))


def _components(result) -> tuple[np.ndarray | None, bool]:
    """The rows that are components: Vt of an SVD (signed), H of an NMF or
    NMTF (non-negative); None for a recommender."""
    if getattr(result, "Vt", None) is not None:
        return np.asarray(result.Vt), True
    if getattr(result, "H", None) is not None:
        return np.asarray(result.H), False
    return None, False


def _top_items(result, top: int) -> list[list[Any]]:
    """Top columns of each NMF component (topics), or top items of each
    latent factor of a recommender (by Q's column)."""
    Q = getattr(result, "Q", None)
    if Q is not None and getattr(result, "item_ids", None) is not None:
        weights, labels = np.asarray(Q).T, np.asarray(result.item_ids)
    elif getattr(result, "H", None) is not None and getattr(result, "Vt", None) is None:
        weights = np.asarray(result.H)
        labels = np.arange(weights.shape[1])
    else:
        return []
    rows = []
    for i, row in enumerate(weights[:MAX_COMPONENTS_DRAWN]):
        order = np.argsort(-row, kind="stable")[:top]
        rows.append([i, ", ".join(f"{labels[j]} ({row[j]:.3g})" for j in order)])
    return rows


def write(page: Page, html_path: str | None, png_dir: str | None) -> list[str]:
    """Write the page and/or its figures; the paths written."""
    written = []
    if html_path:
        os.makedirs(os.path.dirname(os.path.abspath(html_path)), exist_ok=True)
        with open(html_path, "w", encoding="utf-8") as f:
            f.write(page.render())
        written.append(html_path)
    if png_dir:
        os.makedirs(png_dir, exist_ok=True)
        for name, png in page.figures.items():
            path = os.path.join(png_dir, f"{name}.png")
            with open(path, "wb") as f:
                f.write(png)
            written.append(path)
    return written
