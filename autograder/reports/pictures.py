"""Matplotlib pictures for the reports, embedded as base64 PNG so a report needs no server."""
from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def png_base64(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def matrix_picture(matrix: np.ndarray, title: str, labels: list[str], vmin=None, vmax=None) -> str:
    n_rows, n_cols = matrix.shape
    size = min(6.0, 2.5 + 0.3 * max(n_rows, n_cols))
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax)
    axes.set_title(title)
    if labels and len(labels) == n_rows == n_cols:
        axes.set_xticks(range(n_cols), labels, rotation=90, fontsize=8)
        axes.set_yticks(range(n_rows), labels, fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    return png_base64(figure)


def histogram_picture(scores: list[float], max_score: float) -> str:
    figure, axes = plt.subplots(figsize=(6, 3))
    bins = np.linspace(0, max_score if max_score > 0 else 1, 11)
    axes.hist(scores, bins=bins, color="#4a7bb7", edgecolor="white")
    axes.set_xlabel("score")
    axes.set_ylabel("submissions")
    axes.set_title("Score distribution")
    return png_base64(figure)
