"""Grouping k NMF components into fewer sources.

The rule: average-linkage agglomerative clustering of the components'
spectral templates (rows of H, as amplitudes: the square root of the
power template, each scaled to unit length) under the cosine distance, cut
into exactly ``n_groups`` clusters. Components whose spectra share their
peaks (the harmonics of one note, the band of one noise) end up together.
Groups are numbered by their lowest component, so the result is
deterministic for given factors.
"""

from __future__ import annotations

import numpy as np

__all__ = ["group_components"]


def group_components(templates: np.ndarray, n_groups: int) -> list[list[int]]:
    """Split the rows of ``templates`` (k x frequencies) into ``n_groups``.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.audio.grouping import group_components
    >>> H = np.array([[9, 1, 0, 0], [8, 2, 0, 0], [0, 0, 5, 5], [0, 1, 4, 6.]])
    >>> group_components(H, 2)
    [[0, 1], [2, 3]]
    >>> group_components(H, 4)
    [[0], [1], [2], [3]]
    """
    k = len(templates)
    if n_groups >= k:
        return [[i] for i in range(k)]
    if n_groups == 1:
        return [list(range(k))]
    from scipy.cluster.hierarchy import cut_tree, linkage

    amp = np.sqrt(np.maximum(np.asarray(templates, dtype=np.float64), 0.0))
    amp /= np.maximum(np.linalg.norm(amp, axis=1, keepdims=True), 1e-300)
    labels = cut_tree(linkage(amp, method="average", metric="cosine"),
                      n_clusters=n_groups).ravel()
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return sorted(groups.values())
