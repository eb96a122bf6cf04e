"""A grid of generated samples per class (matplotlib's Agg canvas; no pyplot global state)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..common import PathLike, atomic_write_bytes


def sample_grid(images: np.ndarray, labels: np.ndarray, classes: Sequence[str], mean: Sequence[float],
                std: Sequence[float], path: PathLike, per_class: int = 8, title: str = "") -> Path:
    """Write a PNG with one row per class of up to ``per_class`` images.

    Args:
        images: float ``N x C x H x W`` in the teacher's normalised input space.
        labels: int ``N`` classes of the images.
        classes: class names (row labels).
        mean, std: the normalisation to undo, per channel, [0, 1] pixel scale.
        path: the PNG to write (atomically).
        per_class: columns.
        title: the figure title.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = images * np.asarray(std, dtype=np.float64).reshape(1, -1, 1, 1) + \
        np.asarray(mean, dtype=np.float64).reshape(1, -1, 1, 1)
    x = np.clip(x, 0.0, 1.0)
    k = len(classes)
    fig = Figure(figsize=(per_class * 0.8 + 1.2, k * 0.8 + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    for r in range(k):
        idx = np.flatnonzero(labels == r)[:per_class]
        for c in range(per_class):
            ax = fig.add_subplot(k, per_class, r * per_class + c + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(idx):
                img = x[idx[c]]
                if img.shape[0] == 1:
                    ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(np.transpose(img, (1, 2, 0)))
            if c == 0:
                ax.set_ylabel(str(classes[r]), rotation=0, ha="right", va="center", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
